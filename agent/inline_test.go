package agent

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/rpc"
)

// TestAgent_CallsRunOnTheReader: calls made one at a time run on the
// goroutine that receives them; no handler goroutine is started for them
// (one would wait for the next call afterwards).
func TestAgent_CallsRunOnTheReader(t *testing.T) {
	p := newFakePlatform()
	svc := startAgent(t, p, "svc", "u", weatherSetup(t))
	c := startAgent(t, p, "caller", "u", nil)
	for i := range 20 {
		n, err := CallAs[int](context.Background(), c, "svc", "sum", i, 1)
		require.NoError(t, err)
		require.Equal(t, i+1, n)
	}
	// A reader whose handler ran long enough (a loaded machine may pause
	// the process) hands the reading on and waits for calls itself.
	require.LessOrEqual(t, svc.idleWorkers.Load(), svc.takeovers.Load(), "a handler goroutine was started")
}

// TestAgent_HandlerOnTheReaderCanCallOtherAgents: a handler that calls
// another agent, and waits for the reply only a reader can deliver, gets
// it: under its own context another goroutine takes over receiving at
// once; under another context (here context.Background) the watch has one
// take over within 4 ms.
func TestAgent_HandlerOnTheReaderCanCallOtherAgents(t *testing.T) {
	p := newFakePlatform()
	startAgent(t, p, "math", "u", weatherSetup(t))
	startAgent(t, p, "relay", "u", func(a *Agent) {
		must(t, a.Export("double-sum", rpc.Func(func(ctx context.Context, xs []int) (int, error) {
			n, err := CallAs[int](ctx, a, "math", "sum", xs[0], xs[1])
			return 2 * n, err
		})))
		must(t, a.Export("double-sum-detached", rpc.Func(func(_ context.Context, xs []int) (int, error) {
			n, err := CallAs[int](context.Background(), a, "math", "sum", xs[0], xs[1])
			return 2 * n, err
		})))
	})
	c := startAgent(t, p, "caller", "u", nil)
	for _, method := range []string{"double-sum", "double-sum-detached"} {
		for i := range 10 {
			n, err := CallAs[int](context.Background(), c, "relay", method, i, 2)
			require.NoError(t, err, method)
			require.Equal(t, 2*(i+2), n, method)
		}
	}
}

// TestAgent_ReconnectsWhileAHandlerIgnoresItsContext: a handler that
// blocks without looking at its context does not hold the connection: when
// the platform goes away the agent reconnects and serves other calls
// while the handler still runs; Run returns once it has.
func TestAgent_ReconnectsWhileAHandlerIgnoresItsContext(t *testing.T) {
	p := newFakePlatform()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	svc := newFakeAgent(t, p, "svc", "u")
	must(t, svc.Export("stuck", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
		started <- struct{}{}
		<-release // ignores ctx
		return "late", nil
	})))
	weatherSetup(t)(svc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	<-svc.Ready()
	c := startAgent(t, p, "caller", "u", nil)

	go func() { _, _ = c.Call(context.Background(), "svc", "stuck") }()
	<-started
	readyS := func() <-chan struct{} { // the current ready channel, closed by the next welcome
		svc.mu.RLock()
		defer svc.mu.RUnlock()
		return svc.ready
	}
	p.stop()
	require.Eventually(t, func() bool { _, err := svc.current(); return err != nil }, 5*time.Second, time.Millisecond)
	next := readyS()
	p.start()
	<-next
	<-c.Ready()
	n, err := CallAs[int](context.Background(), c, "svc", "sum", 3, 4)
	require.NoError(t, err)
	require.Equal(t, 7, n)

	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a handler still ran", err)
	default:
	}
	close(release)
	require.NoError(t, <-done)
}
