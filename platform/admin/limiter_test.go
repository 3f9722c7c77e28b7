package admin

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clock is a settable time source for the limiter and the sessions.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLimiter_WaitDoublesAfterTheFreeFailuresUpToTheCap(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := newLimiter(3, 10*time.Second, 60*time.Second, c.now)
	const ip = "192.0.2.7"

	assert.Zero(t, l.fail(ip))
	assert.Zero(t, l.fail(ip))
	assert.Zero(t, l.wait(ip), "still within the free failures")
	assert.Equal(t, 10*time.Second, l.fail(ip))
	assert.Equal(t, 10*time.Second, l.wait(ip))
	c.advance(4 * time.Second)
	assert.Equal(t, 6*time.Second, l.wait(ip))
	c.advance(6 * time.Second)
	assert.Zero(t, l.wait(ip), "the wait is over")

	assert.Equal(t, 20*time.Second, l.fail(ip))
	c.advance(20 * time.Second)
	assert.Equal(t, 40*time.Second, l.fail(ip))
	c.advance(40 * time.Second)
	assert.Equal(t, 60*time.Second, l.fail(ip), "capped")
	c.advance(60 * time.Second)
	assert.Equal(t, 60*time.Second, l.fail(ip), "stays capped")

	assert.Zero(t, l.wait("192.0.2.8"), "other addresses are not affected")
}

func TestLimiter_SuccessAndAQuietPeriodForget(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := newLimiter(2, time.Second, time.Minute, c.now)
	l.fail("a")
	l.fail("a")
	l.fail("b")
	l.fail("b")
	require.Positive(t, l.wait("a"))
	l.succeed("a")
	assert.Zero(t, l.wait("a"))
	assert.Zero(t, l.fail("a"), "after a success the count starts again")

	c.advance(2 * time.Minute) // forget is twice the cap
	assert.Zero(t, l.wait("b"))
	assert.Zero(t, l.fail("b"), "a forgotten address starts again")
}

func TestLimiter_RemembersABoundedNumberOfAddresses(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := newLimiter(1, time.Hour, time.Hour, c.now)
	l.fail("first")
	for i := range maxLimiterEntries {
		c.advance(time.Millisecond)
		l.fail(fmt.Sprintf("198.51.%d.%d", i/256, i%256))
	}
	assert.Len(t, l.m, maxLimiterEntries)
	assert.Zero(t, l.wait("first"), "the oldest entry made room")
	assert.Positive(t, l.wait("198.51.15.255"))
}
