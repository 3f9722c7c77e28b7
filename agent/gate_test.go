package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/capbus/capbus/rpc"
)

// TestGate_NeverRunsMoreThanTheLimit has many goroutines take and give
// back slots at once and checks that no more than the limit hold one, that
// everyone admitted eventually runs, and that admission stops at
// limit+queue.
func TestGate_NeverRunsMoreThanTheLimit(t *testing.T) {
	const limit, queue, workers = 3, 40, 40
	g := newGate(limit, queue)
	var holding, most atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if !g.admit() {
					t.Error("refused below limit+queue")
					return
				}
				g.acquire()
				n := holding.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				holding.Add(-1)
				g.release()
				g.leave()
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > limit || m < 1 {
		t.Fatalf("at most %d held a slot at once, limit %d", m, limit)
	}
	for range limit + queue {
		if !g.admit() {
			t.Fatal("refused below limit+queue when idle")
		}
	}
	if g.admit() {
		t.Fatal("admitted beyond limit+queue")
	}
}

// TestAgent_QueuedCallRunsWhenASlotFrees: with one slot and a queue of
// one, of two calls made while a first one runs, one waits and the other
// is refused as overloaded; the waiting one runs once the first returns.
func TestAgent_QueuedCallRunsWhenASlotFrees(t *testing.T) {
	p := newFakePlatform()
	bl := newBlocker()
	startAgent(t, p, "svc", "u", func(a *Agent) { must(t, a.Export("wait", bl.handler())) }, WithConcurrency(1, 1))
	c := startAgent(t, p, "caller", "u", nil)
	errs := make(chan error, 3)
	call := func() { _, err := c.Call(context.Background(), "svc", "wait"); errs <- err }
	go call()
	<-bl.started
	go call()
	go call()
	// Nothing can return before the first call is released but the call
	// that found the queue full.
	if err := <-errs; !errors.Is(err, rpc.ErrOverloaded) {
		t.Fatalf("first answer: %v, want ErrOverloaded", err)
	}
	select {
	case <-bl.started:
		t.Fatal("the queued call ran while the only slot was taken")
	default:
	}
	close(bl.release)
	<-bl.started // the queued call runs now
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("call: %v", err)
		}
	}
}
