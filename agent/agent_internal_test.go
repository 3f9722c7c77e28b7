package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const minTestBackoff = 5 * time.Millisecond

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

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
	Days int    `msgpack:"days"`
}

func weatherSetup(t testing.TB) func(*Agent) {
	return func(a *Agent) {
		must(t, a.Export("temperature", rpc.Func(func(ctx context.Context, p place) (float64, error) {
			if p.City == "Atlantis" {
				return 0, fmt.Errorf("no station in %s", p.City)
			}
			return 21.5 + float64(p.Days), nil
		}), rpc.Allow("can_read_temp")))
		must(t, a.Export("whoami", rpc.Func(func(ctx context.Context, _ struct{}) (rpc.Caller, error) {
			c, _ := rpc.CallerFrom(ctx)
			return c, nil
		})))
		must(t, a.Export("sum", rpc.Func(func(ctx context.Context, xs []int) (int, error) {
			n := 0
			for _, x := range xs {
				n += x
			}
			return n, nil
		})))
		must(t, a.Export("panic", rpc.Func(func(ctx context.Context, _ struct{}) (int, error) {
			panic("boom")
		})))
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestAgent_CallDecodesTypedResults(t *testing.T) {
	p := newFakePlatform()
	p.grants["alice"] = []string{"can_read_temp"}
	startAgent(t, p, "weather", "weatherman", weatherSetup(t))
	alice := startAgent(t, p, "alice-agent", "alice", nil)
	ctx := context.Background()

	got, err := CallAs[float64](ctx, alice, "weather", "temperature", "Paris", 2)
	if err != nil || got != 23.5 {
		t.Fatalf("positional: got %v, %v; want 23.5", got, err)
	}
	got, err = CallAs[float64](ctx, alice, "weather", "temperature", rpc.Kwargs{"city": "Paris", "days": 1})
	if err != nil || got != 22.5 {
		t.Fatalf("keywords: got %v, %v; want 22.5", got, err)
	}
	n, err := CallAs[int](ctx, alice, "weather", "sum", 1, 2, 3)
	if err != nil || n != 6 {
		t.Fatalf("variadic: got %v, %v; want 6", n, err)
	}
	c, err := CallAs[rpc.Caller](ctx, alice, "weather", "whoami")
	if err != nil || c != (rpc.Caller{UserID: "alice", Identity: "alice-agent"}) {
		t.Fatalf("caller: got %+v, %v", c, err)
	}
	raw, err := alice.Call(ctx, "weather", "sum", 40, 2)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := raw.Decode(&v); err != nil || v != 42 {
		t.Fatalf("untyped: got %v, %v", v, err)
	}
}

func TestAgent_ErrorsMatchSentinels(t *testing.T) {
	p := newFakePlatform()
	startAgent(t, p, "weather", "weatherman", weatherSetup(t))
	bob := startAgent(t, p, "bob-agent", "bob", nil)
	ctx := context.Background()

	_, err := bob.Call(ctx, "nobody", "x")
	if !errors.Is(err, rpc.ErrNoRoute) {
		t.Errorf("unknown peer: %v, want ErrNoRoute", err)
	}
	_, err = bob.Call(ctx, "weather", "nothing")
	if !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("unknown method: %v, want ErrNotFound", err)
	}
	_, err = bob.Call(ctx, "weather", "temperature", "Paris")
	var e *rpc.Error
	if !errors.Is(err, rpc.ErrUnauthorized) || !errors.As(err, &e) {
		t.Fatalf("missing capability: %v, want ErrUnauthorized", err)
	}
	if fmt.Sprint(e.Missing()) != "[can_read_temp]" || fmt.Sprint(e.Required()) != "[can_read_temp]" ||
		e.Peer != "weather" || e.Method != "temperature" {
		t.Errorf("unauthorized detail: %+v", e)
	}
	_, err = bob.Call(ctx, "weather", "sum", "one")
	if !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Errorf("bad args: %v, want ErrInvalidArgs", err)
	}
	_, err = bob.Call(ctx, "weather", "whoami", 1)
	if !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Errorf("surplus args: %v, want ErrInvalidArgs", err)
	}
}

func TestAgent_HandlerErrorAndPanicReachCaller(t *testing.T) {
	p := newFakePlatform()
	p.grants["alice"] = []string{"can_read_temp"}
	var logs syncBuffer
	startAgent(t, p, "weather", "weatherman", weatherSetup(t), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	alice := startAgent(t, p, "alice-agent", "alice", nil)
	ctx := context.Background()

	_, err := alice.Call(ctx, "weather", "temperature", "Atlantis")
	var e *rpc.Error
	if !errors.Is(err, rpc.ErrApplication) || !errors.As(err, &e) || e.Message != "no station in Atlantis" {
		t.Errorf("handler error: %v, want ErrApplication with the handler's text", err)
	}
	_, err = alice.Call(ctx, "weather", "panic")
	if !errors.Is(err, rpc.ErrInternal) {
		t.Errorf("panic: %v, want ErrInternal", err)
	}
	if !strings.Contains(logs.String(), "handler panicked") || !strings.Contains(logs.String(), "goroutine") {
		t.Errorf("panic not logged with its stack: %s", logs.String())
	}
	if _, err := CallAs[float64](ctx, alice, "weather", "temperature", "Paris"); err != nil {
		t.Errorf("agent stopped serving after a panic: %v", err)
	}
}

// blocker is a handler that signals when it starts and returns when
// released or when its context ends.
type blocker struct {
	started chan struct{}
	release chan struct{}
	aborted chan struct{} // signalled when a handler's context ends
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}, 16), release: make(chan struct{}), aborted: make(chan struct{}, 16)}
}

func (b *blocker) handler() rpc.Handler {
	return rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
		b.started <- struct{}{}
		select {
		case <-b.release:
			return "released", nil
		case <-ctx.Done():
			b.aborted <- struct{}{}
			return "", ctx.Err()
		}
	})
}

func TestAgent_NotifyRunsHandlerWithoutReply(t *testing.T) {
	p := newFakePlatform()
	got := make(chan string, 1)
	startAgent(t, p, "svc", "u", func(a *Agent) {
		must(t, a.Export("log", rpc.Func(func(ctx context.Context, line string) (struct{}, error) {
			got <- line
			return struct{}{}, errors.New("ignored: notifications have no reply")
		})))
	})
	c := startAgent(t, p, "caller", "u", nil)
	must(t, c.Notify(context.Background(), "svc", "log", "hello"))
	if s := <-got; s != "hello" {
		t.Fatalf("got %q", s)
	}
	if err := c.Notify(context.Background(), "", "log"); !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Fatalf("empty peer: %v", err)
	}
}

func TestAgent_CanceledCallReturnsAtOnce(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	defer close(bl.release)
	startAgent(t, p, "slow", "u", func(a *Agent) { must(t, a.Export("wait", bl.handler())) })
	c := startAgent(t, p, "caller", "u", nil)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Call(ctx, "slow", "wait"); errc <- err }()
	<-bl.started
	cancel()
	err := <-errc
	if !errors.Is(err, rpc.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want ErrCanceled and context.Canceled", err)
	}
}

func TestAgent_DeadlineIsTimeout(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	defer close(bl.release)
	startAgent(t, p, "slow", "u", func(a *Agent) { must(t, a.Export("wait", bl.handler())) })
	c := startAgent(t, p, "caller", "u", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Call(ctx, "slow", "wait")
	if !errors.Is(err, rpc.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrTimeout and DeadlineExceeded", err)
	}
	if rpc.CodeOf(err) != rpc.CodeTimeout {
		t.Errorf("CodeOf = %v", rpc.CodeOf(err))
	}
}

func TestAgent_SlowHandlerDoesNotStopOthers(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	defer close(bl.release)
	startAgent(t, p, "svc", "u", func(a *Agent) {
		must(t, a.Export("wait", bl.handler()))
		weatherSetup(t)(a)
	})
	c := startAgent(t, p, "caller", "u", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 3 {
		go func() { _, _ = c.Call(ctx, "svc", "wait") }()
		<-bl.started
	}
	if n, err := CallAs[int](context.Background(), c, "svc", "sum", 1, 1); err != nil || n != 2 {
		t.Fatalf("fast call behind slow ones: %v, %v", n, err)
	}
}

func TestAgent_FullQueueIsOverloaded(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	defer close(bl.release)
	startAgent(t, p, "svc", "u", func(a *Agent) { must(t, a.Export("wait", bl.handler())) }, WithConcurrency(1, 0))
	c := startAgent(t, p, "caller", "u", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = c.Call(ctx, "svc", "wait") }()
	<-bl.started
	_, err := c.Call(context.Background(), "svc", "wait")
	if !errors.Is(err, rpc.ErrOverloaded) {
		t.Fatalf("got %v, want ErrOverloaded", err)
	}
}

func TestAgent_ReconnectsAndFailsInFlightCalls(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	defer close(bl.release)
	got := make(chan string, 10)
	svc := startAgent(t, p, "svc", "u", func(a *Agent) {
		must(t, a.Export("wait", bl.handler()))
		_, err := a.Subscribe(context.Background(), "news/#", func(ctx context.Context, m *Message) {
			var s string
			_ = m.Decode(&s)
			got <- s
		})
		must(t, err)
	})
	c := startAgent(t, p, "caller", "u", nil)

	errc := make(chan error, 1)
	go func() { _, err := c.Call(context.Background(), "svc", "wait"); errc <- err }()
	<-bl.started
	p.stop()
	if err := <-errc; !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("in-flight call: %v, want ErrUnavailable", err)
	}
	if _, err := c.Call(context.Background(), "svc", "wait"); !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("call while disconnected: %v, want ErrUnavailable", err)
	}
	<-bl.aborted // svc saw its connection end too
	readyC, readyS := c.Ready(), svc.Ready()
	p.start()
	<-readyC
	<-readyS
	// Exports and subscriptions were registered again.
	must(t, svc.Export("late", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "late", nil })))
	if s, err := CallAs[string](context.Background(), c, "svc", "late"); err != nil || s != "late" {
		t.Fatalf("export after reconnect: %q, %v", s, err)
	}
	must(t, c.Publish(context.Background(), "news/today", "back"))
	if s := <-got; s != "back" {
		t.Fatalf("message after reconnect: %q", s)
	}
}

func TestAgent_HeartbeatDetectsSilentPlatform(t *testing.T) {
	p := newFakePlatform()
	a := startAgent(t, p, "a", "u", nil, WithHeartbeat(20*time.Millisecond))
	p.setMute(true)
	errc := make(chan error, 1)
	go func() { _, err := a.Call(context.Background(), "b", "m"); errc <- err }()
	if err := <-errc; !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("call to a silent platform: %v, want ErrUnavailable", err)
	}
	ready := a.Ready()
	p.setMute(false)
	<-ready
	if err := a.Ping(context.Background()); err != nil {
		t.Fatalf("after reconnect: %v", err)
	}
}

func TestAgent_HelloRefusalEndsRun(t *testing.T) {
	p := newFakePlatform()
	p.helloErr["intruder"] = rpc.NewError(rpc.CodePermission, "identity not allowed")
	a := newFakeAgent(t, p, "intruder", "mallory")
	err := a.Run(context.Background())
	if !errors.Is(err, rpc.ErrPermission) {
		t.Fatalf("Run: %v, want ErrPermission", err)
	}
}

func TestAgent_RunTwiceIsAnError(t *testing.T) {
	p := newFakePlatform()
	a := startAgent(t, p, "one", "u", nil)
	if err := a.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
}

func TestAgent_PubSubDeliversInOrderAndReportsRefusals(t *testing.T) {
	p := newFakePlatform()
	p.denyPub["secret/plans"] = true
	got := make(chan *Message, 100)
	sub := startAgent(t, p, "sub", "u", nil)
	pub := startAgent(t, p, "pub", "publisher", nil)
	ctx := context.Background()
	s, err := sub.Subscribe(ctx, "devices/+/temp", func(ctx context.Context, m *Message) { got <- m })
	must(t, err)
	for i := range 20 {
		must(t, pub.Publish(ctx, fmt.Sprintf("devices/d%d/temp", i), i))
	}
	must(t, pub.Publish(ctx, "devices/d1/humidity", -1))
	for i := range 20 {
		m := <-got
		var v int
		must(t, m.Decode(&v))
		if v != i || m.Sender != "pub" || m.UserID != "publisher" {
			t.Fatalf("message %d: %+v (value %d)", i, m, v)
		}
	}
	err = pub.Publish(ctx, "secret/plans", "x")
	if !errors.Is(err, rpc.ErrUnauthorized) {
		t.Fatalf("refused publish: %v", err)
	}
	must(t, s.Unsubscribe(ctx))
	must(t, pub.Publish(ctx, "devices/d1/temp", 99))
	must(t, pub.Ping(ctx)) // the message, if any, came before the pong
	select {
	case m := <-got:
		t.Fatalf("message after Unsubscribe: %+v", m)
	default:
	}
}

func TestAgent_WhoAmIAndPeers(t *testing.T) {
	p := newFakePlatform()
	a := startAgent(t, p, "me", "alice", nil)
	who, err := a.WhoAmI(context.Background())
	if err != nil || who.UserID != "alice" || who.Identity != "me" || who.Generation != 7 {
		t.Fatalf("WhoAmI: %+v, %v", who, err)
	}
	peers, err := a.Peers(context.Background())
	if err != nil || fmt.Sprint(peers) != "[me]" {
		t.Fatalf("Peers: %v, %v", peers, err)
	}
	if _, err := a.Callable(context.Background()); !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Fatalf("unknown query: %v", err)
	}
}

// TestCheckTopic checks that the SDK refuses malformed topics and patterns
// before they reach the platform, as an invalid-arguments error naming
// them (the syntax itself is tested in internal/vip).
func TestCheckTopic(t *testing.T) {
	for _, bad := range []string{"", "a/#/b", "a+/b", "a/b#"} {
		if err := checkTopic(bad, true); !errors.Is(err, rpc.ErrInvalidArgs) {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if err := checkTopic("a/+", false); err == nil {
		t.Error("wildcard accepted in a topic")
	}
}

func TestNew_ReadsServerKeyFromKnownHosts(t *testing.T) {
	kp, err := auth.GenerateKeyPair()
	must(t, err)
	srv, err := auth.GenerateKeyPair()
	must(t, err)
	path := filepath.Join(t.TempDir(), "known_hosts")
	content := "# platforms\n\n127.0.0.1:1 " + kp.Public.Z85() + "\ntcp://10.0.0.1:22916 " + srv.Public.Base64URL() + "\n"
	must(t, os.WriteFile(path, []byte(content), 0o600))
	a, err := New("x", WithKeyPair(kp), WithAddress("10.0.0.1:22916"), WithKnownHosts(path))
	must(t, err)
	if a.cfg.serverKey != srv.Public {
		t.Fatal("wrong key from known hosts")
	}
	if _, err := New("x", WithKeyPair(kp), WithAddress("10.9.9.9:1"), WithKnownHosts(path)); err == nil {
		t.Fatal("no error for an address missing from known hosts")
	}
	if _, err := New("x", WithKeyPair(kp)); err == nil {
		t.Fatal("no error without a server key")
	}
	if _, err := New("", WithKeyPair(kp), WithServerKey(srv.Public)); err == nil {
		t.Fatal("no error for an empty identity")
	}
}

func TestNew_LoadsKeystore(t *testing.T) {
	kp, err := auth.GenerateKeyPair()
	must(t, err)
	srv, err := auth.GenerateKeyPair()
	must(t, err)
	path := filepath.Join(t.TempDir(), "agent.keystore")
	must(t, auth.SaveKeystore(path, kp))
	a, err := New("x", WithKeystore(path), WithServerKey(srv.Public))
	must(t, err)
	if a.cfg.keyPair != kp {
		t.Fatal("wrong key pair from the keystore")
	}
	if _, err := New("x", WithKeystore(filepath.Join(t.TempDir(), "missing")), WithServerKey(srv.Public)); err == nil {
		t.Fatal("no error for a missing keystore")
	}
}

func TestExport_RejectsEmptyNameAndNilHandler(t *testing.T) {
	p := newFakePlatform()
	a := newFakeAgent(t, p, "a", "u")
	if err := a.Export("", rpc.HandlerFunc(func(context.Context, *rpc.Request) (any, error) { return nil, nil })); err == nil {
		t.Error("empty name accepted")
	}
	if err := a.Export("m", nil); err == nil {
		t.Error("nil handler accepted")
	}
}

func TestSubscribe_WhileDisconnectedIsMadeOnConnect(t *testing.T) {
	p := newFakePlatform()
	got := make(chan string, 1)
	a := newFakeAgent(t, p, "a", "u")
	_, err := a.Subscribe(context.Background(), "x/#", func(ctx context.Context, m *Message) { got <- m.Topic })
	must(t, err)
	runAgent(t, a)
	pub := startAgent(t, p, "pub", "u", nil)
	must(t, pub.Publish(context.Background(), "x/y", 1))
	if topic := <-got; topic != "x/y" {
		t.Fatalf("got %q", topic)
	}
}

// BenchmarkCall_SDKOverhead measures what the SDK costs per call, caller
// and callee together: argument encoding, framing, request tracking,
// dispatch to the handler, argument decoding into the handler's type,
// result encoding and decoding. The platform is the in-memory fake (no
// sockets, no CURVE), so nearly all the time is the SDK's.
func BenchmarkCall_SDKOverhead(b *testing.B) {
	p := newFakePlatform()
	p.grants["u"] = []string{"can_read_temp"}
	startAgent(b, p, "weather", "w", weatherSetup(b))
	c := startAgent(b, p, "caller", "u", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := CallAs[float64](ctx, c, "weather", "temperature", "Paris", 2); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCall_Parallel is BenchmarkCall_SDKOverhead with many calls in
// flight.
func BenchmarkCall_Parallel(b *testing.B) {
	p := newFakePlatform()
	p.grants["u"] = []string{"can_read_temp"}
	startAgent(b, p, "weather", "w", weatherSetup(b))
	c := startAgent(b, p, "caller", "u", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := CallAs[float64](ctx, c, "weather", "temperature", "Paris", 2); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestAgent_ReplyFromAnotherPeerIsIgnored(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	defer close(bl.release)
	startAgent(t, p, "svc", "u", func(a *Agent) { must(t, a.Export("wait", bl.handler())) })
	c := startAgent(t, p, "caller", "u", nil)
	mallory := startAgent(t, p, "mallory", "m", nil)

	res := make(chan string, 1)
	go func() {
		s, err := CallAs[string](context.Background(), c, "svc", "wait")
		if err != nil {
			s = err.Error()
		}
		res <- s
	}()
	<-bl.started
	// Mallory answers every msg-id the caller may be waiting on.
	s, err := mallory.current()
	must(t, err)
	forged, _ := rpc.Marshal("forged")
	for i := uint64(1); i <= c.nextID.Load(); i++ {
		m := message{Peer: "caller", ID: c.idPrefix + strconv.FormatUint(i, 36), Subsys: vip.SubRPC,
			Args: [][]byte{frameResult, []byte("wait"), forged}}
		must(t, s.send(context.Background(), &m))
	}
	must(t, mallory.Ping(context.Background())) // the forged replies have been routed
	bl.release <- struct{}{}
	if s := <-res; s != "released" {
		t.Fatalf("got %q, want the callee's answer", s)
	}
}

func TestAgent_CallFailsWhenCalleeLeaves(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	defer close(bl.release)
	svc := newFakeAgent(t, p, "svc", "u", WithShutdownGrace(0))
	must(t, svc.Export("wait", bl.handler()))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	<-svc.Ready()
	c := startAgent(t, p, "caller", "u", nil)

	errc := make(chan error, 1)
	go func() { _, err := c.Call(context.Background(), "svc", "wait"); errc <- err }()
	<-bl.started
	stop()
	must(t, <-done)
	err := <-errc
	if !errors.Is(err, rpc.ErrUnavailable) || !strings.Contains(err.Error(), "disconnected") {
		t.Fatalf("call to a callee that left: %v, want ErrUnavailable", err)
	}
}

func TestAgent_StopLetsRunningHandlersReply(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	svc := newFakeAgent(t, p, "svc", "u", WithShutdownGrace(time.Minute))
	must(t, svc.Export("wait", bl.handler()))
	must(t, svc.Export("fast", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "fast", nil })))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	<-svc.Ready()
	c := startAgent(t, p, "caller", "u", nil)

	res := make(chan string, 1)
	go func() {
		s, err := CallAs[string](context.Background(), c, "svc", "wait")
		if err != nil {
			s = err.Error()
		}
		res <- s
	}()
	<-bl.started
	stop()
	// Draining: new calls are refused at once, the running one may finish.
	for {
		_, err := c.Call(context.Background(), "svc", "fast")
		if errors.Is(err, rpc.ErrUnavailable) {
			break
		}
		must(t, err) // answered before Run saw the end of its context
	}
	close(bl.release)
	if s := <-res; s != "released" {
		t.Fatalf("call running at shutdown: %q, want its reply", s)
	}
	must(t, <-done)
}

func TestSession_ReplyMatchesMsgIDAndSender(t *testing.T) {
	s := &session{pending: map[string]waiter{}}
	wait := func(id, peer string) chan message {
		ch := make(chan message, 1)
		s.pending[id] = waiter{ch: ch, peer: peer, id: id}
		return ch
	}
	refusal := func(id, recipient string) message {
		return message{RawID: b(id), Subsys: vip.SubError, Args: [][]byte{b("105"), b("queue full"), b(recipient), b("RPC")}}
	}
	call := wait("x1", "weather")
	for _, m := range []message{
		{Peer: "mallory", RawID: b("x1"), Subsys: vip.SubRPC}, // another peer
		refusal("x1", "alice"),                                // about a reply we sent to alice
		{Peer: "weather", RawID: b("x2"), Subsys: vip.SubRPC}, // another msg-id
	} {
		if s.reply(m) {
			t.Errorf("accepted %+v for a call to weather", m)
		}
	}
	if !s.reply(refusal("x1", "weather")) || (<-call).Subsys != vip.SubError {
		t.Error("refusal of the call not delivered")
	}
	ctl := wait("x3", "")
	if !s.reply(message{RawID: b("x3"), Subsys: vip.SubPong}) || (<-ctl).Subsys != vip.SubPong {
		t.Error("platform reply not delivered")
	}
}

// TestAgent_HandlerGoroutinesAreReusedAndEndWithTheSession runs eight
// handlers at once, so that eight goroutines run handlers (the reader runs
// one of them, and hands the reading on to another goroutine when it takes
// too long), then calls one at a time: no goroutine is started for them
// (the number waiting does not grow). When the connection ends the waiting
// goroutines end; after the reconnect, calls are served again.
func TestAgent_HandlerGoroutinesAreReusedAndEndWithTheSession(t *testing.T) {
	const n = 8
	p := newFakePlatform()
	arrived := make(chan struct{}, n)
	gate := make(chan struct{})
	svc := startAgent(t, p, "svc", "u", func(a *Agent) {
		must(t, a.Export("together", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
			arrived <- struct{}{}
			<-gate
			return "ok", nil
		})))
		must(t, a.Export("alone", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "ok", nil })))
	})
	c := startAgent(t, p, "caller", "u", nil)
	ctx := context.Background()

	errc := make(chan error, n)
	for range n {
		go func() { _, err := c.Call(ctx, "svc", "together"); errc <- err }()
	}
	for range n {
		<-arrived // n handlers run at once, on n goroutines
	}
	close(gate)
	for range n {
		require.NoError(t, <-errc)
	}
	idle := func(want int64) func() bool { return func() bool { return svc.idleWorkers.Load() == want } }
	// The handler that returned last may have run on the reader, which
	// then went on reading.
	waiting := func() bool { return svc.idleWorkers.Load() >= n-1 }
	require.Eventually(t, waiting, 5*time.Second, time.Millisecond, "%d goroutines wait for calls", n-1)
	// Beyond the n, only a reader that handed the reading on (a loaded
	// machine may pause a handler long enough) may join those waiting.
	takeovers := svc.takeovers.Load()
	for range 20 {
		_, err := c.Call(ctx, "svc", "alone")
		require.NoError(t, err)
		require.LessOrEqual(t, svc.idleWorkers.Load(), n+svc.takeovers.Load()-takeovers, "a call started a goroutine")
	}

	p.stop()
	require.Eventually(t, idle(0), 5*time.Second, time.Millisecond, "the waiting goroutines end with the session")
	disconnected := func(a *Agent) func() bool {
		return func() bool { _, err := a.current(); return err != nil }
	}
	require.Eventually(t, disconnected(c), 5*time.Second, time.Millisecond)
	readyC, readyS := c.Ready(), svc.Ready() // closed by the next welcome
	p.start()
	<-readyC
	<-readyS
	s, err := CallAs[string](ctx, c, "svc", "alone")
	require.NoError(t, err)
	require.Equal(t, "ok", s)
}
