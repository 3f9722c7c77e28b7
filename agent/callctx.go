package agent

import (
	"context"
	"sync"
	"time"
)

// callCtx is the context of one incoming call: it carries the caller (in
// its parent, a value context of the session's) and the call's deadline,
// and ends at the deadline, when the caller cancels (Run's cancel frame),
// or when the session ends.
//
// Its timer and its link to the session are set up only when a handler
// asks for Done: most handlers never wait on their context, and a runtime
// timer per call (context.WithTimeout) costs its creation, its removal and
// the scheduler's checks of the timer heap on every call. Err looks at the
// deadline and the session itself, so it is exact without them.
type callCtx struct {
	parent   context.Context // rpc.WithCaller(session's ctx, caller)
	deadline time.Time       // zero: none

	mu    sync.Mutex
	done  chan struct{} // made by the first Done
	err   error
	timer *time.Timer // the deadline, armed by the first Done
	stop  func() bool // unlinks from parent, set by the first Done
}

// init makes c the context of a call under parent with the given deadline
// (zero: none). A callCtx lives in its call (no allocation of its own);
// end cancels it.
func (c *callCtx) init(parent context.Context, deadline time.Time) {
	c.parent, c.deadline = parent, deadline
}

// end cancels the context: the call was answered, or cancelled.
func (c *callCtx) end() { c.cancel(context.Canceled) }

// Deadline implements context.Context.
func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// Value implements context.Context.
func (c *callCtx) Value(key any) any { return c.parent.Value(key) }

// Err implements context.Context.
func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errLocked()
}

// errLocked returns why the context ended, noting it; c.mu is held.
func (c *callCtx) errLocked() error {
	if c.err == nil {
		switch {
		case c.parent.Err() != nil:
			c.err = c.parent.Err()
		case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
			c.err = context.DeadlineExceeded
		}
	}
	return c.err
}

// Done implements context.Context. The first call arms the deadline's
// timer and the link to the session.
func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	if c.errLocked() != nil {
		close(c.done)
		return c.done
	}
	if !c.deadline.IsZero() {
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
	}
	c.stop = context.AfterFunc(c.parent, func() { c.cancel(c.parent.Err()) })
	return c.done
}

// cancel ends the context with err, unless it has ended already.
func (c *callCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.errLocked() == nil {
		c.err = err
	}
	if c.done != nil {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
}

// String names the context, as the context package's own do.
func (c *callCtx) String() string { return "agent.callCtx" }
