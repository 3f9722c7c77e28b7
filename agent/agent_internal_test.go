package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type place struct {
	City string `msgpack:"city"`
	Days int    `msgpack:"days,omitempty"`
}

// svcSetup exports the methods of the tests' "svc" agent.
func svcSetup(t testing.TB) func(*Agent) {
	return func(a *Agent) {
		require.NoError(t, a.Export("temperature", rpc.Func(func(ctx context.Context, p place) (float64, error) {
			if p.City == "Atlantis" {
				return 0, fmt.Errorf("no station in %s", p.City)
			}
			return 21.5 + float64(p.Days), nil
		}), rpc.Allow("can_read_temp")))
		require.NoError(t, a.Export("whoami", rpc.Func(func(ctx context.Context, _ struct{}) (rpc.Principal, error) {
			c, _ := rpc.CallerFrom(ctx)
			return c, nil
		})))
		require.NoError(t, a.Export("sum", rpc.Func(func(ctx context.Context, xs []int) (int, error) {
			n := 0
			for _, x := range xs {
				n += x
			}
			return n, nil
		})))
		require.NoError(t, a.Export("panic", rpc.Func(func(ctx context.Context, _ struct{}) (int, error) {
			panic("boom")
		})))
	}
}

// blocker is a handler that signals when it starts and returns when
// released or when its context ends (then it reports the context's end).
type blocker struct {
	started chan struct{}
	release chan struct{}
	ended   chan error // the context's error, when it ended first
	dl      chan time.Time
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}, 16), release: make(chan struct{}),
		ended: make(chan error, 16), dl: make(chan time.Time, 16)}
}

func (b *blocker) handler() rpc.Handler {
	return rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
		dl, _ := ctx.Deadline()
		b.dl <- dl
		b.started <- struct{}{}
		select {
		case <-b.release:
			return "released", nil
		case <-ctx.Done():
			b.ended <- ctx.Err()
			return "", ctx.Err()
		}
	})
}

func (b *blocker) waitStarted(t testing.TB) {
	t.Helper()
	select {
	case <-b.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not start")
	}
}

func (b *blocker) waitEnded(t testing.TB) error {
	t.Helper()
	select {
	case err := <-b.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end")
		return nil
	}
}

func TestAgent_CallDecodesTypedResults(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("carol", "svc", svcSetup(t))
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()

	got, err := CallAs[float64](ctx, alice, "svc", "temperature", "Paris", 2)
	require.NoError(t, err)
	assert.Equal(t, 23.5, got, "positional")
	got, err = CallAs[float64](ctx, alice, "svc", "temperature", rpc.Kwargs{"city": "Paris", "days": 1})
	require.NoError(t, err)
	assert.Equal(t, 22.5, got, "keywords")
	n, err := CallAs[int](ctx, alice, "svc", "sum", 1, 2, 3)
	require.NoError(t, err)
	assert.Equal(t, 6, n, "variadic")
	c, err := CallAs[rpc.Principal](ctx, alice, "svc", "whoami")
	require.NoError(t, err)
	assert.Equal(t, rpc.Principal{UserID: "alice", Identity: "alice"}, c)
	raw, err := alice.Call(ctx, "svc", "sum", 40, 2)
	require.NoError(t, err)
	var v int
	require.NoError(t, raw.Decode(&v))
	assert.Equal(t, 42, v)
}

func TestCallAs_AResultOfAnotherTypeIsAResultErrorNotInvalidArgs(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("carol", "svc", svcSetup(t))
	alice := b.agent("alice", "alice", nil)
	_, err := CallAs[string](context.Background(), alice, "svc", "sum", 1, 2)
	require.Error(t, err)
	assert.ErrorIs(t, err, rpc.ErrResultType)
	assert.ErrorIs(t, err, rpc.ErrInternal)
	assert.NotErrorIs(t, err, rpc.ErrInvalidArgs)
	assert.Contains(t, err.Error(), "svc.sum: internal: result (an integer) does not decode into string")
}

func TestAgent_StrictArgumentsReachTheCallerNamingTheParameter(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	type setpoint struct {
		Value float64 `msgpack:"value"`
	}
	set := make(chan float64, 1)
	b.agent("carol", "thermostat", func(a *Agent) {
		require.NoError(t, a.Export("set_setpoint", rpc.Func(func(ctx context.Context, s setpoint) (bool, error) {
			set <- s.Value
			return true, nil
		})))
	})
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()
	_, err := alice.Call(ctx, "thermostat", "set_setpoint")
	require.ErrorIs(t, err, rpc.ErrInvalidArgs)
	assert.Contains(t, err.Error(), "set_setpoint: value: want a number, got nothing")
	_, err = alice.Call(ctx, "thermostat", "set_setpoint", rpc.Kwargs{"valeu": 20.5})
	require.ErrorIs(t, err, rpc.ErrInvalidArgs)
	assert.Contains(t, err.Error(), `unknown keyword argument "valeu" (parameters: value)`)
	_, err = alice.Call(ctx, "thermostat", "set_setpoint", "warm")
	assert.ErrorContains(t, err, "set_setpoint: value: want a number, got a string")
	select {
	case v := <-set:
		t.Fatalf("the handler ran with %v", v)
	default:
	}
	_, err = alice.Call(ctx, "thermostat", "set_setpoint", 20.5)
	require.NoError(t, err)
	assert.Equal(t, 20.5, <-set)
}

func TestAgent_ErrorsMatchSentinels(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("carol", "svc", svcSetup(t))
	bob := b.agent("bob", "bob", nil)
	ctx := context.Background()

	_, err := bob.Call(ctx, "nobody", "x")
	assert.ErrorIs(t, err, rpc.ErrNoRoute)
	_, err = bob.Call(ctx, "svc", "nothing")
	assert.ErrorIs(t, err, rpc.ErrNotFound)
	_, err = bob.Call(ctx, "svc", "temperature", "Paris")
	var e *rpc.Error
	require.ErrorIs(t, err, rpc.ErrUnauthorized)
	require.ErrorAs(t, err, &e)
	assert.Equal(t, []string{"can_read_temp"}, e.Missing())
	assert.Equal(t, []string{"can_read_temp"}, e.Required())
	assert.Equal(t, "svc", e.Peer())
	assert.Equal(t, "temperature", e.Method())
	_, err = bob.Call(ctx, "svc", "sum", "one")
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs)
	_, err = bob.Call(ctx, "svc", "whoami", 1)
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs)
}

func TestAgent_HandlerErrorAndPanicReachCaller(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	var logs syncBuffer
	b.agent("carol", "svc", svcSetup(t), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()

	_, err := alice.Call(ctx, "svc", "temperature", "Atlantis")
	var e *rpc.Error
	require.ErrorIs(t, err, rpc.ErrApplication)
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "no station in Atlantis", e.Message())
	_, err = alice.Call(ctx, "svc", "panic")
	assert.ErrorIs(t, err, rpc.ErrInternal)
	assert.Contains(t, logs.String(), "handler panicked")
	assert.Contains(t, logs.String(), "goroutine", "the stack is logged")
	_, err = CallAs[float64](ctx, alice, "svc", "temperature", "Paris")
	assert.NoError(t, err, "the agent serves on after a panic")
}

// TestAgent_AHandlerReturningATypedNilErrorIsAnInternalError: a nil
// *rpc.Error returned as an error (a common Go mistake) crashed the
// callee's process; it is an internal error for the caller.
func TestAgent_AHandlerReturningATypedNilErrorIsAnInternalError(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("carol", "svc", func(a *Agent) {
		require.NoError(t, a.Export("typednil", rpc.Func(func(ctx context.Context, _ struct{}) (int, error) {
			var e *rpc.Error
			return 0, e
		})))
		require.NoError(t, a.Export("ping", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "pong", nil })))
	})
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()
	_, err := alice.Call(ctx, "svc", "typednil")
	assert.ErrorIs(t, err, rpc.ErrInternal)
	assert.ErrorContains(t, err, "nil *rpc.Error")
	got, err := CallAs[string](ctx, alice, "svc", "ping")
	require.NoError(t, err, "the callee serves on")
	assert.Equal(t, "pong", got)
}

func TestAgent_NotifyRunsHandlerWithoutReply(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	got := make(chan string, 1)
	b.agent("carol", "svc", func(a *Agent) {
		require.NoError(t, a.Export("log", rpc.Func(func(ctx context.Context, line string) (struct{}, error) {
			got <- line
			return struct{}{}, errors.New("ignored: notifications have no reply")
		})))
	})
	c := b.agent("alice", "alice", nil)
	require.NoError(t, c.Notify(context.Background(), "svc", "log", "hello"))
	assert.Equal(t, "hello", <-got)
	assert.ErrorIs(t, c.Notify(context.Background(), "", "log"), rpc.ErrInvalidArgs)
}

func TestAgent_HandlerContextEndsAtTheCallersDeadline(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	bl := newBlocker()
	defer close(bl.release)
	b.agent("carol", "svc", func(a *Agent) { require.NoError(t, a.Export("wait", bl.handler())) })
	c := b.agent("alice", "alice", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	callerDeadline, _ := ctx.Deadline()
	errc := make(chan error, 1)
	go func() { _, err := c.Call(ctx, "svc", "wait"); errc <- err }()
	bl.waitStarted(t)
	dl := <-bl.dl
	require.False(t, dl.IsZero(), "the handler's context has a deadline")
	assert.WithinDuration(t, callerDeadline, dl, 100*time.Millisecond, "the handler's deadline is the caller's")
	assert.ErrorIs(t, bl.waitEnded(t), context.DeadlineExceeded)
	err := <-errc
	assert.ErrorIs(t, err, rpc.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// TestAgent_ACallWhoseContextHasEndedIsNotSent: a call made with a
// context already past its deadline, or cancelled, returns its error
// without reaching the callee, whose handler would otherwise run with no
// deadline at all.
func TestAgent_ACallWhoseContextHasEndedIsNotSent(t *testing.T) {
	var audit syncBuffer // the platform's record of every call it forwards, in order
	b := newBus(t, standardUsers(), standardExtra(), platform.WithAuditWriter(&audit), platform.WithAuditAllowed(true))
	var ran atomic.Int32
	b.agent("carol", "svc", func(a *Agent) {
		require.NoError(t, a.Export("count", rpc.Func(func(ctx context.Context, _ struct{}) (int32, error) { return ran.Add(1), nil })))
	})
	c := b.agent("alice", "alice", nil)

	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := c.Call(past, "svc", "count")
	assert.ErrorIs(t, err, rpc.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	gone, cancel2 := context.WithCancelCause(context.Background())
	errShutdown := errors.New("shutting down")
	cancel2(errShutdown)
	_, err = c.Call(gone, "svc", "count")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, errShutdown, "the cause given to the context is in the error")

	// The platform reads one connection's messages in order: had either
	// been sent, it would have recorded it before this one.
	n, err := CallAs[int32](context.Background(), c, "svc", "count")
	require.NoError(t, err)
	assert.Equal(t, int32(1), n)
	assert.Equal(t, 1, strings.Count(audit.String(), `"method":"count"`), "only the live call reached the platform:\n%s", audit.String())
}

func TestAgent_HandlerContextEndsWhenTheCallerCancels(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	bl := newBlocker()
	defer close(bl.release)
	b.agent("carol", "svc", func(a *Agent) { require.NoError(t, a.Export("wait", bl.handler())) })
	c := b.agent("alice", "alice", nil)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Call(ctx, "svc", "wait"); errc <- err }()
	bl.waitStarted(t)
	cancel()
	err := <-errc
	assert.ErrorIs(t, err, rpc.ErrCanceled)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, bl.waitEnded(t), context.Canceled, "the cancel reached the handler through the platform")
}

func TestAgent_HandlerContextEndsWhenTheCallerDisconnects(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	bl := newBlocker()
	defer close(bl.release)
	b.agent("carol", "svc", func(a *Agent) { require.NoError(t, a.Export("wait", bl.handler())) })
	c := b.newAgent("alice", "alice", WithShutdownGrace(0))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	require.NoError(t, c.WaitConnected(context.Background()))

	go func() { _, _ = c.Call(context.Background(), "svc", "wait") }()
	bl.waitStarted(t)
	stop()
	require.NoError(t, <-done)
	assert.ErrorIs(t, bl.waitEnded(t), context.Canceled, "the caller's disconnect cancelled the handler")
}

func TestAgent_FullQueueIsOverloaded(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	bl := newBlocker()
	defer close(bl.release)
	b.agent("carol", "svc", func(a *Agent) { require.NoError(t, a.Export("wait", bl.handler())) }, WithConcurrency(1, 0))
	c := b.agent("alice", "alice", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = c.Call(ctx, "svc", "wait") }()
	bl.waitStarted(t)
	_, err := c.Call(context.Background(), "svc", "wait")
	assert.ErrorIs(t, err, rpc.ErrOverloaded)
}

func TestAgent_QueuedCallRunsWhenAWorkerFrees(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	bl := newBlocker()
	b.agent("carol", "svc", func(a *Agent) { require.NoError(t, a.Export("wait", bl.handler())) }, WithConcurrency(1, 4))
	c := b.agent("alice", "alice", nil)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s, err := CallAs[string](context.Background(), c, "svc", "wait")
			if err == nil && s != "released" {
				err = fmt.Errorf("got %q", s)
			}
			errs <- err
		}()
	}
	bl.waitStarted(t)
	select {
	case <-bl.started:
		t.Fatal("two handlers ran with a concurrency of one")
	default:
	}
	bl.release <- struct{}{}
	bl.waitStarted(t) // the queued call, once the worker is free
	bl.release <- struct{}{}
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
}

// relay is a TCP relay between agents and a platform that can stop passing
// bytes on, as a platform host that vanished without closing anything.
type relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	muted  bool
	unmute chan struct{}
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newRelay(t testing.TB, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relay{ln: ln, target: strings.TrimPrefix(target, "tcp://"), unmute: make(chan struct{})}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return "tcp://" + r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, up)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(up, c)
		go r.pipe(c, up)
	}
}

// pipe copies src to dst, holding every chunk while the relay is muted.
func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			muted, unmute := r.muted, r.unmute
			r.mu.Unlock()
			if muted {
				<-unmute
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) setMuted(m bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m == r.muted {
		return
	}
	r.muted = m
	if !m {
		close(r.unmute)
		r.unmute = make(chan struct{})
	}
}

func (r *relay) close() {
	r.setMuted(false)
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func TestAgent_HeartbeatDetectsASilentPlatform(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	r := newRelay(t, b.addr)
	disconnected := make(chan error, 1)
	a := b.agent("alice", "alice", nil, WithPlatform(r.addr(), b.server.Public), WithHeartbeat(50*time.Millisecond),
		WithOnDisconnect(func(err error) { disconnected <- err }))
	r.setMuted(true)
	select {
	case err := <-disconnected:
		assert.ErrorContains(t, err, "heartbeat")
	case <-time.After(10 * time.Second):
		t.Fatal("a silent platform went unnoticed")
	}
	_, err := a.Call(context.Background(), "svc", "m")
	assert.ErrorIs(t, err, rpc.ErrUnavailable)
	r.setMuted(false)
	require.NoError(t, a.WaitConnected(context.Background()))
	require.NoError(t, a.Ping(context.Background()))
}

func TestAgent_RunTwiceIsAnError(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	a := b.agent("alice", "alice", nil)
	assert.ErrorIs(t, a.Run(context.Background()), ErrRunning)
}

func TestAgent_PubSubDeliversInOrderAndReportsRefusals(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	got := make(chan *Message, 100)
	sub := b.agent("alice", "alice", nil)
	pub := b.agent("bob", "bob", nil)
	ctx := context.Background()
	s, err := sub.Subscribe(ctx, "devices/+/temp", func(ctx context.Context, m *Message) { got <- m })
	require.NoError(t, err)
	for i := range 20 {
		require.NoError(t, pub.Publish(ctx, fmt.Sprintf("devices/d%d/temp", i), i))
	}
	require.NoError(t, pub.Publish(ctx, "devices/d1/humidity", -1))
	for i := range 20 {
		m := <-got
		var v int
		require.NoError(t, m.Decode(&v))
		require.Equal(t, i, v, "message %d in order", i)
		require.Equal(t, "bob", m.Sender)
		require.Equal(t, "bob", m.UserID)
	}
	assert.ErrorIs(t, pub.Publish(ctx, "secret/plans", "x"), rpc.ErrUnauthorized)
	require.NoError(t, s.Unsubscribe(ctx))
	require.NoError(t, pub.Publish(ctx, "devices/d1/temp", 99))
	require.NoError(t, sub.Ping(ctx)) // a message, if any, came before the pong
	select {
	case m := <-got:
		t.Fatalf("message after Unsubscribe: %+v", m)
	default:
	}
}

// TestCheckTopic checks that the SDK refuses malformed topics and patterns
// before they reach the platform, as an invalid-arguments error naming
// them (the syntax itself is tested in internal/vip).
func TestCheckTopic(t *testing.T) {
	for _, bad := range []string{"", "a/#/b", "a+/b", "a/b#"} {
		assert.ErrorIs(t, checkTopic(bad, true), rpc.ErrInvalidArgs, "pattern %q", bad)
	}
	assert.Error(t, checkTopic("a/+", false), "a wildcard in a topic")
}

func TestNew_ReadsServerKeyFromKnownHostsSkippingMalformedLines(t *testing.T) {
	kp, err := keys.Generate()
	require.NoError(t, err)
	srv, err := keys.Generate()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "known_hosts")
	content := "# platforms\n\n127.0.0.1:1 " + kp.Public.Z85() + "\n" +
		" " + srv.Public.Z85() + "\n" + // a line without an address, as a failed start once wrote
		"tcp://10.0.0.1:22916 not-a-key\n" +
		"tcp://10.0.0.1:22916 " + srv.Public.Base64URL() + "\n"
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	var logs syncBuffer
	a, err := New("x", WithKeyPair(kp), WithAddress("10.0.0.1:22916"), WithKnownHosts(path),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	assert.Equal(t, srv.Public, a.cfg.serverKey)
	assert.Contains(t, logs.String(), "line=4", "the malformed line is named")
	assert.Contains(t, logs.String(), "skipping a malformed line")

	_, err = New("x", WithKeyPair(kp), WithAddress("10.9.9.9:1"), WithKnownHosts(path))
	assert.ErrorIs(t, err, keys.ErrNoKnownHost)
	_, err = New("x", WithKeyPair(kp))
	assert.ErrorContains(t, err, "no server key")
	_, err = New("", WithKeyPair(kp), WithServerKey(srv.Public))
	assert.Error(t, err, "an empty identity")
}

func TestNew_LoadsKeystore(t *testing.T) {
	kp, err := keys.Generate()
	require.NoError(t, err)
	srv, err := keys.Generate()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "agent.keystore")
	require.NoError(t, keys.Save(path, kp))
	a, err := New("x", WithKeystore(path), WithServerKey(srv.Public))
	require.NoError(t, err)
	assert.Equal(t, kp, a.cfg.keyPair)
	_, err = New("x", WithKeystore(filepath.Join(t.TempDir(), "missing")), WithServerKey(srv.Public))
	assert.Error(t, err, "a missing keystore")
}

func TestExport_RejectsEmptyNameAndNilHandler(t *testing.T) {
	kp, _ := keys.Generate()
	a, err := New("a", WithKeyPair(kp), WithServerKey(kp.Public))
	require.NoError(t, err)
	assert.Error(t, a.Export("", rpc.HandlerFunc(func(context.Context, *rpc.Request) (any, error) { return nil, nil })))
	assert.Error(t, a.Export("m", nil))
}

func TestSubscribe_WhileDisconnectedIsMadeOnConnect(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	got := make(chan string, 1)
	a := b.newAgent("alice", "alice")
	_, err := a.Subscribe(context.Background(), "x/#", func(ctx context.Context, m *Message) { got <- m.Topic })
	require.NoError(t, err)
	b.run(a)
	pub := b.agent("bob", "bob", nil)
	require.NoError(t, pub.Publish(context.Background(), "x/y", 1))
	assert.Equal(t, "x/y", <-got)
}

func TestAgent_CallFailsAtOnceWhenTheCalleeLeaves(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	bl := newBlocker()
	defer close(bl.release)
	svc := b.newAgent("carol", "svc", WithShutdownGrace(0))
	require.NoError(t, svc.Export("wait", bl.handler()))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	require.NoError(t, svc.WaitConnected(context.Background()))
	c := b.agent("alice", "alice", nil)

	errc := make(chan error, 1)
	go func() { _, err := c.Call(context.Background(), "svc", "wait"); errc <- err }()
	bl.waitStarted(t)
	stop()
	require.NoError(t, <-done)
	err := <-errc
	require.ErrorIs(t, err, rpc.ErrUnavailable)
	assert.Contains(t, err.Error(), `peer "svc" disconnected while the call of "wait" was in flight`)
}

func TestAgent_StopLetsRunningHandlersReply(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	bl := newBlocker()
	svc := b.newAgent("carol", "svc", WithShutdownGrace(time.Minute))
	require.NoError(t, svc.Export("wait", bl.handler()))
	require.NoError(t, svc.Export("fast", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "fast", nil })))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	require.NoError(t, svc.WaitConnected(context.Background()))
	c := b.agent("alice", "alice", nil)

	res := make(chan string, 1)
	go func() {
		s, err := CallAs[string](context.Background(), c, "svc", "wait")
		if err != nil {
			s = err.Error()
		}
		res <- s
	}()
	bl.waitStarted(t)
	stop()
	// Draining: new calls are refused at once, the running one may finish.
	for {
		_, err := c.Call(context.Background(), "svc", "fast")
		if errors.Is(err, rpc.ErrUnavailable) {
			break
		}
		require.NoError(t, err) // answered before Run saw the end of its context
	}
	close(bl.release)
	assert.Equal(t, "released", <-res, "the call running at shutdown got its reply")
	require.NoError(t, <-done)
}

func TestSession_ReplyMatchesMsgIDAndSender(t *testing.T) {
	a := &Agent{idPrefix: "p."}
	s := &session{a: a, requests: map[uint64]*request{}}
	wait := func(id, peer string) chan message {
		r := &request{ch: make(chan message, 1), peer: peer}
		n, ok := a.parseID([]byte(id))
		require.True(t, ok, id)
		s.requests[n] = r
		return r.ch
	}
	b := func(s string) []byte { return []byte(s) }
	refusal := func(id, recipient string) message {
		return message{ID: b(id), Subsys: vip.SubError, Args: [][]byte{b("105"), b("queue full"), b(recipient), b("RPC")}}
	}
	call := wait("p.x1", "weather")
	for _, m := range []message{
		{Peer: "mallory", ID: b("p.x1"), Subsys: vip.SubRPC}, // another peer
		refusal("p.x1", "alice"),                             // about a reply we sent to alice
		{Peer: "weather", ID: b("p.x2"), Subsys: vip.SubRPC}, // another msg-id
		{Peer: "weather", ID: b("q.x1"), Subsys: vip.SubRPC}, // another agent's msg-id
		{Peer: "weather", ID: b("p.X1"), Subsys: vip.SubRPC}, // not one of ours
	} {
		assert.False(t, s.reply(m), "accepted %+v for a call to weather", m)
	}
	require.True(t, s.reply(refusal("p.x1", "weather")))
	assert.Equal(t, vip.SubError, (<-call).Subsys)
	ctl := wait("p.x3", "")
	require.True(t, s.reply(message{ID: b("p.x3"), Subsys: vip.SubPong}))
	assert.Equal(t, vip.SubPong, (<-ctl).Subsys)
}

// TestAgent_WorkersAreReusedAndEndWithTheSession runs eight handlers at
// once, on eight workers, then calls one at a time: no worker is started
// for them. When the connection ends the workers end; after the reconnect
// calls are served again.
func TestAgent_WorkersAreReusedAndEndWithTheSession(t *testing.T) {
	const n = 8
	b := newBus(t, standardUsers(), standardExtra())
	arrived := make(chan struct{}, n)
	gate := make(chan struct{})
	svc := b.agent("carol", "svc", func(a *Agent) {
		require.NoError(t, a.Export("together", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
			arrived <- struct{}{}
			<-gate
			return "ok", nil
		})))
		require.NoError(t, a.Export("alone", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "ok", nil })))
	})
	c := b.agent("alice", "alice", nil)
	ctx := context.Background()

	errc := make(chan error, n)
	for range n {
		go func() { _, err := c.Call(ctx, "svc", "together"); errc <- err }()
	}
	for range n {
		<-arrived // n handlers run at once, on n workers
	}
	close(gate)
	for range n {
		require.NoError(t, <-errc)
	}
	s, err := svc.current(ctx)
	require.NoError(t, err)
	workers := func() int {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		return s.workers
	}
	require.Equal(t, n, workers())
	for range 20 {
		_, err := c.Call(ctx, "svc", "alone")
		require.NoError(t, err)
		require.Equal(t, n, workers(), "a call started a worker")
	}

	b.stop()
	require.Eventually(t, func() bool {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		return s.shut
	}, 5*time.Second, time.Millisecond, "the workers are told to end with the session")
	b.start()
	require.NoError(t, c.WaitConnected(ctx))
	require.NoError(t, svc.WaitConnected(ctx))
	out, err := CallAs[string](ctx, c, "svc", "alone")
	require.NoError(t, err)
	assert.Equal(t, "ok", out)
}

func TestAgent_WaitConnectedFailsWithTheHandshakesDiagnosis(t *testing.T) {
	// The test's backoff (5 to 50 ms) makes more failed handshakes than
	// the platform's failure limit allows from one host.
	b := newBus(t, standardUsers(), standardExtra(), platform.WithLimits(platform.Limits{HandshakeFailures: 1000}))
	t.Run("key not admitted", func(t *testing.T) {
		stranger, _ := keys.Generate()
		a := b.newAgent("bob", "bob", WithKeyPair(stranger))
		errc := make(chan error, 1)
		go func() { errc <- a.Run(context.Background()) }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := a.WaitConnected(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "refused this agent's key "+stranger.Public.Z85())
		assert.Contains(t, err.Error(), "capbus auth add")
		assert.Error(t, <-errc, "Run gives up: retrying cannot help")
	})
	t.Run("wrong server key", func(t *testing.T) {
		other, _ := keys.Generate()
		a := b.newAgent("bob", "bob", WithServerKey(other.Public))
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- a.Run(ctx) }()
		wctx, wcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer wcancel()
		err := a.WaitConnected(wctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "wrong or stale server key")
		cancel()
		require.NoError(t, <-errc)
	})
}

func TestAgent_WaitForConnectionMakesCallsWaitForAReconnect(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	alice := b.agent("alice", "alice", nil, WithWaitForConnection())
	bob := b.agent("bob", "bob", nil)
	b.stop()
	require.Eventually(t, func() bool { _, ok := alice.Welcome(); return !ok }, 5*time.Second, time.Millisecond)
	_, err := bob.WhoAmI(context.Background())
	require.ErrorIs(t, err, rpc.ErrUnavailable, "without the option a query fails at once")
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := alice.WhoAmI(ctx)
		res <- err
	}()
	b.start()
	require.NoError(t, <-res, "the query made while disconnected waited for the reconnect")
}

func TestAgent_OnConnectAndOnDisconnectFollowTheConnection(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	connected := make(chan Welcome, 4)
	disconnected := make(chan error, 4)
	b.agent("alice", "alice", nil,
		WithOnConnect(func(w Welcome) { connected <- w }),
		WithOnDisconnect(func(err error) { disconnected <- err }))
	w := <-connected
	assert.Equal(t, "alice", w.UserID)
	assert.Equal(t, b.server.Public, w.ServerKey)
	b.stop()
	select {
	case err := <-disconnected:
		assert.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no disconnect callback")
	}
	b.start()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no connect callback after the reconnect")
	}
}

// TestSubscription_AReaderThatNeverBlocksLetsTheHandlerKeepUp posts from a
// loop that never blocks, on one P, as the reader of a connection whose
// socket always has input: the handler's goroutine must still run, and a
// handler that keeps up loses nothing.
func TestSubscription_AReaderThatNeverBlocksLetsTheHandlerKeepUp(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	kp, err := keys.Generate()
	require.NoError(t, err)
	a, err := New("sub", WithKeyPair(kp), WithPlatform("tcp://127.0.0.1:1", kp.Public), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	const n = 20 * maxMailbox
	handled := make(chan struct{}, n)
	sub := &Subscription{a: a, pattern: "t/#", fn: func(context.Context, *Message) { handled <- struct{}{} }}
	for range n {
		sub.post(context.Background(), &Message{Topic: "t/x"})
	}
	for i := range n - int(sub.Dropped()) {
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatalf("handled %d of %d", i, n)
		}
	}
	a.handlers.Wait()
	assert.Zero(t, sub.Dropped(), "messages dropped while the handler kept up")
}

// TestAgent_ACallRightAfterGoRunWaitsWithWithWaitForConnection: "go
// a.Run(ctx)" then a call is the usual start; with WithWaitForConnection
// the call waits for the connection instead of failing because Run has
// not begun yet.
func TestAgent_ACallRightAfterGoRunWaitsWithWithWaitForConnection(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("carol", "svc", svcSetup(t))
	for i := range 5 {
		a := b.newAgent("alice", "alice", WithWaitForConnection())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		callCtx, callCancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := CallAs[float64](callCtx, a, "svc", "temperature", "Paris")
		callCancel()
		assert.NoError(t, err, "call %d", i)
		cancel()
		require.NoError(t, <-done)
	}
}

// TestAgent_WaitConnectedWaitsForTheNextRun: after a Run that its context
// ended, WaitConnected called right after the next "go a.Run(ctx)" waits
// for that Run instead of reporting the earlier stop.
func TestAgent_WaitConnectedWaitsForTheNextRun(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	a := b.newAgent("alice", "alice")
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		waitCtx, waitCancel := context.WithTimeout(context.Background(), 10*time.Second)
		assert.NoError(t, a.WaitConnected(waitCtx), "run %d", i+1)
		waitCancel()
		cancel()
		require.NoError(t, <-done)
	}
}

// TestAgent_ExportRefusesParamsThatDifferFromTheHandlers: rpc.Params that
// name a struct handler's parameters otherwise than its fields would have
// auth.json's parameter restrictions judge other values than the handler
// receives; Export refuses them. Params that agree, and Params naming a
// single parameter, are taken.
func TestAgent_ExportRefusesParamsThatDifferFromTheHandlers(t *testing.T) {
	kp, err := keys.Generate()
	require.NoError(t, err)
	srv, err := keys.Generate()
	require.NoError(t, err)
	a, err := New("svc", WithKeyPair(kp), WithServerKey(srv.Public))
	require.NoError(t, err)
	type route struct {
		From string `msgpack:"from"`
		City string `msgpack:"city"`
	}
	h := rpc.Func(func(ctx context.Context, r route) (string, error) { return r.City, nil })
	err = a.Export("route", h, rpc.Params("city", "from"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `rpc.Params ["city" "from"] differ from the handler's own parameters ["from" "city"]`)
	assert.NoError(t, a.Export("route", h, rpc.Params("from", "city")))
	assert.NoError(t, a.Export("route2", h))
	single := rpc.Func(func(ctx context.Context, units string) (string, error) { return units, nil })
	assert.NoError(t, a.Export("set_units", single, rpc.Params("units")))
	// An empty name would make the method uncallable ("missing []").
	assert.ErrorContains(t, a.Export("set_units", single, rpc.Allow("")), "an empty name in rpc.Allow")
	assert.ErrorContains(t, a.Export("set_units", single, rpc.AllowRoles("admin", "")), "an empty name")
}

// TestAgent_AMessageTooLargeFailsItsCallNotTheConnection: an argument or a
// result over what a message may hold fails that call, with
// ErrInvalidArgs or ErrInternal; before, writing it closed the agent's own
// connection and failed every call in flight.
func TestAgent_AMessageTooLargeFailsItsCallNotTheConnection(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	var sessions atomic.Int32
	b.agent("carol", "svc", func(a *Agent) {
		require.NoError(t, a.Export("big", rpc.Func(func(ctx context.Context, n int) (string, error) { return strings.Repeat("x", n), nil })))
		require.NoError(t, a.Export("len", rpc.Func(func(ctx context.Context, s string) (int, error) { return len(s), nil })))
	}, WithOnConnect(func(Welcome) { sessions.Add(1) }))
	c := b.agent("alice", "alice", nil)
	ctx := context.Background()

	_, err := c.Call(ctx, "svc", "big", 17<<20)
	assert.ErrorIs(t, err, rpc.ErrInternal)
	assert.ErrorContains(t, err, "the result is 17825797 bytes, over the 16711680 a message may hold")
	_, err = c.Call(ctx, "svc", "len", strings.Repeat("y", 17<<20))
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs)
	assert.ErrorContains(t, err, "a message may hold")

	n, err := CallAs[int](ctx, c, "svc", "len", "still connected")
	require.NoError(t, err)
	assert.Equal(t, 15, n)
	assert.Equal(t, int32(1), sessions.Load(), "the callee never reconnected")
}
