package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
	"github.com/nats-io/nats.go"
)

// The roles of the scale figures: a connector (the caller role with -op
// connect: each operation is a new connection) and a fleet of agents that
// come back after the platform restarts ("busbench role=fleet").

// capbusConnector makes a new agent connection per operation: TCP, the
// CURVE handshake, hello and welcome (Run, WaitConnected), one round trip
// to the platform (Ping), and the close (Run returns). Every connection
// claims a new identity, dial.<slot>.<n>, with the dialers' one key.
type capbusConnector struct {
	kp   keys.Pair
	sk   keys.Key
	addr string
	n    atomic.Int64
}

// natsConnector makes a new NATS connection per operation: TCP (and TLS
// for nats-tls), INFO and CONNECT, the PING round trip nats.Connect waits
// for, one more round trip (Flush), and the close.
type natsConnector struct{ cfg *roleConfig }

func dialConnector(ctx context.Context, cfg *roleConfig) (client, error) {
	var c client
	switch cfg.stack {
	case "capbus":
		sk, err := keys.Parse(cfg.serverKey)
		if err != nil {
			return nil, err
		}
		c = &capbusConnector{kp: cfg.ring.pair(dialGroup, 0), sk: sk, addr: cfg.addr}
	case "nats", "nats-tls":
		c = &natsConnector{cfg: cfg}
	default:
		return nil, fmt.Errorf("connect: unknown stack %q", cfg.stack)
	}
	if err := c.call(ctx, 0, nil); err != nil {
		return nil, fmt.Errorf("first connection: %w", err)
	}
	return c, nil
}

func (c *capbusConnector) call(ctx context.Context, slot int, _ []byte) error {
	id := fmt.Sprintf("%s.%d.%d", dialGroup, slot, c.n.Add(1))
	a, err := agent.New(id, agent.WithKeyPair(c.kp), agent.WithPlatform(c.addr, c.sk), agent.WithLogger(discard),
		agent.WithConnectAttempts(1), agent.WithHeartbeat(0), agent.WithShutdownGrace(0))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	err = a.WaitConnected(ctx)
	if err == nil {
		err = a.Ping(ctx)
	}
	cancel()
	if rerr := <-done; err == nil {
		err = rerr
	}
	return err
}

func (c *capbusConnector) close() {}

func (c *natsConnector) call(context.Context, int, []byte) error {
	nc, err := natsConnect(c.cfg, nats.NoReconnect())
	if err != nil {
		return err
	}
	err = nc.FlushTimeout(callTimeout)
	nc.Close()
	return err
}

func (c *natsConnector) close() {}

// fleetMember is one agent of the fleet and what happened to it, as Unix
// nanoseconds of the latest event of each kind.
type fleetMember struct {
	a                        *agent.Agent
	lost, welcomed, served   atomic.Int64
	welcomes                 atomic.Int64 // welcomes so far
	failed                   atomic.Int64 // failed connection attempts so far
	refused, busy, otherFail atomic.Int64 // of which: nothing listening, ERROR "300", other
	// What the last "back" saw (the command loop's alone).
	seenWelcomes, seenFailed int64
	otherErr                 atomic.Pointer[string] // the latest failure of the other kind
}

// fleet is the agents that come back after a restart: each exports echo
// (requiring can_echo, which the fleet's entries hold) and, every time the
// platform welcomes it, calls its own echo through the platform; the call's
// return is the moment the agent is back and serving: the platform has
// its identity and exports again, routes to it, and it answers.
type fleet struct {
	members []*fleetMember
	stop    func()
	// Reported failures so far, so that each "back" reports its own.
	reported [4]int64
}

func startFleet(ctx context.Context, cfg *roleConfig) (server, error) {
	f := &fleet{members: make([]*fleetMember, cfg.idle)}
	agents := make([]*agent.Agent, cfg.idle)
	payload := make([]byte, payloadSize)
	echo := func(_ context.Context, b []byte) ([]byte, error) { return b, nil }
	for i := range cfg.idle {
		m := &fleetMember{}
		f.members[i] = m
		id := identity(fleetGroup, i)
		a, err := newCapbusAgentKP(cfg, id, cfg.ring.pair(fleetGroup, i),
			agent.WithLogger(slog.New(&attemptCounter{m: m})),
			agent.WithOnDisconnect(func(error) { m.lost.Store(time.Now().UnixNano()) }),
			agent.WithOnConnect(func(agent.Welcome) {
				m.welcomed.Store(time.Now().UnixNano())
				m.welcomes.Add(1)
				if _, err := m.a.Call(ctx, id, "echo", payload); err == nil {
					m.served.Store(time.Now().UnixNano())
				}
			}))
		if err != nil {
			return nil, err
		}
		if err := a.Export("echo", rpc.Func(echo), rpc.Allow(capEcho), rpc.Inline()); err != nil {
			return nil, err
		}
		m.a = a
		agents[i] = a
	}
	stops, err := runAgents(ctx, agents)
	if err != nil {
		return nil, err
	}
	f.stop = func() { stopAll(stops) }
	if _, err := f.waitServed(0, time.Minute); err != nil {
		f.stop()
		return nil, err
	}
	for _, m := range f.members { // the first "back" reports from here
		m.seenWelcomes, m.seenFailed = m.welcomes.Load(), m.failed.Load()
		f.reported[0] += m.failed.Load()
		f.reported[1] += m.refused.Load()
		f.reported[2] += m.busy.Load()
		f.reported[3] += m.otherFail.Load()
	}
	return f, nil
}

// attemptCounter is the fleet agents' logger: it counts the agent's failed
// connection attempts (its "cannot connect; retrying" warnings) by cause.
type attemptCounter struct{ m *fleetMember }

func (h *attemptCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *attemptCounter) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "cannot connect") {
		return nil
	}
	h.m.failed.Add(1)
	var cause error
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			cause, _ = a.Value.Any().(error)
		}
		return true
	})
	switch {
	case errors.Is(cause, syscall.ECONNREFUSED):
		h.m.refused.Add(1)
	case errors.Is(cause, curve.ErrBusy):
		h.m.busy.Add(1)
	default:
		h.m.otherFail.Add(1)
		if cause != nil {
			s := hostPort.ReplaceAllString(cause.Error(), "ADDR")
			h.m.otherErr.Store(&s)
		}
	}
	return nil
}

// hostPort is an address in an error text: the "other" failures are
// counted by their text without it.
var hostPort = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)

func (h *attemptCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *attemptCounter) WithGroup(string) slog.Handler      { return h }

// waitServed waits until every agent has served after since (Unix ns),
// polling every 2 ms (the agents' callbacks set the times), and returns
// when the last one did.
func (f *fleet) waitServed(since int64, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		last, missing := int64(0), 0
		for _, m := range f.members {
			s := m.served.Load()
			if s <= since {
				missing++
			}
			last = max(last, s)
		}
		if missing == 0 {
			return last, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d agents not back and serving within %v", missing, len(f.members), timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (f *fleet) readyLine() string { return fmt.Sprintf("agents=%d", len(f.members)) }

func (f *fleet) close() { f.stop() }

// backLine is the fleet's account of one restart, times from the kill.
type backLine struct {
	Agents int `json:"agents"`
	// Times from the kill to each agent's welcome and to its first
	// served call, sorted.
	WelcomeNS []int64 `json:"welcome_ns"`
	ServedNS  []int64 `json:"served_ns"`
	// LostNS: from the kill until the agents noticed (the last one).
	LostNS int64 `json:"lost_ns"`
	// Failed connection attempts during the restart, by cause, and the
	// most of one agent.
	Failed, Refused, Busy, Other int64
	MaxFailed                    int64 `json:"max_failed"`
	// Agents welcomed more than once since the last report (the kill).
	Flapped int `json:"flapped"`
	// OtherErrors: the distinct texts of the "other" failures, with
	// their counts (the latest of each agent's).
	OtherErrors map[string]int `json:"other_errors,omitempty"`
}

// command answers
//
//	settle      settled: once every agent that failed to connect before
//	            has had a session last the agent's longest backoff
//	            (DefaultMaxBackoff), after which a lost connection starts
//	            its backoff over from DefaultMinBackoff, as it does for a
//	            platform that ran for a while
//	back T      back {json}: once every agent has been welcomed and has
//	            served a call after T (Unix ns, the kill)
func (f *fleet) command(line string, out *lineWriter) (bool, error) {
	cmd, arg, _ := strings.Cut(line, " ")
	switch cmd {
	case "settle":
		// An agent that never failed to connect still has the shortest
		// delay; one that did keeps a longer one until its session has
		// lasted DefaultMaxBackoff (agent/run.go).
		var last int64
		for _, m := range f.members {
			if m.failed.Load() > 0 {
				last = max(last, m.welcomed.Load())
			}
		}
		if d := time.Until(time.Unix(0, last).Add(agent.DefaultMaxBackoff + 100*time.Millisecond)); d > 0 {
			time.Sleep(d) // the SDK's rule is about time: wait it out
		}
		out.printf("settled")
	case "back":
		kill, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return true, fmt.Errorf("back %q: %w", arg, err)
		}
		if _, err := f.waitServed(kill, time.Minute); err != nil {
			return true, err
		}
		b := backLine{Agents: len(f.members)}
		var now [4]int64
		for _, m := range f.members {
			b.WelcomeNS = append(b.WelcomeNS, m.welcomed.Load()-kill)
			b.ServedNS = append(b.ServedNS, m.served.Load()-kill)
			b.LostNS = max(b.LostNS, m.lost.Load()-kill)
			now[0] += m.failed.Load()
			now[1] += m.refused.Load()
			now[2] += m.busy.Load()
			now[3] += m.otherFail.Load()
			failed, welcomes := m.failed.Load(), m.welcomes.Load()
			b.MaxFailed = max(b.MaxFailed, failed-m.seenFailed)
			if welcomes-m.seenWelcomes > 1 {
				b.Flapped++
			}
			m.seenFailed, m.seenWelcomes = failed, welcomes
			if e := m.otherErr.Swap(nil); e != nil {
				if b.OtherErrors == nil {
					b.OtherErrors = map[string]int{}
				}
				b.OtherErrors[*e]++
			}
		}
		b.Failed, b.Refused, b.Busy, b.Other = now[0]-f.reported[0], now[1]-f.reported[1], now[2]-f.reported[2], now[3]-f.reported[3]
		f.reported = now
		slices.Sort(b.WelcomeNS)
		slices.Sort(b.ServedNS)
		j, _ := json.Marshal(b)
		out.printf("back %s", j)
	default:
		return false, nil
	}
	return true, nil
}
