package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/vip"
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
	require.NoError(t, err)
	b := &bus{t: t, server: server, addr: "tcp://127.0.0.1:0", keys: map[string]keys.Pair{}, opts: opts}
	doc := map[string]any{}
	for k, v := range extra {
		doc[k] = v
	}
	var allow []user
	for _, u := range users {
		kp, err := keys.Generate()
		require.NoError(t, err)
		b.keys[u.ID] = kp
		u.Credentials = kp.Public.Base64URL() // VOLTTRON's form
		allow = append(allow, u)
	}
	doc["allow"] = allow
	data, err := json.MarshalIndent(doc, "", "  ")
	require.NoError(t, err)
	b.authFile = filepath.Join(t.TempDir(), "auth.json")
	require.NoError(t, os.WriteFile(b.authFile, data, 0o600))
	b.start()
	t.Cleanup(func() { b.stop() })
	return b
}

// start runs a platform with the bus's key pair, address and auth.json.
func (b *bus) start() {
	b.t.Helper()
	p, err := platform.New(append([]platform.Option{platform.WithAddress(b.addr), platform.WithKeyPair(b.server),
		platform.WithAuthFile(b.authFile), platform.WithLogger(slog.New(slog.DiscardHandler))}, b.opts...)...)
	require.NoError(b.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	if p.Addr() == "" {
		cancel()
		err = <-done
	}
	require.NotEmpty(b.t, p.Addr(), "platform did not start: %v", err)
	b.addr = p.Addr()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		assert.NoError(b.t, <-done, "platform Run")
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
		assert.NoError(b.t, <-done, "agent %s Run", identity)
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
	require.True(b.t, ok, "no user %q", u)
	opts = append([]Option{
		WithKeyPair(kp),
		WithPlatform(b.addr, b.server.Public),
		WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)
	a, err := New(identity, opts...)
	require.NoError(b.t, err)
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
		require.NoError(t, a.Export("temperature", rpc.Func(func(ctx context.Context, c city) (float64, error) {
			if c.Name == "Atlantis" {
				return 0, fmt.Errorf("no station in %s", c.Name)
			}
			return 21.5, nil
		}), rpc.Allow("can_read_temp")))
		require.NoError(t, a.Export("caller", rpc.Func(func(ctx context.Context, _ struct{}) (rpc.Principal, error) {
			c, _ := rpc.CallerFrom(ctx)
			return c, nil
		})))
		require.NoError(t, a.Export("panic", rpc.Func(func(ctx context.Context, _ struct{}) (int, error) {
			var m map[string]int
			m["boom"]++ // a nil map write: a runtime panic
			return 0, nil
		})))
		require.NoError(t, a.Export("admin", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "ok", nil }),
			rpc.AllowRoles("admin")))
		require.NoError(t, a.Export("wait", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
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
	require.NoError(t, err, "temperature")
	require.Equal(t, 21.5, temp, "temperature")
	temp, err = CallAs[float64](ctx, alice, "weather", "temperature", rpc.Kwargs{"name": "Paris"})
	require.NoError(t, err, "temperature by keyword")
	require.Equal(t, 21.5, temp, "temperature by keyword")
	c, err := CallAs[rpc.Principal](ctx, alice, "weather", "caller")
	require.NoError(t, err, "caller")
	require.Equal(t, rpc.Principal{UserID: "alice", Identity: "alice"}, c, "caller")
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
		require.NoError(t, err, "call %d behind blocked handlers", i)
		require.Equal(t, 21.5, temp, "call %d behind blocked handlers", i)
	}
	errs := make(chan error, 64)
	for range 64 {
		go func() {
			_, err := CallAs[float64](fast, alice, "weather", "temperature", "Paris")
			errs <- err
		}()
	}
	for range 64 {
		require.NoError(t, <-errs, "concurrent call behind blocked handlers")
	}
	close(release)
	for range 3 {
		require.NoError(t, <-blocked, "blocked call")
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
		require.ErrorIs(t, err, rpc.ErrUnauthorized)
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "[can_read_temp]", fmt.Sprint(e.Required()), "required; data %v", e.Data())
		assert.Equal(t, "[can_read_temp]", fmt.Sprint(e.Missing()), "missing; data %v", e.Data())
		t.Logf("%v", err)
	})
	t.Run("unauthorized role", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "admin")
		var e *rpc.Error
		require.ErrorIs(t, err, rpc.ErrUnauthorized)
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "[role:admin]", fmt.Sprint(e.Missing()), "missing")
	})
	t.Run("not found", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "humidity")
		require.ErrorIs(t, err, rpc.ErrNotFound)
	})
	t.Run("no route", func(t *testing.T) {
		_, err := alice.Call(ctx, "nobody", "temperature")
		require.ErrorIs(t, err, rpc.ErrNoRoute)
	})
	t.Run("invalid args", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "temperature", 1, 2)
		require.ErrorIs(t, err, rpc.ErrInvalidArgs)
	})
	t.Run("application", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "temperature", "Atlantis")
		var e *rpc.Error
		require.ErrorIs(t, err, rpc.ErrApplication)
		require.ErrorAs(t, err, &e)
		require.Equal(t, "no station in Atlantis", e.Message(), "the handler's message")
	})
	t.Run("internal", func(t *testing.T) {
		_, err := alice.Call(ctx, "weather", "panic")
		require.ErrorIs(t, err, rpc.ErrInternal)
		// The agent still serves.
		_, err = CallAs[float64](ctx, alice, "weather", "temperature", "Paris")
		require.NoError(t, err, "after a panic")
	})
	t.Run("timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := alice.Call(ctx, "weather", "wait")
		require.ErrorIs(t, err, rpc.ErrTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("publish refused", func(t *testing.T) {
		err := bob.Publish(ctx, "secret/plans", "x")
		require.ErrorIs(t, err, rpc.ErrUnauthorized)
	})
	t.Run("subscribe refused", func(t *testing.T) {
		_, err := bob.Subscribe(ctx, "secret/#", func(context.Context, *Message) {})
		require.ErrorIs(t, err, rpc.ErrUnauthorized)
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
	require.ErrorIs(t, err, rpc.ErrCanceled)
	require.ErrorIs(t, err, context.Canceled)
	require.LessOrEqual(t, time.Since(t0), 100*time.Millisecond, "time the cancelled call took to return")
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
	require.NoError(t, <-done)
	err := <-errc
	require.ErrorIs(t, err, rpc.ErrUnavailable, "call to a callee that stopped")
	t.Log(err)
}

func TestPlatform_RefusedKeyAndIdentity(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("weatherman", "weather", nil)
	ctx := context.Background()

	t.Run("unknown key", func(t *testing.T) {
		stranger, _ := keys.Generate()
		a := b.newAgent("bob", "bob", WithKeyPair(stranger))
		require.ErrorIs(t, a.Run(ctx), curve.ErrRefused, "Run")
	})
	t.Run("identity outside the entry", func(t *testing.T) {
		a := b.newAgent("bob", "weather2")
		require.ErrorIs(t, a.Run(ctx), rpc.ErrPermission, "Run")
	})
	t.Run("identity held by another key", func(t *testing.T) {
		a := b.newAgent("carol", "weather")
		require.ErrorIs(t, a.Run(ctx), rpc.ErrIdentityInUse, "Run")
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
		require.NoError(t, err)
	})
	dave := b.agent("dave", "dave", nil)
	ctx := context.Background()
	s, err := CallAs[string](ctx, dave, "weather", "set_config", "platform.driver", 1)
	require.NoError(t, err, "allowed by position")
	require.Equal(t, "platform.driver=1", s, "allowed by position")
	s, err = CallAs[string](ctx, dave, "weather", "set_config", rpc.Kwargs{"identity": "platform.x", "value": 2})
	require.NoError(t, err, "allowed by keyword")
	require.Equal(t, "platform.x=2", s, "allowed by keyword")
	_, err = dave.Call(ctx, "weather", "set_config", "other", 3)
	require.ErrorIs(t, err, rpc.ErrUnauthorized, "restricted parameter")
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
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &doc))
	var allow []any
	for _, e := range doc["allow"].([]any) {
		if e.(map[string]any)["user_id"] != "bob" {
			allow = append(allow, e)
		}
	}
	doc["allow"] = allow
	data, _ = json.Marshal(doc)
	require.NoError(t, atomicfile.Write(b.authFile, data, 0o600))
	err = <-errc
	require.ErrorIs(t, err, rpc.ErrUnavailable, "call in flight when the key was revoked")
	require.ErrorContains(t, err, "revoked", "call in flight when the key was revoked")
	t.Log(err)
}

func TestPlatform_ExportAfterConnectIsPushed(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	w := b.agent("weatherman", "weather", nil)
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()
	_, err := alice.Call(ctx, "weather", "late")
	require.ErrorIs(t, err, rpc.ErrNotFound, "before Export")
	err = w.Export("late", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "here", nil }))
	require.NoError(t, err)
	s, err := CallAs[string](ctx, alice, "weather", "late")
	require.NoError(t, err, "after Export")
	require.Equal(t, "here", s, "after Export")
}

func TestPlatform_PubSub(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	alice := b.agent("alice", "alice", nil)
	bob := b.agent("bob", "bob", nil)
	ctx := context.Background()
	got := make(chan *Message, 10)
	_, err := alice.Subscribe(ctx, "devices/+/temperature", func(ctx context.Context, m *Message) { got <- m })
	require.NoError(t, err)
	require.NoError(t, bob.Publish(ctx, "devices/boiler/temperature", 61.5))
	m := <-got
	var v float64
	require.NoError(t, m.Decode(&v), "message %+v", m)
	require.Equal(t, 61.5, v, "message %+v", m)
	require.Equal(t, "bob", m.Sender, "message %+v", m)
	require.Equal(t, "bob", m.UserID, "message %+v", m)
	require.Equal(t, "devices/boiler/temperature", m.Topic, "message %+v", m)
}

func TestPlatform_Introspection(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("weatherman", "weather", weather(t, nil, nil))
	alice := b.agent("alice", "alice", nil)
	bob := b.agent("bob", "bob", nil)
	ctx := context.Background()

	who, err := alice.WhoAmI(ctx)
	require.NoError(t, err, "WhoAmI")
	require.Equal(t, "alice", who.UserID, "WhoAmI: %+v", who)
	require.Equal(t, "alice", who.Identity, "WhoAmI: %+v", who)
	require.Equal(t, b.keys["alice"].Public, who.Key, "WhoAmI: %+v", who)
	perms, err := alice.Permissions(ctx)
	require.NoError(t, err, "Permissions")
	require.NotEqual(t, "[]", fmt.Sprint(perms.Capabilities), "Permissions: %+v", perms)
	aliceMay, err := alice.Callable(ctx)
	require.NoError(t, err)
	bobMay, err := bob.Callable(ctx)
	require.NoError(t, err)
	has := func(ms []Method, peer, method string) bool {
		for _, m := range ms {
			if m.Peer == peer && m.Method == method {
				return true
			}
		}
		return false
	}
	require.True(t, has(aliceMay, "weather", "temperature"), "Callable: alice %v", aliceMay)
	require.False(t, has(bobMay, "weather", "temperature"), "Callable: bob %v", bobMay)
	require.True(t, has(bobMay, "weather", "caller"), "Callable: bob %v", bobMay)
	peers, err := alice.Peers(ctx)
	require.NoError(t, err, "Peers")
	require.Len(t, peers, 3, "Peers")
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
		require.NoError(t, err)
	})
	ctx := context.Background()

	errc := make(chan error, 1)
	go func() { _, err := alice.Call(ctx, "weather", "wait"); errc <- err }()
	<-started
	t0 := time.Now()
	b.stop()
	err := <-errc
	require.ErrorIs(t, err, rpc.ErrUnavailable, "call in flight at shutdown")
	t.Log(err)
	require.LessOrEqual(t, time.Since(t0), 5*time.Second, "time the in-flight call took to fail")
	_, err = alice.Call(ctx, "weather", "caller")
	require.ErrorIs(t, err, rpc.ErrUnavailable, "call while the platform is down")
	// Both agents saw the connection end: alice's call failed, and the
	// handler serving it on weather had its context cancelled.
	<-aborted
	readyA, readyW := alice.Ready(), w.Ready()

	b.start() // same key pair, same port
	<-readyA
	<-readyW
	temp, err := CallAs[float64](ctx, alice, "weather", "temperature", "Paris")
	require.NoError(t, err, "after restart")
	require.Equal(t, 21.5, temp, "after restart")
	require.NoError(t, w.Publish(ctx, "news/weather", "sunny"))
	require.Equal(t, "sunny", <-got, "subscription after restart")
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
		// Not require.NoError in timed loops: it calls b.Helper every time.
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
		require.ErrorIs(t, err, rpc.ErrTimeout, "call %d", i)
		require.ErrorIs(t, err, context.DeadlineExceeded, "call %d", i)
	}
	for i := range 20 {
		temp, err := CallAs[float64](context.Background(), alice, "weather", "temperature", city{Name: "Paris"})
		require.NoError(t, err, "fast call %d after timeouts", i)
		require.Equal(t, 21.5, temp, "fast call %d after timeouts", i)
	}
}

func TestAgent_AsksThePlatformForNoPeerlistNoticesUnlessToldOtherwise(t *testing.T) {
	metas := make(chan map[string]string, 2)
	hook := platform.AdmissionHookFunc(func(_ context.Context, a *platform.Admission) error {
		metas <- a.Meta
		return nil
	})
	b := newBus(t, []user{{ID: "alice"}}, nil, platform.WithAdmissionHook(hook))
	b.agent("alice", "quiet", nil, WithMeta("version", "1.2"))
	assert.Equal(t, map[string]string{"version": "1.2", vip.MetaPeerlist: vip.PeerlistOff}, <-metas)
	b.agent("alice", "listener", nil, WithMeta(vip.MetaPeerlist, "on"))
	assert.Equal(t, map[string]string{vip.MetaPeerlist: "on"}, <-metas)
}

// warnings is a slog handler that keeps the warnings' messages and attributes.
type warnings struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recs = append(w.recs, r.Clone())
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }
func (w *warnings) all() []slog.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.recs)
}

func TestSubscription_AHandlerThatFallsBehindDropsCountedWithOneWarning(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	logged := &warnings{}
	alice := b.agent("alice", "alice", nil, WithLogger(slog.New(logged)))
	bob := b.agent("bob", "bob", nil)
	ctx := context.Background()

	const over = 50
	started, release := make(chan struct{}), make(chan struct{})
	handled := make(chan int, maxMailbox+over+1)
	sub, err := alice.Subscribe(ctx, "devices/#", func(ctx context.Context, m *Message) {
		var n int
		assert.NoError(t, m.Decode(&n))
		if n == 0 {
			close(started)
			<-release
		}
		handled <- n
	})
	require.NoError(t, err)
	// Message 0 holds the handler; 1..1024 fill the mailbox; 50 more are
	// dropped.
	require.NoError(t, bob.Publish(ctx, "devices/boiler", 0))
	<-started
	for n := 1; n <= maxMailbox+over; n++ {
		require.NoError(t, bob.Publish(ctx, "devices/boiler", n))
	}
	require.Eventually(t, func() bool { return sub.Dropped() == over }, 10*time.Second, time.Millisecond,
		"dropped %d, want %d", sub.Dropped(), over)

	recs := logged.all()
	require.Len(t, recs, 1, "one warning for the drops of a burst")
	attrs := map[string]any{}
	recs[0].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.Any(); return true })
	assert.Equal(t, map[string]any{"pattern": "devices/#", "topic": "devices/boiler", "dropped": uint64(1),
		"dropped_in_all": uint64(1), "mailbox": int64(maxMailbox)}, attrs)

	// The handler then gets every message that was not dropped, in order.
	close(release)
	deadline := time.After(10 * time.Second)
	for want := 0; want <= maxMailbox; want++ {
		select {
		case n := <-handled:
			require.Equal(t, want, n)
		case <-deadline:
			t.Fatalf("handled %d messages of %d", want, maxMailbox+1)
		}
	}
	assert.Equal(t, uint64(over), sub.Dropped())
}
