package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// fakePlatform is an in-memory stand-in for the platform, following
// docs/PROTOCOL.md closely enough to exercise the SDK without sockets or
// CURVE: hello/welcome, routing, export tables, required capabilities,
// pubsub, query and ping. Each connection is a pair of channels.
type fakePlatform struct {
	mu       sync.Mutex
	conns    map[string]*fakeConn // by identity, welcomed
	all      map[*fakeConn]bool
	grants   map[string][]string // user -> capabilities
	denyPub  map[string]bool     // topics whose publishing is refused
	down     bool                // dial fails while down
	mute     bool                // messages are swallowed while mute
	dials    int
	dialed   chan string       // identities dialing, if not nil
	usersOf  map[string]string // identity -> user
	helloErr map[string]*rpc.Error
}

type fakeConn struct {
	p        *fakePlatform
	in       chan [][]byte
	done     chan struct{}
	once     sync.Once
	identity string
	user     string
	// the same, as frames
	identityBytes, userBytes []byte
	exports                  map[string]rpc.Export
	subs                     map[string]bool
}

var errFakeClosed = errors.New("fake: connection closed")

func newFakePlatform() *fakePlatform {
	return &fakePlatform{
		conns:    map[string]*fakeConn{},
		all:      map[*fakeConn]bool{},
		grants:   map[string][]string{},
		denyPub:  map[string]bool{},
		usersOf:  map[string]string{},
		helloErr: map[string]*rpc.Error{},
	}
}

// dialer returns the dialFunc of agents connecting as user.
func (p *fakePlatform) dialer(user string) dialFunc {
	return func(ctx context.Context) (transport, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.dials++
		if p.down {
			return nil, errors.New("fake: connection refused")
		}
		c := &fakeConn{p: p, in: make(chan [][]byte, 4096), done: make(chan struct{}), user: user,
			exports: map[string]rpc.Export{}, subs: map[string]bool{}}
		p.all[c] = true
		return c, nil
	}
}

// stop closes every connection and refuses new ones until start.
func (p *fakePlatform) stop() {
	p.mu.Lock()
	p.down = true
	var cs []*fakeConn
	for c := range p.all {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// setMute makes the platform swallow every message, as a vanished host
// would, without closing connections.
func (p *fakePlatform) setMute(m bool) {
	p.mu.Lock()
	p.mute = m
	p.mu.Unlock()
}

func (p *fakePlatform) start() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (c *fakeConn) Recv() ([][]byte, error) {
	select {
	case f := <-c.in:
		return f, nil
	case <-c.done:
		return nil, errFakeClosed
	}
}

// Buffered reports the messages delivered and not yet received, as the
// CURVE transport reports bytes: the reader then goes on without pausing.
func (c *fakeConn) Buffered() int { return len(c.in) }

func (c *fakeConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.p.mu.Lock()
		delete(c.p.all, c)
		var others []*fakeConn
		if c.p.conns[c.identity] == c {
			delete(c.p.conns, c.identity)
			for _, o := range c.p.conns {
				others = append(others, o)
			}
		}
		c.p.mu.Unlock()
		for _, o := range others {
			o.deliver(nil, b("VIP1"), nil, nil, b("peerlist"), b("drop"), b(c.identity))
		}
	})
	return nil
}

func (c *fakeConn) deliver(f ...[]byte) {
	select {
	case c.in <- f:
	case <-c.done:
	}
}

func b(s string) []byte { return []byte(s) }

func (c *fakeConn) errorReply(id []byte, code rpc.Code, text, recipient, subsys string, data map[string]any) {
	var d []byte
	if data != nil {
		d, _ = rpc.Marshal(data)
	}
	c.deliver(nil, b("VIP1"), nil, id, b("error"), b(code.Wire()), b(text), b(recipient), b(subsys), d)
}

func (c *fakeConn) Send(f [][]byte) error {
	// A transport must not keep the frames: the session reuses them.
	f = cloneFrames(f)
	select {
	case <-c.done:
		return errFakeClosed
	default:
	}
	p := c.p
	p.mu.Lock()
	mute := p.mute
	p.mu.Unlock()
	if mute {
		return nil
	}
	recipient, id, subsys, args := string(f[0]), f[3], string(f[4]), f[5:]
	arg := func(i int) string {
		if i < len(args) {
			return string(args[i])
		}
		return ""
	}
	if recipient != "" {
		p.mu.Lock()
		dst := p.conns[recipient]
		p.mu.Unlock()
		if dst == nil {
			if len(id) > 0 {
				c.errorReply(id, rpc.CodeNoRoute, "No route to host", recipient, subsys, nil)
			}
			return nil
		}
		if subsys == "RPC" && (arg(0) == "call" || arg(0) == "notify") {
			p.mu.Lock()
			exp, ok := dst.exports[arg(1)]
			held := p.grants[c.user]
			p.mu.Unlock()
			if !ok {
				c.errorReply(id, rpc.CodeNotFound, "no such method", recipient, subsys, nil)
				return nil
			}
			var missing []string
			for _, need := range exp.Capabilities {
				if !containsString(held, need) {
					missing = append(missing, need)
				}
			}
			if len(missing) > 0 {
				c.errorReply(id, rpc.CodeUnauthorized, "method "+arg(1)+" requires "+strings.Join(exp.Capabilities, ","),
					recipient, subsys, map[string]any{"method": arg(1), "required": exp.Capabilities, "missing": missing})
				return nil
			}
		}
		// One allocation per forwarded message, so that benchmarks measure
		// the SDK rather than the fake.
		out := make([][]byte, len(f))
		copy(out, f)
		out[0], out[2] = c.identityBytes, c.userBytes
		dst.deliver(out...)
		return nil
	}
	reply := func(sub string, a ...[]byte) {
		c.deliver(append([][]byte{nil, b("VIP1"), nil, id, b(sub)}, a...)...)
	}
	switch subsys {
	case "hello":
		var h vip.Hello
		if err := rpc.Unmarshal(args[0], &h); err != nil {
			c.errorReply(id, rpc.CodeProtocol, err.Error(), "", subsys, nil)
			return nil
		}
		p.mu.Lock()
		if e := p.helloErr[h.Identity]; e != nil {
			p.mu.Unlock()
			c.errorReply(id, e.Code, e.Message, "", subsys, nil)
			c.Close()
			return nil
		}
		c.identity = h.Identity
		c.identityBytes, c.userBytes = []byte(h.Identity), []byte(c.user)
		for _, e := range h.Exports {
			c.exports[e.Name] = e
		}
		if old := p.conns[h.Identity]; old != nil && old != c {
			defer old.Close()
		}
		p.conns[h.Identity] = c
		p.mu.Unlock()
		w, _ := rpc.Marshal(Welcome{Identity: h.Identity, UserID: c.user, Version: "fake"})
		c.deliver(nil, b("VIP1"), b(c.user), id, b("welcome"), w)
	case "ping":
		reply("pong", args...)
	case "RPC":
		if arg(0) == "export" {
			var es []rpc.Export
			_ = rpc.Unmarshal(args[1], &es)
			p.mu.Lock()
			for _, e := range es {
				c.exports[e.Name] = e
			}
			p.mu.Unlock()
			reply("RPC", b("exported"))
		}
	case "pubsub":
		switch arg(0) {
		case "subscribe":
			p.mu.Lock()
			c.subs[arg(1)] = true
			p.mu.Unlock()
			reply("pubsub", b("ok"))
		case "unsubscribe":
			p.mu.Lock()
			delete(c.subs, arg(1))
			p.mu.Unlock()
			reply("pubsub", b("ok"))
		case "publish":
			if p.denyPub[arg(1)] {
				c.errorReply(id, rpc.CodeUnauthorized, "publish to "+arg(1)+" refused", "", subsys, nil)
				return nil
			}
			topic := arg(1)
			p.mu.Lock()
			var to []*fakeConn
			for _, d := range p.conns {
				for pat := range d.subs {
					if vip.MatchTopic(pat, topic) {
						to = append(to, d)
						break
					}
				}
			}
			p.mu.Unlock()
			for _, d := range to {
				d.deliver(b(c.identity), b("VIP1"), b(c.user), nil, b("pubsub"), b("message"), args[1], args[2])
			}
			if len(id) > 0 {
				reply("pubsub", b("ok"))
			}
		}
	case "peerlist":
		p.mu.Lock()
		out := [][]byte{b("listing")}
		for idn := range p.conns {
			out = append(out, b(idn))
		}
		p.mu.Unlock()
		reply("peerlist", out...)
	case "query":
		switch arg(0) {
		case "whoami":
			v, _ := rpc.Marshal(map[string]any{"user_id": c.user, "identity": c.identity, "key": "fake", "generation": 7})
			reply("query", args[0], v)
		default:
			c.errorReply(id, rpc.CodeInvalidArgs, "unknown query", "", subsys, nil)
		}
	}
	return nil
}

// startAgent runs a new agent on the fake platform and waits until it is
// welcomed. The agent stops at the end of the test.
func startAgent(t testing.TB, p *fakePlatform, identity, user string, setup func(*Agent), opts ...Option) *Agent {
	t.Helper()
	a := newFakeAgent(t, p, identity, user, opts...)
	if setup != nil {
		setup(a)
	}
	runAgent(t, a)
	return a
}

func newFakeAgent(t testing.TB, p *fakePlatform, identity, user string, opts ...Option) *Agent {
	t.Helper()
	opts = append([]Option{WithBackoff(minTestBackoff, 4*minTestBackoff), WithLogger(discardLogger())}, opts...)
	opts = append(opts, optionFunc(func(c *config) error { c.dial = p.dialer(user); return nil }))
	a, err := New(identity, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// runAgent runs a until the end of the test and waits for its welcome.
func runAgent(t testing.TB, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("Run returned before ready: %v", err)
	}
}

// cloneFrames copies the frames and their bytes (into one buffer, so that
// the SDK benchmarks that use the fake count two allocations for it).
func cloneFrames(f [][]byte) [][]byte {
	n := 0
	for _, b := range f {
		n += len(b)
	}
	buf := make([]byte, 0, n)
	c := make([][]byte, len(f))
	for i, b := range f {
		start := len(buf)
		buf = append(buf, b...)
		c[i] = buf[start:len(buf):len(buf)]
	}
	return c
}
