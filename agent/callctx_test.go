package agent

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/rpc"
)

// newCallCtx returns a call context and its cancel function, as a call
// holds them.
func newCallCtx(parent context.Context, deadline time.Time) (*callCtx, context.CancelFunc) {
	c := &callCtx{}
	c.init(parent, deadline)
	return c, c.end
}

func TestCallCtx_EndsAtItsDeadlineWhetherOrNotDoneWasAsked(t *testing.T) {
	parent := rpc.WithCaller(context.Background(), rpc.Principal{UserID: "alice", Identity: "alice"})
	c, cancel := newCallCtx(parent, time.Now().Add(50*time.Millisecond))
	defer cancel()
	d, ok := c.Deadline()
	require.True(t, ok)
	assert.WithinDuration(t, time.Now().Add(50*time.Millisecond), d, 50*time.Millisecond)
	p, ok := rpc.CallerFrom(c)
	require.True(t, ok)
	assert.Equal(t, "alice", p.UserID, "the caller travels in the context")
	require.NoError(t, c.Err())
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed at the deadline")
	}
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)

	// Without Done, Err still sees the deadline.
	c2, cancel2 := newCallCtx(parent, time.Now().Add(-time.Millisecond))
	defer cancel2()
	assert.ErrorIs(t, c2.Err(), context.DeadlineExceeded)
	select {
	case <-c2.Done():
	default:
		t.Fatal("Done of an expired context must be closed")
	}
}

func TestCallCtx_CancelAndTheSessionsEndCloseDone(t *testing.T) {
	c, cancel := newCallCtx(context.Background(), time.Time{})
	done := c.Done()
	_, ok := c.Deadline()
	assert.False(t, ok)
	cancel()
	<-done
	assert.ErrorIs(t, c.Err(), context.Canceled)
	cancel() // twice is fine

	session, end := context.WithCancel(context.Background())
	c, cancel = newCallCtx(session, time.Now().Add(time.Hour))
	defer cancel()
	derived, stop := context.WithCancel(c) // a handler's own child context
	defer stop()
	end()
	select {
	case <-derived.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session's end did not reach a context derived from the call's")
	}
	assert.ErrorIs(t, c.Err(), context.Canceled)

	// Without Done, Err sees the session's end.
	c3, cancel3 := newCallCtx(session, time.Time{})
	defer cancel3()
	assert.ErrorIs(t, c3.Err(), context.Canceled)
}
