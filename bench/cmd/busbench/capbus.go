package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

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
	idlePrefix    = "idle."
	authFileName  = "auth.json"
	platformKeyFN = "platform.json"
)

// writeCapbusHome generates the key pairs and the auth.json of the capbus
// contender into dir.
func writeCapbusHome(dir string) error {
	pairs := map[string]keys.Pair{}
	for _, name := range []string{"platform", calleeID, callerID, "idle"} {
		kp, err := keys.Generate()
		if err != nil {
			return err
		}
		if err := keys.Save(filepath.Join(dir, name+".json"), kp); err != nil {
			return err
		}
		pairs[name] = kp
	}
	policy := fmt.Sprintf(`// busbench: the callee's echo requires %[1]s; only the caller holds it.
{
  "allow": [
    {"user_id": "callee", "identity": %[2]q, "credentials": %[3]q},
    {"user_id": "caller", "identity": %[4]q, "credentials": %[5]q, "capabilities": [%[1]q]},
    {"user_id": "idle", "identities": ["/idle\\..*/"], "credentials": %[6]q}
  ]
}
`, capEcho, calleeID, pairs[calleeID].Public.Z85(), callerID, pairs[callerID].Public.Z85(), pairs["idle"].Public.Z85())
	return os.WriteFile(filepath.Join(dir, authFileName), []byte(policy), 0o600)
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
		platform.WithAddress("tcp://127.0.0.1:0"),
		platform.WithKeystore(filepath.Join(cfg.dir, platformKeyFN)),
		platform.WithAuthFile(filepath.Join(cfg.dir, authFileName)),
		platform.WithLogger(discard),
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
type capbusAgents struct{ stops []func() }

func (c *capbusAgents) readyLine() string { return fmt.Sprintf("agents=%d", len(c.stops)) }

func (c *capbusAgents) close() {
	var wg sync.WaitGroup
	for _, stop := range c.stops {
		wg.Go(stop)
	}
	wg.Wait()
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
	return &capbusAgents{stops: []func(){stop}}, nil
}

// startIdle connects cfg.idle agents that do nothing but stay connected
// (heartbeats at the agent's default interval). They connect 32 at a time.
func startIdle(ctx context.Context, cfg *roleConfig) (server, error) {
	if cfg.stack != "capbus" {
		return nil, fmt.Errorf("idle agents are a capbus measurement, not %s", cfg.stack)
	}
	c := &capbusAgents{stops: make([]func(), cfg.idle)}
	sem := make(chan struct{}, 32)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	var extra []agent.Option
	switch {
	case cfg.heartbeat < 0:
		extra = append(extra, agent.WithHeartbeat(0))
	case cfg.heartbeat > 0:
		extra = append(extra, agent.WithHeartbeat(cfg.heartbeat))
	}
	for i := range cfg.idle {
		a, err := newCapbusAgent(cfg, fmt.Sprintf("%s%d", idlePrefix, i), "idle", extra...)
		if err != nil {
			return nil, err
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			stop, err := runAgent(ctx, a)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			c.stops[i] = stop
		})
	}
	wg.Wait()
	if firstErr != nil {
		for _, stop := range c.stops {
			if stop != nil {
				stop()
			}
		}
		return nil, firstErr
	}
	return c, nil
}

// capbusClient is the caller agent.
type capbusClient struct {
	a    *agent.Agent
	stop func()
}

func dialCapbus(ctx context.Context, cfg *roleConfig) (client, error) {
	a, err := newCapbusAgent(cfg, callerID, callerID)
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
