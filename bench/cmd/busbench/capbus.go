package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

// The capbus contender: a platform with CURVE and auth.json, a callee agent
// exporting "echo" that requires can_echo, and a caller agent holding it.
const (
	capEcho       = "can_echo"
	calleeID      = "callee"
	callerID      = "caller"
	idleGroup     = "idle"
	subGroup      = "sub"   // pubsub: the subscribers' agents
	pubGroup      = "pub"   // pubsub: the publisher
	fleetGroup    = "fleet" // restart: the agents that come back
	dialGroup     = "dial"  // connection cells: the dialers' one key
	authFileName  = "auth.json"
	platformKeyFN = "platform.json"
)

// writeCapbusHome generates the key pairs and the auth.json of the capbus
// contender into dir: the platform's, callee's and caller's keystores, and
// an auth.json entry for each of them and for agents 0..n-1 of each group
// of the keyring (each its own user: user id and identity "<group>.<i>").
// The dialers of the connection cells share one key ("dial", 0) and may
// claim any identity "dial.*".
func writeCapbusHome(dir string, ring keyring, groups map[string]int) error {
	pairs := map[string]keys.Pair{}
	for _, name := range []string{"platform", calleeID, callerID} {
		kp, err := keys.Generate()
		if err != nil {
			return err
		}
		if err := keys.Save(filepath.Join(dir, name+".json"), kp); err != nil {
			return err
		}
		pairs[name] = kp
	}
	type entry struct {
		UserID       string   `json:"user_id"`
		Identity     string   `json:"identity,omitempty"`
		Identities   []string `json:"identities,omitempty"`
		Credentials  string   `json:"credentials"`
		Capabilities []string `json:"capabilities,omitempty"`
	}
	allow := []entry{
		{UserID: calleeID, Identity: calleeID, Credentials: pairs[calleeID].Public.Z85()},
		// Several callers (one per number in flight) may run at once:
		// "caller", "caller.1", ...
		{UserID: callerID, Identities: []string{callerID, "/" + callerID + `\..*/`}, Credentials: pairs[callerID].Public.Z85(), Capabilities: []string{capEcho}},
		{UserID: dialGroup, Identities: []string{"/" + dialGroup + `\..*/`}, Credentials: ring.pair(dialGroup, 0).Public.Z85()},
	}
	names := slices.Sorted(maps.Keys(groups))
	for _, g := range names {
		for i := range groups[g] {
			id := identity(g, i)
			allow = append(allow, entry{UserID: id, Identity: id, Credentials: ring.pair(g, i).Public.Z85()})
		}
	}
	// The fleet's agents call themselves (see startFleet): echo requires
	// can_echo, so the entries of the fleet hold it.
	for i := range allow {
		if strings.HasPrefix(allow[i].UserID, fleetGroup+".") {
			allow[i].Capabilities = []string{capEcho}
		}
	}
	b, err := json.MarshalIndent(map[string]any{"allow": allow}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, authFileName), b, 0o600)
}

var discard = slog.New(slog.DiscardHandler)

// capbusBroker is the platform process.
type capbusBroker struct {
	p      *platform.Platform
	cancel context.CancelFunc
	done   chan error
}

func startCapbusBroker(ctx context.Context, cfg *roleConfig) (server, error) {
	p, err := platform.New(
		platform.WithAddress(cfg.listen),
		platform.WithKeystore(filepath.Join(cfg.dir, platformKeyFN)),
		platform.WithAuthFile(filepath.Join(cfg.dir, authFileName)),
		platform.WithLogger(discard),
		platform.WithLimits(platform.Limits{MaxPendingHandshakes: cfg.maxPending}), // zero fields: the defaults
	)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &capbusBroker{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-b.done:
		cancel()
		return nil, err
	}
	if p.Addr() == "" {
		cancel()
		return nil, fmt.Errorf("platform did not listen: %v", <-b.done)
	}
	return b, nil
}

func (b *capbusBroker) readyLine() string {
	return fmt.Sprintf("addr=%s key=%s", b.p.Addr(), b.p.ServerKey().Z85())
}

func (b *capbusBroker) close() { b.cancel(); <-b.done }

// newCapbusAgent creates an agent of the contender with the key pair in
// dir/<keyName>.json.
func newCapbusAgent(cfg *roleConfig, identity, keyName string, extra ...agent.Option) (*agent.Agent, error) {
	kp, err := keys.Load(filepath.Join(cfg.dir, keyName+".json"))
	if err != nil {
		return nil, err
	}
	return newCapbusAgentKP(cfg, identity, kp, extra...)
}

// newCapbusAgentKP creates an agent of the contender with key pair kp.
func newCapbusAgentKP(cfg *roleConfig, identity string, kp keys.Pair, extra ...agent.Option) (*agent.Agent, error) {
	sk, err := keys.Parse(cfg.serverKey)
	if err != nil {
		return nil, err
	}
	opts := []agent.Option{agent.WithKeyPair(kp), agent.WithPlatform(cfg.addr, sk),
		agent.WithLogger(discard), agent.WithCallTimeout(callTimeout)}
	return agent.New(identity, append(opts, extra...)...)
}

// runAgent runs a until ctx ends and waits for its welcome.
func runAgent(ctx context.Context, a *agent.Agent) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
		return func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("agent stopped before its welcome")
		}
		return nil, fmt.Errorf("agent %s: %w", a.Identity(), err)
	}
}

// capbusAgents is the callee or the idle agents: agents serving until close.
type capbusAgents struct {
	agents []*agent.Agent
	stops  []func()
}

func (c *capbusAgents) readyLine() string { return fmt.Sprintf("agents=%d", len(c.stops)) }

func (c *capbusAgents) close() { stopAll(c.stops) }

// command answers "ping" with "pinged" once every agent's ping to the
// platform came back: what the platform had queued to each agent before
// the ping (peerlist broadcasts of later agents' arrivals) has then been
// delivered, so that a measurement of the platform's memory does not count
// it.
func (c *capbusAgents) command(line string, out *lineWriter) (bool, error) {
	if line != "ping" {
		return false, nil
	}
	sem := make(chan struct{}, 64)
	errs := make(chan error, len(c.agents))
	for _, a := range c.agents {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			errs <- a.Ping(ctx)
		}()
	}
	var first error
	for range c.agents {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return true, fmt.Errorf("ping: %w", first)
	}
	out.printf("pinged")
	return true, nil
}

func startCapbusCallee(ctx context.Context, cfg *roleConfig) (server, error) {
	a, err := newCapbusAgent(cfg, calleeID, calleeID)
	if err != nil {
		return nil, err
	}
	echo := func(_ context.Context, b []byte) ([]byte, error) { return b, nil }
	if err := a.Export("echo", rpc.Func(echo), rpc.Allow(capEcho), rpc.Inline()); err != nil {
		return nil, err
	}
	stop, err := runAgent(ctx, a)
	if err != nil {
		return nil, err
	}
	return &capbusAgents{agents: []*agent.Agent{a}, stops: []func(){stop}}, nil
}

// startIdle connects cfg.idle agents, idle.<first> on, that do nothing but
// stay connected (heartbeats at the agent's default interval), each with
// its own key. They connect 32 at a time.
func startIdle(ctx context.Context, cfg *roleConfig) (server, error) {
	if cfg.stack != "capbus" {
		return nil, fmt.Errorf("idle agents are a capbus measurement, not %s", cfg.stack)
	}
	var extra []agent.Option
	switch {
	case cfg.heartbeat < 0:
		extra = append(extra, agent.WithHeartbeat(0))
	case cfg.heartbeat > 0:
		extra = append(extra, agent.WithHeartbeat(cfg.heartbeat))
	}
	if cfg.connectTO > 0 {
		extra = append(extra, agent.WithConnectTimeout(cfg.connectTO))
	}
	agents, stops, err := startGroup(ctx, cfg, idleGroup, cfg.first, cfg.idle, extra...)
	if err != nil {
		return nil, err
	}
	return &capbusAgents{agents: agents, stops: stops}, nil
}

// capbusClient is the caller agent.
type capbusClient struct {
	a    *agent.Agent
	stop func()
}

func dialCapbus(ctx context.Context, cfg *roleConfig) (client, error) {
	id := callerID
	if cfg.callerN > 0 {
		id = fmt.Sprintf("%s.%d", callerID, cfg.callerN)
	}
	a, err := newCapbusAgent(cfg, id, callerID)
	if err != nil {
		return nil, err
	}
	stop, err := runAgent(ctx, a)
	if err != nil {
		return nil, err
	}
	c := &capbusClient{a: a, stop: stop}
	// Check once that the echo comes back intact and that the policy lets
	// the caller through.
	p := make([]byte, payloadSize)
	p[7] = 42
	got, err := agent.CallAs[[]byte](ctx, a, calleeID, "echo", p)
	if err != nil {
		stop()
		return nil, fmt.Errorf("first call: %w", err)
	}
	if !bytes.Equal(got, p) {
		stop()
		return nil, errors.New("first call: echo differs from the request")
	}
	return c, nil
}

func (c *capbusClient) call(ctx context.Context, _ int, payload []byte) error {
	_, err := c.a.Call(ctx, calleeID, "echo", payload)
	return err
}

func (c *capbusClient) close() { c.stop() }
