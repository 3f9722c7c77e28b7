package admin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSessions_ExpireAfterTheirTTL(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := newSessions(4, 12*time.Hour, c.now)
	id, sess, evicted := s.create("ops")
	assert.False(t, evicted)
	assert.Equal(t, "ops", sess.name)
	assert.NotEqual(t, id, sess.csrf)

	c.advance(12*time.Hour - time.Second)
	got, ok := s.get(id)
	require.True(t, ok)
	assert.Equal(t, sess.csrf, got.csrf)

	c.advance(time.Second)
	_, ok = s.get(id)
	assert.False(t, ok, "expired at 12h")
	_, ok = s.take(id)
	assert.False(t, ok)
	assert.Zero(t, s.len(), "take drops an expired session")
}

func TestSessions_AreBoundedDroppingExpiredThenTheOldest(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := newSessions(3, time.Hour, c.now)
	old, _, _ := s.create("a")
	c.advance(30 * time.Minute)
	mid, _, _ := s.create("b")
	c.advance(time.Minute)
	last, _, _ := s.create("c")

	c.advance(30 * time.Minute) // "a" has expired
	_, _, evicted := s.create("d")
	assert.False(t, evicted, "an expired session made room")
	assert.Equal(t, 3, s.len())

	newest, _, evicted := s.create("e")
	assert.True(t, evicted, "the oldest live session made room")
	assert.Equal(t, 3, s.len())
	_, ok := s.get(mid)
	assert.False(t, ok, "the oldest was ended")
	for _, id := range []string{last, newest} {
		_, ok := s.get(id)
		assert.True(t, ok)
	}
	_, ok = s.get(old)
	assert.False(t, ok)
}

func TestSessions_FlashShowsOnce(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := newSessions(4, time.Hour, c.now)
	id, _, _ := s.create("ops")
	s.setFlash(id, "Granted x to y.")
	got, ok := s.take(id)
	require.True(t, ok)
	assert.Equal(t, "Granted x to y.", got.flash)
	got, _ = s.take(id)
	assert.Empty(t, got.flash)
}
