package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capbus/capbus/agent"
	"github.com/nats-io/nats.go"
)

// The pub/sub roles: a subscribers' process ("busbench role=subs") and a
// publisher, which is the caller role with -op publish.

// fanTopic is the topic every measured publish goes to; NATS gets it with
// "." for "/".
const fanTopic = "bench/fan/t"

func natsSubjectOf(topic string) string { return strings.ReplaceAll(topic, "/", ".") }

// loadPattern is the k-th of the subscriptions that fill the platform in
// the latency cells. None matches fanTopic, but all lie along its path or
// beside it, so that a publish walks crowded nodes of the index: literal
// siblings of its last segment, siblings under a "+" at its second
// segment, a "+" at its last segment with children below, and "#"
// patterns in another tree.
func loadPattern(k int) string {
	switch k % 4 {
	case 0:
		return "bench/fan/t" + strconv.Itoa(k)
	case 1:
		return "bench/+/s" + strconv.Itoa(k)
	case 2:
		return "bench/fan/+/" + strconv.Itoa(k)
	default:
		return "site/" + strconv.Itoa(k) + "/#"
	}
}

// countLine is the subscribers' answer to "count" and "wait": messages
// received by all subscribers since they subscribed, when, and the errors
// their clients reported (NATS: slow consumers).
type countLine struct {
	N      int64 `json:"n"`
	TimeNS int64 `json:"t"`
	Errors int64 `json:"errors"`
}

// subscribers counts the messages of cfg.subs connections subscribed to
// cfg.topic; for capbus, cfg.loadConns further connections hold the
// subscriptions the orchestrator asks for with "subs N".
type subscribers struct {
	count, errs atomic.Int64
	stop        func()
	// capbus: the load connections and their subscriptions, k-th on
	// load[k % len(load)].
	load []*agent.Agent
	held []*agent.Subscription
	// capbus: the measured subscriptions, whose Dropped are the
	// subscribers' client errors.
	measured []*agent.Subscription
	total    int // subscriptions on the platform: cfg.subs + len(held)
	subs     int
}

func startSubscribers(ctx context.Context, cfg *roleConfig) (server, error) {
	switch cfg.stack {
	case "capbus":
		return startCapbusSubscribers(ctx, cfg)
	case "nats", "nats-tls":
		if cfg.loadConns > 0 {
			return nil, errors.New("-load-conns is a capbus measurement")
		}
		return startNATSSubscribers(cfg)
	}
	return nil, fmt.Errorf("unknown stack %q", cfg.stack)
}

func startCapbusSubscribers(ctx context.Context, cfg *roleConfig) (server, error) {
	s := &subscribers{subs: cfg.subs, total: cfg.subs}
	n := cfg.subs + cfg.loadConns
	// The agents' warnings and errors are counted with the messages they
	// drop (Subscription.Dropped: a handler 1,024 messages behind).
	log := slog.New(&warnCounter{n: &s.errs})
	agents, stops, err := startGroup(ctx, cfg, subGroup, 0, n, agent.WithLogger(log))
	if err != nil {
		return nil, err
	}
	s.stop = func() { stopAll(stops) }
	count := func(context.Context, *agent.Message) { s.count.Add(1) }
	for _, a := range agents[:cfg.subs] {
		sub, err := a.Subscribe(ctx, cfg.topic, count)
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("%s: subscribe %s: %w", a.Identity(), cfg.topic, err)
		}
		s.measured = append(s.measured, sub)
	}
	s.load = agents[cfg.subs:]
	return s, nil
}

// startGroup makes n agents of the keyring's group, <group>.<first> on,
// and runs them (runAgents).
func startGroup(ctx context.Context, cfg *roleConfig, group string, first, n int, opts ...agent.Option) ([]*agent.Agent, []func(), error) {
	agents := make([]*agent.Agent, n)
	for i := range agents {
		k := first + i
		a, err := newCapbusAgentKP(cfg, identity(group, k), cfg.ring.pair(group, k), opts...)
		if err != nil {
			return nil, nil, err
		}
		agents[i] = a
	}
	stops, err := runAgents(ctx, agents)
	if err != nil {
		return nil, nil, err
	}
	return agents, stops, nil
}

// runAgents runs agents until ctx ends, 32 connecting at a time, and
// returns their stop functions once all are welcomed.
func runAgents(ctx context.Context, agents []*agent.Agent) ([]func(), error) {
	stops := make([]func(), len(agents))
	sem := make(chan struct{}, 32)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i, a := range agents {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			stop, err := runAgent(ctx, a)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			stops[i] = stop
		})
	}
	wg.Wait()
	if firstErr != nil {
		stopAll(stops)
		return nil, firstErr
	}
	return stops, nil
}

func stopAll(stops []func()) {
	var wg sync.WaitGroup
	for _, stop := range stops {
		if stop != nil {
			wg.Go(stop)
		}
	}
	wg.Wait()
}

func startNATSSubscribers(cfg *roleConfig) (server, error) {
	s := &subscribers{subs: cfg.subs, total: cfg.subs}
	var conns []*nats.Conn
	s.stop = func() {
		for _, nc := range conns {
			nc.Close()
		}
	}
	onErr := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) { s.errs.Add(1) })
	for range cfg.subs {
		nc, err := natsConnect(cfg, onErr)
		if err != nil {
			s.stop()
			return nil, err
		}
		conns = append(conns, nc)
		if _, err := nc.Subscribe(natsSubjectOf(cfg.topic), func(*nats.Msg) { s.count.Add(1) }); err != nil {
			s.stop()
			return nil, err
		}
		if err := nc.Flush(); err != nil { // the server has the subscription
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *subscribers) readyLine() string { return fmt.Sprintf("subscribers=%d", s.subs) }

func (s *subscribers) close() { s.stop() }

func (s *subscribers) countLine() string {
	errs := s.errs.Load()
	for _, sub := range s.measured {
		errs += int64(sub.Dropped())
	}
	b, _ := json.Marshal(countLine{N: s.count.Load(), TimeNS: time.Now().UnixNano(), Errors: errs})
	return string(b)
}

// command answers
//
//	count          count {json}: the messages received so far
//	wait N         count {json} once N messages were received, or none
//	               arrived for a second
//	subs N         subs N <ms>: N subscriptions on the platform now (capbus)
func (s *subscribers) command(line string, out *lineWriter) (bool, error) {
	cmd, arg, _ := strings.Cut(line, " ")
	switch cmd {
	case "count":
		out.printf("count %s", s.countLine())
	case "wait":
		want, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return true, fmt.Errorf("wait %q: %w", arg, err)
		}
		last, since := s.count.Load(), time.Now()
		for n := last; n < want && time.Since(since) < time.Second; n = s.count.Load() {
			if n != last {
				last, since = n, time.Now()
			}
			time.Sleep(5 * time.Millisecond) // polling a counter: the honest way here
		}
		out.printf("count %s", s.countLine())
	case "subs":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return true, fmt.Errorf("subs %q: %w", arg, err)
		}
		t0 := time.Now()
		if err := s.resize(n); err != nil {
			return true, err
		}
		out.printf("subs %d %d", s.total, time.Since(t0).Milliseconds())
	default:
		return false, nil
	}
	return true, nil
}

// resize subscribes (or unsubscribes) load patterns until total
// subscriptions are on the platform, 8 requests in flight per connection.
func (s *subscribers) resize(total int) error {
	if len(s.load) == 0 {
		return errors.New("subs: no load connections (-load-conns)")
	}
	want := total - s.subs
	if want < 0 {
		return fmt.Errorf("subs %d: at least the %d subscribed to the topic", total, s.subs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	have := len(s.held)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	noop := func(context.Context, *agent.Message) {}
	if want > have {
		s.held = append(s.held, make([]*agent.Subscription, want-have)...)
		next.Store(int64(have))
	} else {
		next.Store(int64(want))
	}
	for range 8 * len(s.load) {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= max(want, have) {
					return
				}
				a := s.load[k%len(s.load)]
				var err error
				if want > have {
					s.held[k], err = a.Subscribe(ctx, loadPattern(k), noop)
				} else {
					err = s.held[k].Unsubscribe(ctx)
				}
				if err != nil {
					fail(fmt.Errorf("%s, pattern %s: %w", a.Identity(), loadPattern(k), err))
					return
				}
			}
		})
	}
	wg.Wait()
	if want < have {
		s.held = s.held[:want]
	}
	s.total = s.subs + len(s.held)
	return firstErr
}

// warnCounter is a logger that counts warnings and errors.
type warnCounter struct{ n *atomic.Int64 }

func (h *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *warnCounter) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }

func (h *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnCounter) WithGroup(string) slog.Handler      { return h }

// capbusPublisher publishes to cfg.topic; each publish waits for the
// platform to accept it (the platform answers once it has queued the
// message to every subscriber).
type capbusPublisher struct {
	a     *agent.Agent
	topic string
	stop  func()
}

// natsPublisher publishes to the NATS subject of cfg.topic and waits for
// the server with a PING round trip (nc.Flush): like capbus's publish, at
// most one unconfirmed message per goroutine. The server has routed a
// message to its subscribers' connections when it answers the PING after
// it.
type natsPublisher struct {
	nc      *nats.Conn
	subject string
}

// dialPublisher connects the publisher; the warm-up checks that its
// publishes are accepted.
func dialPublisher(ctx context.Context, cfg *roleConfig) (client, error) {
	switch cfg.stack {
	case "capbus":
		a, err := newCapbusAgentKP(cfg, identity(pubGroup, 0), cfg.ring.pair(pubGroup, 0))
		if err != nil {
			return nil, err
		}
		stop, err := runAgent(ctx, a)
		if err != nil {
			return nil, err
		}
		return &capbusPublisher{a: a, topic: cfg.topic, stop: stop}, nil
	case "nats", "nats-tls":
		nc, err := natsConnect(cfg)
		if err != nil {
			return nil, err
		}
		return &natsPublisher{nc: nc, subject: natsSubjectOf(cfg.topic)}, nil
	}
	return nil, fmt.Errorf("publish: unknown stack %q", cfg.stack)
}

func (p *capbusPublisher) call(ctx context.Context, _ int, payload []byte) error {
	return p.a.Publish(ctx, p.topic, payload)
}

func (p *capbusPublisher) close() { p.stop() }

func (p *natsPublisher) call(_ context.Context, _ int, payload []byte) error {
	if err := p.nc.Publish(p.subject, payload); err != nil {
		return err
	}
	return p.nc.FlushTimeout(callTimeout)
}

func (p *natsPublisher) close() { p.nc.Close() }
