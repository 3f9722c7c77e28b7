//go:build linux

package resilience

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// callTimeout bounds one legitimate call: a call that takes longer has
// failed.
const callTimeout = 10 * time.Second

// phase collects the legitimate traffic of one stretch of time: the
// latency of each successful call and publish, and the failures.
type phase struct {
	name  string
	start time.Time
	end   atomic.Int64 // UnixNano; 0 while the phase is current

	mu        sync.Mutex
	calls     []time.Duration
	pubs      []time.Duration
	failed    int64
	pubFailed int64
	failures  []string // the first few, with their time
}

func (ph *phase) record(pub bool, d time.Duration, err error) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if err != nil {
		if pub {
			ph.pubFailed++
		} else {
			ph.failed++
		}
		if len(ph.failures) < 10 {
			ph.failures = append(ph.failures, fmt.Sprintf("%s +%v: %v", ph.name, time.Since(ph.start).Round(time.Millisecond), err))
		}
		return
	}
	if pub {
		ph.pubs = append(ph.pubs, d)
	} else {
		ph.calls = append(ph.calls, d)
	}
}

// stats is a phase's figures.
type stats struct {
	Calls, Failed       int64
	PubCalls, PubFailed int64
	Duration            time.Duration
	P50, P99            time.Duration
	PubP50, PubP99      time.Duration
	Failures            []string
}

// CallsPerSecond is the rate of successful legitimate calls.
func (s stats) CallsPerSecond() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Calls) / s.Duration.Seconds()
}

func (ph *phase) stats() stats {
	end := time.Now()
	if e := ph.end.Load(); e != 0 {
		end = time.Unix(0, e)
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	s := stats{Calls: int64(len(ph.calls)), Failed: ph.failed, PubCalls: int64(len(ph.pubs)), PubFailed: ph.pubFailed,
		Duration: end.Sub(ph.start), Failures: slices.Clone(ph.failures)}
	s.P50, s.P99 = percentiles(ph.calls)
	s.PubP50, s.PubP99 = percentiles(ph.pubs)
	return s
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)]
}

// load is the legitimate traffic: callers calling echo.echo in closed
// loops, a publisher publishing with acknowledgement to a subscriber, each
// recording into the current phase. Phases follow each other without a
// gap, so that every legitimate call is counted in one: the phase it ended
// in.
type load struct {
	cur atomic.Pointer[phase]

	mu     sync.Mutex
	phases []*phase
}

// begin ends the current phase and starts a new one.
func (l *load) begin(name string) *phase {
	ph := &phase{name: name, start: time.Now()}
	l.mu.Lock()
	l.phases = append(l.phases, ph)
	l.mu.Unlock()
	if old := l.cur.Swap(ph); old != nil {
		old.end.Store(ph.start.UnixNano())
	}
	return ph
}

// all returns every phase so far.
func (l *load) all() []*phase {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.phases)
}

// agents runs the suite's agents against one platform.
type agents struct {
	t      *testing.T
	p      *platformProc
	log    *syncBuffer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	all    []*agent.Agent
}

func newAgents(t *testing.T, p *platformProc) *agents {
	ctx, cancel := context.WithCancel(context.Background())
	a := &agents{t: t, p: p, log: &syncBuffer{}, ctx: ctx, cancel: cancel}
	t.Cleanup(a.stop)
	return a
}

// start creates, runs and waits for an agent; prepare registers its exports
// and subscriptions before it connects.
func (a *agents) start(identity string, kp keys.Pair, prepare func(*agent.Agent)) *agent.Agent {
	a.t.Helper()
	ag, err := agent.New(identity,
		agent.WithKeyPair(kp),
		agent.WithPlatform(a.p.addr, a.p.server.Public),
		agent.WithCallTimeout(callTimeout),
		agent.WithLogger(slog.New(slog.NewTextHandler(a.log, &slog.HandlerOptions{Level: slog.LevelWarn})).With("agent", identity)),
	)
	require.NoError(a.t, err)
	if prepare != nil {
		prepare(ag)
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		_ = ag.Run(a.ctx)
	}()
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	require.NoError(a.t, ag.WaitConnected(ctx), "agent %s", identity)
	a.all = append(a.all, ag)
	return ag
}

// spawn runs fn on its own goroutine; fn returns when its context, the
// agents', ends.
func (a *agents) spawn(fn func(ctx context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn(a.ctx)
	}()
}

// stop stops every agent and loop and waits for them.
func (a *agents) stop() {
	a.cancel()
	a.wg.Wait()
}

// allConnected waits until every agent is connected and welcomed.
func (a *agents) allConnected(ctx context.Context) error {
	for _, ag := range a.all {
		select {
		case <-ag.Ready():
		case <-ctx.Done():
			return fmt.Errorf("agent %s not connected: %w", ag.Identity(), ctx.Err())
		}
	}
	return nil
}

// pause waits d unless ctx ends first: the pace of a loop, not a
// synchronisation.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// startLoad starts the callee, the legitimate callers (workers calls in
// flight each), the publisher and the subscriber.
func startLoad(t *testing.T, ag *agents, c *cast, workers int) *load {
	l := &load{}
	l.begin("setup")
	ag.start("echo", c.echo, func(a *agent.Agent) {
		echo := rpc.Func(func(_ context.Context, s string) (string, error) { return s, nil })
		require.NoError(t, a.Export("echo", echo, rpc.Allow(capLegit)))
		require.NoError(t, a.Export("guarded_a", echo, rpc.Allow(capA)))
		require.NoError(t, a.Export("guarded_b", echo, rpc.Allow(capB)))
	})
	ag.start("legitsub", c.sub, func(a *agent.Agent) {
		_, err := a.Subscribe(context.Background(), "legit/#", func(context.Context, *agent.Message) {})
		require.NoError(t, err)
	})
	payload := string(bytes.Repeat([]byte("x"), 100))
	for i, kp := range c.legit {
		a := ag.start(legitID(i), kp, nil)
		for range workers {
			ag.spawn(func(ctx context.Context) {
				for ctx.Err() == nil {
					t0 := time.Now()
					_, err := a.Call(ctx, "echo", "echo", payload)
					if ctx.Err() != nil {
						return
					}
					// A call counts in the phase it ended in: one in flight
					// when the platform is killed fails after the kill.
					l.cur.Load().record(false, time.Since(t0), err)
					if err != nil {
						pause(ctx, 10*time.Millisecond) // do not spin while the platform is away
					}
				}
			})
		}
	}
	pub := ag.start("legitpub", c.pub, nil)
	ag.spawn(func(ctx context.Context) {
		for i := 0; ctx.Err() == nil; i++ {
			t0 := time.Now()
			err := pub.Publish(ctx, "legit/temperature", i)
			if ctx.Err() != nil {
				return
			}
			l.cur.Load().record(true, time.Since(t0), err)
			if err != nil {
				pause(ctx, 10*time.Millisecond)
			}
		}
	})
	return l
}

// syncBuffer is a goroutine-safe bytes.Buffer that keeps its last 64 KiB.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		keep := append([]byte(nil), s.b.Bytes()[s.b.Len()-32<<10:]...)
		s.b.Reset()
		s.b.Write(keep)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// isUnauthorized reports whether err is the platform's refusal of a call
// and returns the generation of the policy that refused.
func isUnauthorized(err error) (uint64, bool) {
	var e *rpc.Error
	if !errors.Is(err, rpc.ErrUnauthorized) || !errors.As(err, &e) {
		return 0, false
	}
	g, ok := toUint(e.Data()["generation"])
	return g, ok
}

func toUint(v any) (uint64, bool) {
	switch n := v.(type) {
	case uint64:
		return n, true
	case uint32:
		return uint64(n), true
	case uint16:
		return uint64(n), true
	case uint8:
		return uint64(n), true
	case int64:
		return uint64(n), n >= 0
	case int32:
		return uint64(n), n >= 0
	case int16:
		return uint64(n), n >= 0
	case int8:
		return uint64(n), n >= 0
	case int:
		return uint64(n), n >= 0
	}
	return 0, false
}
