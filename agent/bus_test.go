package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

// bus is a real platform, in process, over TCP and CURVE, with one key pair
// per user and an auth.json in a temporary directory.
type bus struct {
	t        testing.TB
	server   keys.Pair
	addr     string
	authFile string
	keys     map[string]keys.Pair
	opts     []platform.Option
	stop     func()
}

// user is one allow entry of the test's auth.json.
type user struct {
	ID           string   `json:"user_id"`
	Identity     string   `json:"identity,omitempty"`
	Capabilities any      `json:"capabilities,omitempty"` // any of VOLTTRON's forms
	Roles        []string `json:"roles,omitempty"`
	Credentials  string   `json:"credentials"`
}

// newBus writes auth.json for users (plus extra top-level keys) and starts
// a platform on a free port, with opts. The platform stops at the end of
// the test.
func newBus(t testing.TB, users []user, extra map[string]any, opts ...platform.Option) *bus {
	t.Helper()
	server, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	b := &bus{t: t, server: server, addr: "tcp://127.0.0.1:0", keys: map[string]keys.Pair{}, opts: opts}
	doc := map[string]any{}
	for k, v := range extra {
		doc[k] = v
	}
	var allow []user
	for _, u := range users {
		kp, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		b.keys[u.ID] = kp
		u.Credentials = kp.Public.Base64URL() // VOLTTRON's form
		allow = append(allow, u)
	}
	doc["allow"] = allow
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b.authFile = filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(b.authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() { b.stop() })
	return b
}

// start runs a platform with the bus's key pair, address and auth.json.
func (b *bus) start() {
	b.t.Helper()
	p, err := platform.New(append([]platform.Option{platform.WithAddress(b.addr), platform.WithKeyPair(b.server),
		platform.WithAuthFile(b.authFile), platform.WithLogger(slog.New(slog.DiscardHandler))}, b.opts...)...)
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	if p.Addr() == "" {
		cancel()
		b.t.Fatalf("platform did not start: %v", <-done)
	}
	b.addr = p.Addr()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			b.t.Errorf("platform Run: %v", err)
		}
	}
}

// agent creates an agent of user u claiming identity, with setup applied
// before Run; it waits until the agent is welcomed.
func (b *bus) agent(u, identity string, setup func(*Agent), opts ...Option) *Agent {
	b.t.Helper()
	a := b.newAgent(u, identity, opts...)
	if setup != nil {
		setup(a)
	}
	b.run(a)
	return a
}

// run runs a until the end of the test and waits until it is welcomed.
func (b *bus) run(a *Agent) {
	b.t.Helper()
	identity := a.Identity()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.t.Errorf("agent %s Run: %v", identity, err)
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		done <- nil
		b.t.Fatalf("agent %s: Run returned before welcome: %v", identity, err)
	}
}

func (b *bus) newAgent(u, identity string, opts ...Option) *Agent {
	b.t.Helper()
	kp, ok := b.keys[u]
	if !ok {
		b.t.Fatalf("no user %q", u)
	}
	opts = append([]Option{
		WithKeyPair(kp),
		WithPlatform(b.addr, b.server.Public),
		WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)
	a, err := New(identity, opts...)
	if err != nil {
		b.t.Fatal(err)
	}
	return a
}

type city struct {
	Name string `msgpack:"name"`
}

// weather exports the methods the tests call. The handler of "wait" signals
// started when it starts, and returns when release is closed or its context
// ends (then it signals aborted, if not nil).
func weather(t testing.TB, release <-chan struct{}, started chan<- struct{}) func(*Agent) {
	return weatherAborted(t, release, started, nil)
}

func weatherAborted(t testing.TB, release <-chan struct{}, started, aborted chan<- struct{}) func(*Agent) {
	return func(a *Agent) {
		check := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		check(a.Export("temperature", rpc.Func(func(ctx context.Context, c city) (float64, error) {
			if c.Name == "Atlantis" {
				return 0, fmt.Errorf("no station in %s", c.Name)
			}
			return 21.5, nil
		}), rpc.Allow("can_read_temp")))
		check(a.Export("caller", rpc.Func(func(ctx context.Context, _ struct{}) (rpc.Principal, error) {
			c, _ := rpc.CallerFrom(ctx)
			return c, nil
		})))
		check(a.Export("panic", rpc.Func(func(ctx context.Context, _ struct{}) (int, error) {
			var m map[string]int
			m["boom"]++ // a nil map write: a runtime panic
			return 0, nil
		})))
		check(a.Export("admin", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "ok", nil }),
			rpc.AllowRoles("admin")))
		check(a.Export("wait", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
			if started != nil {
				started <- struct{}{}
			}
			select {
			case <-release:
				return "released", nil
			case <-ctx.Done():
				if aborted != nil {
					aborted <- struct{}{}
				}
				return "", ctx.Err()
			}
		})))
	}
}

func standardUsers() []user {
	return []user{
		{ID: "weatherman", Identity: "weather"},
		{ID: "alice", Identity: "alice", Capabilities: []string{"can_read_temp", "can_read_secret", "can_publish_secret"}},
		{ID: "bob", Identity: "bob"},
		{ID: "carol", Identity: "/.*/"},
	}
}

func standardExtra() map[string]any {
	return map[string]any{
		"topics": map[string]any{
			"secret/#": map[string]any{"publish": []string{"can_publish_secret"}, "subscribe": []string{"can_read_secret"}},
		},
	}
}

func TestPlatform_CallsSucceedAndCarryTheCaller(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("weatherman", "weather", weather(t, nil, nil))
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()

	temp, err := CallAs[float64](ctx, alice, "weather", "temperature", "Paris")
	if err != nil || temp != 21.5 {
		t.Fatalf("temperature: %v, %v", temp, err)
	}
	temp, err = CallAs[float64](ctx, alice, "weather", "temperature", rpc.Kwargs{"name": "Paris"})
	if err != nil || temp != 21.5 {
		t.Fatalf("temperature by keyword: %v, %v", temp, err)
	}
	c, err := CallAs[rpc.Principal](ctx, alice, "weather", "caller")
	if err != nil || c != (rpc.Principal{UserID: "alice", Identity: "alice"}) {
		t.Fatalf("caller: %+v, %v", c, err)
	}
}

// TestPlatform_BlockedHandlersDoNotHoldOtherCalls: over real CURVE, with
// handlers blocked on the agent (the first on the goroutine that received
// it, which hands the reading on), calls made meanwhile, one at a time and
// many at once, get their replies; the blocked calls get theirs when
// released.
func TestPlatform_BlockedHandlersDoNotHoldOtherCalls(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	b.agent("weatherman", "weather", weather(t, release, started))
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()

	blocked := make(chan error, 3)
	for range 3 {
		go func() {
			s, err := CallAs[string](ctx, alice, "weather", "wait")
			if err == nil && s != "released" {
				err = fmt.Errorf("wait returned %q", s)
			}
			blocked <- err
		}()
		select {
		case <-started:
		case <-time.After(10 * time.Second): // a reader held by the previous one
			t.Fatal("a call did not reach its handler while another handler was blocked")
		}
	}
	// Bounded, so that a reader held by a blocked handler fails the test
	// rather than hangs it.
	fast, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := range 10 {
		temp, err := CallAs[float64](fast, alice, "weather", "temperature", "Paris")
		if err != nil || temp != 21.5 {
			t.Fatalf("call %d behind blocked handlers: %v, %v", i, temp, err)
		}
	}
	errs := make(chan error, 64)
	for range 64 {
		go func() {
			_, err := CallAs[float64](fast, alice, "weather", "temperature", "Paris")
			errs <- err
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent call behind blocked handlers: %v", err)
		}
	}
	close(release)
	for range 3 {
		if err := <-blocked; err != nil {
			t.Fatalf("blocked call: %v", err)
		}
	}
}

func TestPlatform_EveryErrorKindMatches(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	release := make(chan struct{})
	defer close(release)
	b.agent("weatherman", "weather", weather(t, release, nil))
	alice := b.agent("alice", "alice", nil)
	bob := b.agent("bob", "bob", nil)
	ctx := context.Background()

	t.Run("unauthorized", func(t *testing.T) {
		_, err := bob.Call(ctx, "weather", "temperature", "Paris")
		var e *rpc.Error
		if !errors.Is(err, rpc.ErrUnauthorized) || !errors.As(err, &e) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
		if fmt.Sprint(e.Required()) != "[can_read_temp]" || fmt.Sprint(e.Missing()) != "[can_read_temp]" {
			t.Errorf("required %v missing %v; data %v", e.Required(), e.Missing(), e.Data())
		}
		t.Logf("%v", err)
	})
	t.Run("unauthorized role", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "admin")
		var e *rpc.Error
		if !errors.Is(err, rpc.ErrUnauthorized) || !errors.As(err, &e) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
		if fmt.Sprint(e.Missing()) != "[role:admin]" {
			t.Errorf("missing %v", e.Missing())
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "humidity")
		if !errors.Is(err, rpc.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
	t.Run("no route", func(t *testing.T) {
		_, err := alice.Call(ctx, "nobody", "temperature")
		if !errors.Is(err, rpc.ErrNoRoute) {
			t.Fatalf("got %v, want ErrNoRoute", err)
		}
	})
	t.Run("invalid args", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "temperature", 1, 2)
		if !errors.Is(err, rpc.ErrInvalidArgs) {
			t.Fatalf("got %v, want ErrInvalidArgs", err)
		}
	})
	t.Run("application", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "temperature", "Atlantis")
		var e *rpc.Error
		if !errors.Is(err, rpc.ErrApplication) || !errors.As(err, &e) || e.Message() != "no station in Atlantis" {
			t.Fatalf("got %v, want ErrApplication with the handler's message", err)
		}
	})
	t.Run("internal", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "panic")
		if !errors.Is(err, rpc.ErrInternal) {
			t.Fatalf("got %v, want ErrInternal", err)
		}
		// The agent still serves.
		if _, err := CallAs[float64](ctx, alice, "weather", "temperature", "Paris"); err != nil {
			t.Fatalf("after a panic: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := alice.Call(ctx, "weather", "wait")
		if !errors.Is(err, rpc.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want ErrTimeout", err)
		}
	})
	t.Run("publish refused", func(t *testing.T) {
		err := bob.Publish(ctx, "secret/plans", "x")
		if !errors.Is(err, rpc.ErrUnauthorized) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
	})
	t.Run("subscribe refused", func(t *testing.T) {
		_, err := bob.Subscribe(ctx, "secret/#", func(context.Context, *Message) {})
		if !errors.Is(err, rpc.ErrUnauthorized) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
	})
}

func TestPlatform_CanceledCallReturnsAtOnce(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	b.agent("weatherman", "weather", weather(t, release, started))
	alice := b.agent("alice", "alice", nil)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := alice.Call(ctx, "weather", "wait"); errc <- err }()
	<-started
	t0 := time.Now()
	cancel()
	err := <-errc
	if !errors.Is(err, rpc.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want ErrCanceled", err)
	}
	if d := time.Since(t0); d > 100*time.Millisecond {
		t.Fatalf("cancelled call returned after %v", d)
	}
}

func TestPlatform_CallFailsPromptlyWhenCalleeStops(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	w := b.newAgent("weatherman", "weather", WithShutdownGrace(0))
	weather(t, release, started)(w)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	<-w.Ready()
	alice := b.agent("alice", "alice", nil)

	errc := make(chan error, 1)
	go func() { _, err := alice.Call(context.Background(), "weather", "wait"); errc <- err }()
	<-started
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("call to a callee that stopped: %v, want ErrUnavailable", err)
	}
	t.Log(err)
}

func TestPlatform_RefusedKeyAndIdentity(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("weatherman", "weather", nil)
	ctx := context.Background()

	t.Run("unknown key", func(t *testing.T) {
		stranger, _ := keys.Generate()
		a := b.newAgent("bob", "bob", WithKeyPair(stranger))
		if err := a.Run(ctx); !errors.Is(err, curve.ErrRefused) {
			t.Fatalf("Run: %v, want curve.ErrRefused", err)
		}
	})
	t.Run("identity outside the entry", func(t *testing.T) {
		a := b.newAgent("bob", "weather2")
		if err := a.Run(ctx); !errors.Is(err, rpc.ErrPermission) {
			t.Fatalf("Run: %v, want ErrPermission", err)
		}
	})
	t.Run("identity held by another key", func(t *testing.T) {
		a := b.newAgent("carol", "weather")
		if err := a.Run(ctx); !errors.Is(err, rpc.ErrIdentityInUse) {
			t.Fatalf("Run: %v, want ErrIdentityInUse", err)
		}
	})
}

func TestPlatform_ParameterRestrictionSeesDeclaredParams(t *testing.T) {
	users := append(standardUsers(), user{ID: "dave", Identity: "dave",
		Capabilities: map[string]any{"edit_config": map[string]string{"identity": "/platform\\..*/"}}})
	b := newBus(t, users, nil)
	type setConfig struct {
		Identity string `msgpack:"identity"`
		Value    int    `msgpack:"value"`
	}
	b.agent("weatherman", "weather", func(a *Agent) {
		err := a.Export("set_config", rpc.Func(func(ctx context.Context, c setConfig) (string, error) {
			return fmt.Sprintf("%s=%d", c.Identity, c.Value), nil
		}), rpc.Allow("edit_config"))
		if err != nil {
			t.Fatal(err)
		}
	})
	dave := b.agent("dave", "dave", nil)
	ctx := context.Background()
	if s, err := CallAs[string](ctx, dave, "weather", "set_config", "platform.driver", 1); err != nil || s != "platform.driver=1" {
		t.Fatalf("allowed by position: %q, %v", s, err)
	}
	if s, err := CallAs[string](ctx, dave, "weather", "set_config", rpc.Kwargs{"identity": "platform.x", "value": 2}); err != nil || s != "platform.x=2" {
		t.Fatalf("allowed by keyword: %q, %v", s, err)
	}
	_, err := dave.Call(ctx, "weather", "set_config", "other", 3)
	if !errors.Is(err, rpc.ErrUnauthorized) {
		t.Fatalf("restricted parameter: %v, want ErrUnauthorized", err)
	}
	t.Log(err)
}

func TestPlatform_RevokedKeyFailsCallsInFlight(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	b.agent("weatherman", "weather", weather(t, release, started))
	bob := b.agent("bob", "bob", nil)

	errc := make(chan error, 1)
	go func() { _, err := bob.Call(context.Background(), "weather", "wait"); errc <- err }()
	<-started
	// Remove bob from auth.json: the platform reloads it and closes bob's
	// connection; bob's call in flight fails, naming the revocation.
	var doc map[string]any
	data, err := os.ReadFile(b.authFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var allow []any
	for _, e := range doc["allow"].([]any) {
		if e.(map[string]any)["user_id"] != "bob" {
			allow = append(allow, e)
		}
	}
	doc["allow"] = allow
	data, _ = json.Marshal(doc)
	if err := atomicfile.Write(b.authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	err = <-errc
	if !errors.Is(err, rpc.ErrUnavailable) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("call in flight when the key was revoked: %v", err)
	}
	t.Log(err)
}

func TestPlatform_ExportAfterConnectIsPushed(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	w := b.agent("weatherman", "weather", nil)
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()
	if _, err := alice.Call(ctx, "weather", "late"); !errors.Is(err, rpc.ErrNotFound) {
		t.Fatalf("before Export: %v", err)
	}
	err := w.Export("late", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "here", nil }))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := CallAs[string](ctx, alice, "weather", "late"); err != nil || s != "here" {
		t.Fatalf("after Export: %q, %v", s, err)
	}
}

func TestPlatform_PubSub(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	alice := b.agent("alice", "alice", nil)
	bob := b.agent("bob", "bob", nil)
	ctx := context.Background()
	got := make(chan *Message, 10)
	if _, err := alice.Subscribe(ctx, "devices/+/temperature", func(ctx context.Context, m *Message) { got <- m }); err != nil {
		t.Fatal(err)
	}
	if err := bob.Publish(ctx, "devices/boiler/temperature", 61.5); err != nil {
		t.Fatal(err)
	}
	m := <-got
	var v float64
	if err := m.Decode(&v); err != nil || v != 61.5 || m.Sender != "bob" || m.UserID != "bob" || m.Topic != "devices/boiler/temperature" {
		t.Fatalf("message %+v (value %v, %v)", m, v, err)
	}
}

func TestPlatform_Introspection(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("weatherman", "weather", weather(t, nil, nil))
	alice := b.agent("alice", "alice", nil)
	bob := b.agent("bob", "bob", nil)
	ctx := context.Background()

	who, err := alice.WhoAmI(ctx)
	if err != nil || who.UserID != "alice" || who.Identity != "alice" || who.Key != b.keys["alice"].Public {
		t.Fatalf("WhoAmI: %+v, %v", who, err)
	}
	perms, err := alice.Permissions(ctx)
	if err != nil || fmt.Sprint(perms.Capabilities) == "[]" {
		t.Fatalf("Permissions: %+v, %v", perms, err)
	}
	aliceMay, err := alice.Callable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bobMay, err := bob.Callable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	has := func(ms []Method, peer, method string) bool {
		for _, m := range ms {
			if m.Peer == peer && m.Method == method {
				return true
			}
		}
		return false
	}
	if !has(aliceMay, "weather", "temperature") || has(bobMay, "weather", "temperature") || !has(bobMay, "weather", "caller") {
		t.Fatalf("Callable: alice %v, bob %v", aliceMay, bobMay)
	}
	peers, err := alice.Peers(ctx)
	if err != nil || len(peers) != 3 {
		t.Fatalf("Peers: %v, %v", peers, err)
	}
}

func TestPlatform_RestartReconnectsAgents(t *testing.T) {
	// Registered first, so it runs after the agents and the platform have
	// been stopped by the cleanups registered below.
	t.Cleanup(func() {
		goleak.VerifyNone(t, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
	})
	b := newBus(t, standardUsers(), standardExtra())
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	aborted := make(chan struct{}, 1)
	got := make(chan string, 10)
	w := b.agent("weatherman", "weather", weatherAborted(t, release, started, aborted))
	alice := b.agent("alice", "alice", func(a *Agent) {
		_, err := a.Subscribe(context.Background(), "news/#", func(ctx context.Context, m *Message) {
			var s string
			_ = m.Decode(&s)
			got <- s
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()

	errc := make(chan error, 1)
	go func() { _, err := alice.Call(ctx, "weather", "wait"); errc <- err }()
	<-started
	t0 := time.Now()
	b.stop()
	if err := <-errc; !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("call in flight at shutdown: %v, want ErrUnavailable", err)
	} else {
		t.Log(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("in-flight call failed only after %v", d)
	}
	if _, err := alice.Call(ctx, "weather", "caller"); !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("call while the platform is down: %v, want ErrUnavailable", err)
	}
	// Both agents saw the connection end: alice's call failed, and the
	// handler serving it on weather had its context cancelled.
	<-aborted
	readyA, readyW := alice.Ready(), w.Ready()

	b.start() // same key pair, same port
	<-readyA
	<-readyW
	temp, err := CallAs[float64](ctx, alice, "weather", "temperature", "Paris")
	if err != nil || temp != 21.5 {
		t.Fatalf("after restart: %v, %v", temp, err)
	}
	if err := w.Publish(ctx, "news/weather", "sunny"); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "sunny" {
		t.Fatalf("subscription after restart: %q", s)
	}
}

// BenchmarkPlatform_Call is one call end to end: caller agent -> platform
// -> callee agent and back, over TCP and CURVE on loopback, one call
// outstanding. Compare with BenchmarkCall_SDKOverhead for the SDK's share.
func BenchmarkPlatform_Call(b *testing.B) {
	bs := newBus(b, standardUsers(), standardExtra())
	bs.agent("weatherman", "weather", weather(b, nil, nil))
	alice := bs.agent("alice", "alice", nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CallAs[float64](ctx, alice, "weather", "temperature", "Paris"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlatform_CallParallel is BenchmarkPlatform_Call with many calls in
// flight (16 per core).
func BenchmarkPlatform_CallParallel(b *testing.B) {
	bs := newBus(b, standardUsers(), standardExtra())
	bs.agent("weatherman", "weather", weather(b, nil, nil))
	alice := bs.agent("alice", "alice", nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := CallAs[float64](ctx, alice, "weather", "temperature", "Paris"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestPlatform_CallWithoutDeadlineTimesOutAfterTheCallTimeout checks the
// call timeout of a context without a deadline, twice (the second timer
// comes from the agent's pool), and that a pooled timer never fires early
// on a later call.
func TestPlatform_CallWithoutDeadlineTimesOutAfterTheCallTimeout(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 2)
	b.agent("weatherman", "weather", weather(t, release, started))
	alice := b.agent("alice", "alice", nil, WithCallTimeout(150*time.Millisecond))

	for i := range 2 {
		_, err := alice.Call(context.Background(), "weather", "wait")
		if !errors.Is(err, rpc.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: got %v, want ErrTimeout", i, err)
		}
	}
	for i := range 20 {
		temp, err := CallAs[float64](context.Background(), alice, "weather", "temperature", city{Name: "Paris"})
		if err != nil || temp != 21.5 {
			t.Fatalf("fast call %d after timeouts: %v, %v", i, temp, err)
		}
	}
}
