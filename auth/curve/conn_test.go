package curve

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/keys"
)

func TestConn_RoundTripsMultipartMessages(t *testing.T) {
	client := newKeyPair(t)
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "alice"})))
	c := dealer(t, s.endpoint(), client, s.kp.Public, WithIdentity("agent-1"))

	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	msgs := [][][]byte{
		{[]byte("a"), nil, []byte("c")},
		{big},
		{nil},
	}
	for _, m := range msgs {
		require.NoError(t, c.WriteMsg(m))
		got, err := c.ReadMsg()
		require.NoError(t, err)
		require.Equal(t, len(m), len(got))
		for i := range m {
			assert.True(t, bytes.Equal(m[i], got[i]), "frame %d", i)
		}
	}

	sc := s.nextConn(t)
	peer := sc.Peer()
	assert.Equal(t, client.Public, peer.PublicKey)
	assert.Equal(t, "alice", peer.UserID)
	assert.Equal(t, "agent-1", peer.Identity)
	assert.Equal(t, "DEALER", peer.SocketType)
	assert.Equal(t, c.LocalAddr().String(), peer.RemoteAddr)

	assert.Equal(t, s.kp.Public, c.Peer().PublicKey)
	assert.Equal(t, "ROUTER", c.Peer().SocketType)

	require.NoError(t, sc.Close())
	require.NoError(t, sc.Close(), "Close is idempotent")
}

func TestConn_WriteMsgsSendsSeveralMessagesWithOneWrite(t *testing.T) {
	client := newKeyPair(t)
	var reads, writes atomic.Int64
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "alice"})))
	c := dealer(t, s.endpoint(), client, s.kp.Public, withCounters(&reads, &writes))

	before := writes.Load()
	const n = 10
	batch := make([][][]byte, n)
	for i := range batch {
		batch[i] = msgOf("batched", i)
	}
	require.NoError(t, c.WriteMsgs(batch))
	assert.Equal(t, before+1, writes.Load(), "one write for the batch")
	for i := 0; i < n; i++ {
		got, err := c.ReadMsg()
		require.NoError(t, err)
		assert.Equal(t, msgOf("batched", i), got, "message %d echoed in order", i)
	}
	require.ErrorIs(t, c.WriteMsgs([][][]byte{msgOf("ok", 0), nil}), ErrMalformed, "a message with no frames")
}

func TestListen_RequiresAnAuthenticator(t *testing.T) {
	_, err := Listen(context.Background(), "127.0.0.1:0", newKeyPair(t))
	require.ErrorIs(t, err, ErrNoAuthenticator)
}

func TestListener_RefusesUnknownKey(t *testing.T) {
	rec, logger := newLogRecorder()
	s := startEchoServer(t, WithAuthenticator(allowKeys(nil)), WithLogger(logger))
	stranger := newKeyPair(t)
	_, err := Dial(context.Background(), s.endpoint(), stranger, s.kp.Public)
	require.ErrorIs(t, err, ErrRefused)
	require.ErrorIs(t, err, ErrHandshake)
	var refused *RefusedError
	require.True(t, errors.As(err, &refused))
	assert.Equal(t, "400", refused.Reason)
	rec.waitFor(t, "client refused", attr("client_key", stranger.Public.Z85()), "unknown key")
}

func TestListener_RefusesAnIncompatibleSocketType(t *testing.T) {
	client := newKeyPair(t)
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "alice"})))
	_, err := Dial(context.Background(), s.endpoint(), client, s.kp.Public, WithSocketType("PUB"))
	require.Error(t, err, "a PUB cannot talk to a ROUTER")
}

func TestConn_TryWriteMsgsLeavesWhatTheSocketDoesNotTakeForTheNextWrite(t *testing.T) {
	client := newKeyPair(t)
	release := make(chan struct{})
	got := make(chan [][]byte, 4096)
	s := startServer(t, func(c *Conn, _ chan<- [][]byte) {
		defer c.Close()
		<-release // a peer that does not read for now
		for {
			frames, err := c.ReadMsg()
			if err != nil {
				return
			}
			got <- frames
		}
	}, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "alice"})))
	c := dealer(t, s.endpoint(), client, s.kp.Public)

	payload := bytes.Repeat([]byte{'x'}, 64<<10)
	msg := func(i int) [][]byte { return [][]byte{[]byte(strconv.Itoa(i)), payload} }
	all, err := c.TryWriteMsgs([][][]byte{msg(0)})
	require.NoError(t, err)
	require.True(t, all, "an empty socket takes one message at once")
	n := 1
	for ; n < 2000; n++ { // loopback buffers hold a few MiB
		all, err = c.TryWriteMsgs([][][]byte{msg(n)})
		require.NoError(t, err)
		if !all {
			break
		}
	}
	require.False(t, all, "the socket filled up within %d messages of 64 KiB", n)
	n++

	// The rest waits for the next write, which goes first.
	wrote := make(chan error, 1)
	go func() { wrote <- c.WriteMsgs([][][]byte{msg(n)}) }()
	close(release)
	for i := 0; i <= n; i++ {
		select {
		case f := <-got:
			require.Equal(t, strconv.Itoa(i), string(f[0]), "messages in order, none lost")
			require.Equal(t, payload, f[1])
		case <-time.After(testTimeout):
			t.Fatalf("received %d messages of %d", i, n+1)
		}
	}
	require.NoError(t, <-wrote)
}

// TestConn_TryWriteMsgsDoesNotWaitForAWriteInProgress: the conn's reader
// answers a PING with a blocking write, which waits as long as the peer
// does not read; a TryWriteMsgs meanwhile must return at once, having
// sealed nothing.
func TestConn_TryWriteMsgsDoesNotWaitForAWriteInProgress(t *testing.T) {
	client := newKeyPair(t)
	s := startServer(t, func(c *Conn, _ chan<- [][]byte) {
		for { // a platform's reader: ReadMsg answers PINGs
			if _, err := c.ReadMsg(); err != nil {
				return
			}
		}
	}, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "alice"})))
	c := dealer(t, s.endpoint(), client, s.kp.Public) // never reads
	sc := s.nextConn(t)

	// Loopback buffers grow while the receiver's window opens: fill the
	// socket and ping until the PING's answer is stuck behind the data.
	if tc, ok := c.raw.(*net.TCPConn); ok {
		require.NoError(t, tc.SetReadBuffer(4<<10))
	}
	payload := bytes.Repeat([]byte{'x'}, 64<<10)
	held := func() bool { // the server's reader holds the write side, and keeps it
		for until := time.Now().Add(100 * time.Millisecond); time.Now().Before(until); runtime.Gosched() {
			if sc.wmu.TryLock() {
				sc.wmu.Unlock()
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(testTimeout)
	for n := 0; !held(); n++ {
		require.True(t, time.Now().Before(deadline), "the PING's answer never got stuck")
		for all := true; all; n++ {
			var err error
			all, err = sc.TryWriteMsgs([][][]byte{{[]byte(strconv.Itoa(n)), payload}})
			if errors.Is(err, ErrWriteInProgress) {
				break // the answer to the last PING is being written
			}
			require.NoError(t, err)
		}
		pinged := sc.pings.Load()
		require.NoError(t, c.write(innerCommand, [][]byte{[]byte("\x04PING\x00\x00")}))
		answering := time.Now().Add(200 * time.Millisecond)
		for sc.pings.Load() == pinged && time.Now().Before(answering) {
			runtime.Gosched() // the server's reader takes the PING
		}
	}

	done := make(chan error, 1)
	go func() {
		_, err := sc.TryWriteMsgs([][][]byte{{[]byte("another peer's message")}})
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrWriteInProgress)
	case <-time.After(testTimeout):
		t.Fatal("TryWriteMsgs waited for the PONG to a peer that does not read")
	}
	c.Close() // the PONG's write ends (connection reset)
}

// splitConn writes each write after the handshake in two halves, the
// second once release is closed.
type splitConn struct {
	net.Conn
	armed   *atomic.Bool
	release chan struct{}
}

func (c splitConn) Write(p []byte) (int, error) {
	if !c.armed.Load() || len(p) < 2 {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	<-c.release
	m, err := c.Conn.Write(p[len(p)/2:])
	return n + m, err
}

// TestConn_BeforeReadRunsWhenABurstEndsInsideAMessage: a reader that holds
// back work until its input is used up must get to release it when what
// it received ends in the middle of a message, before it waits for the
// rest.
func TestConn_BeforeReadRunsWhenABurstEndsInsideAMessage(t *testing.T) {
	client := newKeyPair(t)
	s := startServer(t, func(*Conn, chan<- [][]byte) {}, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "alice"})))
	var armed atomic.Bool
	release := make(chan struct{})
	c := dealer(t, s.endpoint(), client, s.kp.Public, func(o *options) {
		o.wrapConn = func(raw net.Conn) net.Conn { return splitConn{raw, &armed, release} }
	})
	sc := s.nextConn(t)
	midMessage := make(chan int, 16)
	sc.BeforeRead(func() {
		if n := sc.br.Buffered(); n > 0 {
			select {
			case midMessage <- n:
			default:
			}
		}
	})
	armed.Store(true)
	wrote := make(chan error, 1)
	go func() { wrote <- c.WriteMsg([][]byte{[]byte("first frame"), bytes.Repeat([]byte{'x'}, 1000)}) }()
	read := make(chan [][]byte, 1)
	go func() {
		m, err := sc.ReadMsg()
		assert.NoError(t, err)
		read <- m
	}()
	select {
	case n := <-midMessage:
		assert.Positive(t, n)
	case <-read:
		t.Fatal("the message was read whole before the rest was sent")
	case <-time.After(testTimeout):
		t.Fatal("BeforeRead did not run while the reader waited for the rest of the message")
	}
	close(release)
	require.NoError(t, <-wrote)
	assert.Equal(t, "first frame", string((<-read)[0]))
}
