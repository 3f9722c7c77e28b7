// Package agent is the Go SDK for writing capbus agents.
//
// An agent connects to a capbus platform over ZeroMQ secured with CURVE,
// claims an identity, exports methods that other agents may call, calls
// theirs, and publishes and subscribes to topics. The platform
// authenticates every agent by its CURVE key and authorizes every call,
// publish and subscribe against auth.json before it is forwarded: a handler
// only ever sees calls its caller was allowed to make, and
// rpc.CallerFrom(ctx) tells it who the caller is, as the platform
// authenticated it.
//
// # Walkthrough
//
// Create an agent from the environment a local platform lays out
// (CAPBUS_HOME's known_hosts and keys/<identity>.json, CAPBUS_ADDRESS):
//
//	a, err := agent.FromEnv("weather")
//
// or with its key pair and the platform's address and key:
//
//	kp, _ := keys.Load("weather.keystore")
//	a, err := agent.New("weather",
//		agent.WithKeyPair(kp),
//		agent.WithPlatform("tcp://127.0.0.1:22916", serverKey))
//
// Export typed Go functions; the options say what a caller must hold, as
// VOLTTRON's @RPC.allow does:
//
//	type Place struct{ City string }
//	temperature := func(ctx context.Context, p Place) (float64, error) {
//		caller, _ := rpc.CallerFrom(ctx)
//		log.Printf("%s asks for %s", caller.UserID, p.City)
//		return 21.5, nil
//	}
//	a.Export("temperature", rpc.Func(temperature), rpc.Allow("can_read_temp"))
//
// Run connects and serves until the context ends, reconnecting when the
// platform goes away; WaitConnected waits for the welcome, or fails with
// the reason (the key refused, a wrong server key, nothing listening):
//
//	go a.Run(ctx)
//	if err := a.WaitConnected(ctx); err != nil { ... }
//
// WithOnConnect and WithOnDisconnect follow each connection;
// WithWaitForConnection makes calls wait for one instead of failing.
//
// Call other agents, untyped (Agent.Call returns the encoded result) or
// typed (CallAs decodes it). Positional arguments follow the method name; a
// trailing rpc.Kwargs passes keyword arguments:
//
//	t, err := agent.CallAs[float64](ctx, a, "weather", "temperature", "Paris")
//	t, err = agent.CallAs[float64](ctx, a, "weather", "temperature", rpc.Kwargs{"City": "Paris"})
//
// Failures are values of type *rpc.Error, matched with errors.Is and read
// with errors.As:
//
//	if errors.Is(err, rpc.ErrUnauthorized) {
//		var e *rpc.Error
//		errors.As(err, &e)
//		log.Printf("missing %v", e.Missing())
//	}
//
// Publish and subscribe with per-segment patterns ("+" one segment, "#" the
// rest):
//
//	a.Subscribe(ctx, "devices/+/temperature", func(ctx context.Context, m *agent.Message) {
//		var t float64
//		m.Decode(&t)
//	})
//	a.Publish(ctx, "devices/boiler/temperature", 61.5)
//
// Take configuration from the platform's configuration store, where the
// operator keeps named JSON, CSV or raw entries per agent (capbus config
// store weather config weather.json): the agent has its entries when it is
// connected, before it serves a call, and a handler is called for every
// create, update and delete (see Config):
//
//	type Settings struct{ Units string }
//	a.Config().OnChange("config", func(ctx context.Context, ev agent.ConfigEvent) {
//		var s Settings
//		ev.Decode(&s)
//	})
//	s, err := agent.ConfigAs[Settings](a, "config")
//
// An agent holding edit_config_store (or read_config_store) changes (or
// reads) other agents' entries with ConfigStore.
//
// Ask the platform who the agent is and what it may call with WhoAmI,
// Permissions and Callable, and what another agent serves (each method's
// parameters and requirement, and whether this agent may call it) with
// Describe. When an export requires a role that nobody in auth.json
// holds, the agent logs a warning: every call of it would be refused.
//
// # Concurrency
//
// Handlers run concurrently, up to a bound (WithConcurrency); calls beyond
// it wait in a bounded queue, then are refused with rpc.ErrOverloaded. A
// handler's panic is recovered: the caller gets rpc.ErrInternal, the agent
// logs the stack and keeps serving. Messages of one subscription are
// handled in order, one at a time.
//
// Each handler runs on a worker goroutine of its own: the goroutine that
// receives never runs one, so a handler that blocks never delays another
// call. Workers are started on demand, up to the bound, and kept while the
// agent is connected. A handler exported with rpc.Inline() runs instead on
// the receiving goroutine, saving the hand-off: for tiny handlers that
// never block (an echo, a read of memory), never for one that waits.
//
// A handler's context is its call's own: it carries the caller
// (rpc.CallerFrom), its deadline is the caller's, and it ends when that
// passes, when the caller cancels or disconnects, or when the agent loses
// its connection or stops.
//
// # Connection loss
//
// When the connection to the platform is lost, calls in flight fail at once
// with rpc.ErrUnavailable, as do calls made while disconnected; Run
// reconnects with backoff and registers the identity, exports and
// subscriptions again. Heartbeats (WithHeartbeat) detect a platform that
// vanished without closing the connection. A call whose callee disconnects
// before replying also fails at once with rpc.ErrUnavailable.
//
// # Shutdown
//
// When Run's context ends, the agent refuses new calls, lets the handlers
// of calls already received finish and reply (for up to WithShutdownGrace),
// then disconnects, cancels the contexts of handlers still running and
// waits for them.
package agent
