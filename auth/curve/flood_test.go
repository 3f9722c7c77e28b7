package curve

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// teeWriter records what a client handshake writes.
type teeWriter struct {
	io.Writer
	buf bytes.Buffer
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	return w.Writer.Write(p)
}

// recordedHello runs a client handshake and returns its greeting and
// HELLO command as sent on the wire.
func recordedHello(t *testing.T, s *server) []byte {
	t.Helper()
	raw := dialRaw(t, s.l.Addr().String())
	tee := &teeWriter{Writer: raw}
	o := newOptions("DEALER", nil)
	kp := newKeyPair(t)
	_, _ = clientHandshake(tee, bufio.NewReader(raw), kp, s.kp.Public, &o) // refused or not: HELLO was sent
	b := tee.buf.Bytes()
	require.Greater(t, len(b), greetingSize+2)
	r := bytes.NewReader(b[greetingSize:])
	_, body, err := readFrame(r, 1<<20)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(body, []byte("\x05HELLO")))
	return b[:len(b)-r.Len()]
}

// TestListener_RefusesAReplayedHelloBeforeTheKeyAgreement: a HELLO sent
// again on a new connection (a replay costs its sender nothing) is refused
// without a WELCOME, and counted as such.
func TestListener_RefusesAReplayedHelloBeforeTheKeyAgreement(t *testing.T) {
	s, rec, _ := hostileServer(t)
	hello := recordedHello(t, s)
	for range 3 {
		raw := dialRaw(t, s.l.Addr().String())
		_, err := raw.Write(hello)
		require.NoError(t, err)
		require.NoError(t, raw.SetReadDeadline(time.Now().Add(testTimeout)))
		got, _ := io.ReadAll(raw)
		assert.Len(t, got, greetingSize, "the server's greeting, then the connection closed: no WELCOME")
	}
	rec.waitFor(t, "handshake failed", "replayed HELLO")
}

// TestListener_AHostThatKeepsFailingIsAnsweredBusy: past the failure
// limit, a host's handshakes are answered ERROR "300" after HELLO (the
// client sees ErrBusy), even with the right keys, until its backoff ends;
// a warning says so.
func TestListener_AHostThatKeepsFailingIsAnsweredBusy(t *testing.T) {
	s, rec, client := hostileServer(t, WithFailureLimit(3))
	wrong := newKeyPair(t)
	ctx := context.Background()
	for range 3 {
		_, err := Dial(ctx, s.endpoint(), client, wrong.Public)
		require.ErrorIs(t, err, ErrServerKey)
	}
	rec.waitFor(t, "refusing a host that keeps failing handshakes", "host=127.0.0.1", "for=1s")
	start := time.Now()
	_, err := Dial(ctx, s.endpoint(), client, s.kp.Public)
	require.ErrorIs(t, err, ErrBusy)
	require.ErrorIs(t, err, ErrRefused)
	// Busy answers do not extend the backoff: after it, the client gets in.
	require.Eventually(t, func() bool {
		c, err := Dial(ctx, s.endpoint(), client, s.kp.Public)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, testTimeout, 50*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "the backoff lasted")
}

// TestListener_BoundsTheHandshakesInProgress: connections beyond the
// bound of pending handshakes are closed at once; when one finishes, new
// ones are served again.
func TestListener_BoundsTheHandshakesInProgress(t *testing.T) {
	s, _, client := hostileServer(t, WithMaxPendingHandshakes(2))
	// Two connections that never speak hold both slots.
	idle := []net.Conn{dialRaw(t, s.l.Addr().String()), dialRaw(t, s.l.Addr().String())}
	for _, c := range idle {
		// Their greeting arrives: the handshakes started.
		require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
		_, err := io.ReadFull(c, make([]byte, greetingSize))
		require.NoError(t, err)
	}
	third := dialRaw(t, s.l.Addr().String())
	expectClosed(t, third)
	idle[0].Close()
	require.Eventually(t, func() bool {
		c, err := Dial(context.Background(), s.endpoint(), client, s.kp.Public)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, testTimeout, 10*time.Millisecond)
}

// TestListener_LogsFailuresAtDebugAndCountsThemInOneWarning.
func TestListener_LogsFailuresAtDebugAndCountsThemInOneWarning(t *testing.T) {
	var r failureReport
	r.add("refused")
	r.add("refused")
	r.add("replayed_hello")
	rec, log := newLogRecorder()
	r.flush(log, reportEvery)
	line := rec.waitFor(t, "level=WARN", "handshakes failed or refused")
	assert.Contains(t, line, "total=3")
	assert.Contains(t, line, "refused=2")
	assert.Contains(t, line, "replayed_hello=1")
	before := rec.String()
	r.flush(log, reportEvery)
	assert.Equal(t, before, rec.String(), "nothing to report: no line")
}

// TestFailures_ABlockedHostIsAnsweredBusyTenTimesASecondThenClosedAtOnce:
// a flood from a host in its backoff does not get an answer for every
// connection; a client retrying now and then does.
func TestFailures_ABlockedHostIsAnsweredBusyTenTimesASecondThenClosedAtOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	f := newFailures(3)
	f.now = func() time.Time { return now }
	for range 2 {
		_, ok := f.failed("10.0.0.9")
		require.False(t, ok)
	}
	d, ok := f.failed("10.0.0.9")
	require.True(t, ok, "the third failure starts the backoff")
	assert.Equal(t, time.Second, d)
	for i := range busyAnswersPerSecond {
		blocked, closeNow := f.blocked("10.0.0.9")
		require.True(t, blocked)
		require.False(t, closeNow, "answer %d of this second", i+1)
	}
	blocked, closeNow := f.blocked("10.0.0.9")
	assert.True(t, blocked)
	assert.True(t, closeNow, "past ten answers in a second: closed at once")
	blocked, _ = f.blocked("10.0.0.8")
	assert.False(t, blocked, "another host is not concerned")

	now = now.Add(500 * time.Millisecond)
	_, closeNow = f.blocked("10.0.0.9")
	assert.True(t, closeNow, "still the same second")
	now = now.Add(600 * time.Millisecond)
	blocked, _ = f.blocked("10.0.0.9")
	assert.False(t, blocked, "the one-second backoff is over")
}
