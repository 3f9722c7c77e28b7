package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

// demo is an embedded platform for the examples: users weatherman (agent
// "weather"), alice (holds can_read_temp), bob (holds nothing) and operator
// (holds edit_config_store), and a configuration store.
type demo struct {
	addr      string
	serverKey keys.Key
	keys      map[string]keys.Pair
	dir       string
	stop      func()
}

func startDemo() *demo {
	dir, err := os.MkdirTemp("", "capbus-example")
	if err != nil {
		log.Fatal(err)
	}
	d := &demo{dir: dir, keys: map[string]keys.Pair{}}
	var allow []map[string]any
	for _, u := range []struct {
		id   string
		caps []string
	}{{"weatherman", nil}, {"alice", []string{"can_read_temp"}}, {"bob", nil}, {"operator", []string{"edit_config_store"}}} {
		kp, _ := keys.Generate()
		d.keys[u.id] = kp
		allow = append(allow, map[string]any{"credentials": kp.Public.Z85(), "user_id": u.id, "capabilities": u.caps})
	}
	data, _ := json.Marshal(map[string]any{"allow": allow})
	authFile := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(authFile, data, 0o600); err != nil {
		log.Fatal(err)
	}
	server, _ := keys.Generate()
	p, err := platform.New(platform.WithAddress("tcp://127.0.0.1:0"), platform.WithKeyPair(server),
		platform.WithAuthFile(authFile), platform.WithConfigStore(filepath.Join(dir, "config.db")),
		platform.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	d.addr, d.serverKey = p.Addr(), p.ServerKey()
	d.stop = func() { cancel(); <-done; os.RemoveAll(dir) }
	return d
}

// newAgent is agent.New with the demo's platform and user's key.
func (d *demo) newAgent(user, identity string) *agent.Agent {
	a, err := agent.New(identity,
		agent.WithKeyPair(d.keys[user]),
		agent.WithPlatform(d.addr, d.serverKey),
		agent.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	return a
}

// run runs a until stop is called, and waits for its welcome.
func run(a *agent.Agent) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		log.Fatal(err)
	}
	return func() { cancel(); <-done }
}

// weatherAgent starts the "weather" agent of the examples: temperature
// requires the capability can_read_temp.
func (d *demo) weatherAgent() (stop func()) {
	w := d.newAgent("weatherman", "weather")
	type Place struct {
		City string `msgpack:"city"`
	}
	w.Export("temperature", rpc.Func(func(ctx context.Context, p Place) (float64, error) {
		return 21.5, nil
	}), rpc.Allow("can_read_temp"))
	return run(w)
}

func ExampleNew() {
	d := startDemo()
	defer d.stop()

	kp := d.keys["alice"] // or agent.WithKeystore(path)
	a, err := agent.New("alice.ui",
		agent.WithKeyPair(kp),
		agent.WithPlatform(d.addr, d.serverKey), // or agent.WithKnownHosts(path)
		agent.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()

	me, err := a.WhoAmI(ctx)
	fmt.Println(me.UserID, me.Identity, err)

	cancel()
	fmt.Println("Run:", <-done)
	// Output:
	// alice alice.ui <nil>
	// Run: <nil>
}

func ExampleAgent_Export() {
	d := startDemo()
	defer d.stop()

	weather := d.newAgent("weatherman", "weather")
	type Place struct {
		City string `msgpack:"city"`
	}
	temperature := func(ctx context.Context, p Place) (float64, error) {
		caller, _ := rpc.CallerFrom(ctx)
		fmt.Printf("%s asks about %s\n", caller.UserID, p.City)
		return 21.5, nil
	}
	// Like VOLTTRON's @RPC.allow('can_read_temp'): the platform refuses
	// callers without the capability before the call reaches the handler.
	err := weather.Export("temperature", rpc.Func(temperature), rpc.Allow("can_read_temp"))
	if err != nil {
		log.Fatal(err)
	}
	defer run(weather)()

	alice := d.newAgent("alice", "alice")
	defer run(alice)()
	bob := d.newAgent("bob", "bob")
	defer run(bob)()

	ctx := context.Background()
	t, err := agent.CallAs[float64](ctx, alice, "weather", "temperature", "Paris")
	fmt.Println("alice:", t, err)

	_, err = bob.Call(ctx, "weather", "temperature", "Paris")
	var e *rpc.Error
	if errors.Is(err, rpc.ErrUnauthorized) && errors.As(err, &e) {
		fmt.Println("bob: unauthorized, missing", e.Missing())
	}
	// Output:
	// alice asks about Paris
	// alice: 21.5 <nil>
	// bob: unauthorized, missing [can_read_temp]
}

func ExampleAgent_Call() {
	d := startDemo()
	defer d.stop()
	defer d.weatherAgent()()
	alice := d.newAgent("alice", "alice")
	defer run(alice)()

	ctx := context.Background()
	// Arguments by position, or by name with rpc.Kwargs.
	res, err := alice.Call(ctx, "weather", "temperature", rpc.Kwargs{"city": "Paris"})
	if err != nil {
		log.Fatal(err)
	}
	var t float64
	if err := res.Decode(&t); err != nil {
		log.Fatal(err)
	}
	fmt.Println(t)

	_, err = alice.Call(ctx, "weather", "humidity")
	fmt.Println(errors.Is(err, rpc.ErrNotFound))
	_, err = alice.Call(ctx, "sensor", "read")
	fmt.Println(errors.Is(err, rpc.ErrNoRoute))
	// Output:
	// 21.5
	// true
	// true
}

func ExampleCallAs() {
	d := startDemo()
	defer d.stop()
	defer d.weatherAgent()()
	alice := d.newAgent("alice", "alice")
	defer run(alice)()

	t, err := agent.CallAs[float64](context.Background(), alice, "weather", "temperature", "Paris")
	fmt.Println(t, err)
	// Output: 21.5 <nil>
}

func ExampleAgent_Subscribe() {
	d := startDemo()
	defer d.stop()
	alice := d.newAgent("alice", "alice")
	defer run(alice)()
	bob := d.newAgent("bob", "bob")
	defer run(bob)()

	ctx := context.Background()
	got := make(chan string, 1)
	// "+" matches one segment, a final "#" any number.
	_, err := alice.Subscribe(ctx, "devices/+/temperature", func(ctx context.Context, m *agent.Message) {
		var v float64
		_ = m.Decode(&v)
		got <- fmt.Sprintf("%s from %s (user %s): %v", m.Topic, m.Sender, m.UserID, v)
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := bob.Publish(ctx, "devices/boiler/temperature", 61.5); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output: devices/boiler/temperature from bob (user bob): 61.5
}

func ExampleAgent_Publish() {
	d := startDemo()
	defer d.stop()
	bob := d.newAgent("bob", "bob")
	defer run(bob)()

	err := bob.Publish(context.Background(), "devices/boiler/status", map[string]any{"on": true})
	fmt.Println(err)
	// Output: <nil>
}

// An agent asks the platform what it may call: bob lacks can_read_temp.
func ExampleAgent_Callable() {
	d := startDemo()
	defer d.stop()
	defer d.weatherAgent()()
	alice := d.newAgent("alice", "alice")
	defer run(alice)()
	bob := d.newAgent("bob", "bob")
	defer run(bob)()

	ctx := context.Background()
	for _, a := range []*agent.Agent{alice, bob} {
		who, _ := a.WhoAmI(ctx)
		methods, _ := a.Callable(ctx)
		fmt.Println(who.UserID, "may call", methods)
	}
	// Output:
	// alice may call [weather.temperature]
	// bob may call []
}
