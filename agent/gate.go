package agent

import "sync/atomic"

// gate bounds the handlers of incoming calls: at most limit run at once,
// and at most limit+queue are admitted (running or waiting for a slot).
// Its fast paths are atomic additions; only a call that must wait for a
// slot touches a channel. (It replaced two buffered channels used as
// semaphores, whose four operations per call were, with their lock
// contention, about 5% of a busy callee's CPU.)
type gate struct {
	limit, queue int64
	admitted     atomic.Int64 // calls admitted and not yet finished
	// running counts calls holding a slot or waiting for one; the excess
	// over limit is the number waiting.
	running atomic.Int64
	// wake hands a slot to a waiting call: a finishing call that sees
	// others waiting sends one token. At most queue calls wait, so the
	// buffer never fills.
	wake chan struct{}
}

func newGate(limit, queue int) *gate {
	return &gate{limit: int64(limit), queue: int64(queue), wake: make(chan struct{}, queue+1)}
}

// admit counts a new call in, unless limit+queue calls are in already.
func (g *gate) admit() bool {
	if g.admitted.Add(1) > g.limit+g.queue {
		g.admitted.Add(-1)
		return false
	}
	return true
}

// leave counts an admitted call out.
func (g *gate) leave() { g.admitted.Add(-1) }

// acquire waits for a slot. Waiting is not cancellable: a slot comes free
// whenever a running handler returns, and the caller gives it back at once
// if its session ended meanwhile.
func (g *gate) acquire() {
	if g.running.Add(1) <= g.limit {
		return
	}
	<-g.wake
}

// tryAcquire takes a slot if one is free without waiting, and reports
// whether it did.
func (g *gate) tryAcquire() bool {
	for {
		n := g.running.Load()
		if n >= g.limit {
			return false
		}
		if g.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives a slot back, or hands it to a call waiting for one.
func (g *gate) release() {
	if g.running.Add(-1) >= g.limit {
		g.wake <- struct{}{}
	}
}
