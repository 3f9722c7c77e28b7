package curve

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
)

func TestConn_RoundTripsMultipartMessagesBetweenZmq4Peers(t *testing.T) {
	client := newKeyPair(t)
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[auth.Key]string{client.Public: "alice"})))
	c, zc := dealer(t, s.endpoint(), client, s.kp.Public, WithIdentity("agent-1"))

	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	msgs := []zmq4.Msg{
		zmq4.NewMsgFrom([]byte("a"), nil, []byte("c")),
		zmq4.NewMsg(big),
		zmq4.NewMsg(nil),
	}
	for _, m := range msgs {
		require.NoError(t, zc.SendMsg(m))
		got, err := zc.RecvMsg()
		require.NoError(t, err)
		require.Equal(t, len(m.Frames), len(got.Frames))
		for i := range m.Frames {
			assert.True(t, bytes.Equal(m.Frames[i], got.Frames[i]), "frame %d", i)
		}
	}

	sc := s.nextConn(t)
	peer := sc.Peer()
	assert.Equal(t, client.Public, peer.PublicKey)
	assert.Equal(t, "alice", peer.UserID)
	assert.Equal(t, "agent-1", peer.Identity)
	assert.Equal(t, "DEALER", peer.SocketType)
	assert.NotEmpty(t, peer.RoutingID)
	assert.Equal(t, c.LocalAddr().String(), peer.RemoteAddr)
	got, ok := s.l.Lookup(peer.RoutingID)
	require.True(t, ok)
	assert.Equal(t, peer, got)

	assert.Equal(t, s.kp.Public, c.Peer().PublicKey)
	assert.Equal(t, "ROUTER", c.Peer().SocketType)

	require.NoError(t, sc.Close())
	require.NoError(t, sc.Close(), "Close is idempotent")
	_, ok = s.l.Lookup(peer.RoutingID)
	assert.False(t, ok, "Lookup entry removed when the conn closes")
}

func TestListener_GivesZmq4ItsRoutingIDNotTheClaimedIdentity(t *testing.T) {
	a, b := newKeyPair(t), newKeyPair(t)
	srv := newKeyPair(t)
	l, err := Listen(context.Background(), "127.0.0.1:0", srv,
		WithAuthenticator(allowKeys(map[auth.Key]string{a.Public: "a", b.Public: "b"})))
	require.NoError(t, err)
	defer l.Close()

	var ids []string
	for _, kp := range []auth.KeyPair{a, b} {
		done := make(chan error, 1)
		go func() {
			c, err := Dial(context.Background(), l.Addr().String(), kp, srv.Public, WithIdentity("admin"))
			if err == nil {
				defer c.Close()
				_, err = zmq4.Open(c, null.Security(), zmq4.Dealer, nil, false, nil)
			}
			done <- err
		}()
		c, err := l.AcceptConn()
		require.NoError(t, err)
		defer c.Close()
		zc, err := zmq4.Open(c, null.Security(), zmq4.Router, nil, true, nil)
		require.NoError(t, err)
		require.NoError(t, <-done)
		assert.Equal(t, "admin", c.Peer().Identity, "the claimed identity is recorded")
		assert.Equal(t, c.Peer().RoutingID, zc.Peer.Meta["Identity"], "zmq4 routes by the listener's id")
		ids = append(ids, c.Peer().RoutingID)
	}
	assert.NotEqual(t, ids[0], ids[1])
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

func TestConn_CorkHoldsMessagesUntilUncorkThenWritesThemOnce(t *testing.T) {
	client := newKeyPair(t)
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[auth.Key]string{client.Public: "alice"})))
	var reads, writes atomic.Int64
	c, zc := dealer(t, s.endpoint(), client, s.kp.Public, withCounters(&reads, &writes))

	before := writes.Load()
	c.Cork()
	const n = 10
	for i := 0; i < n; i++ {
		require.NoError(t, zc.SendMsg(zmqMsg("corked", i)))
	}
	assert.Equal(t, before, writes.Load(), "a corked conn writes nothing")
	require.NoError(t, c.Uncork())
	assert.Equal(t, before+1, writes.Load(), "uncork writes every held message with one write")
	for i := 0; i < n; i++ {
		got, err := zc.RecvMsg()
		require.NoError(t, err)
		assert.Equal(t, zmqMsg("corked", i).Frames, got.Frames, "message %d echoed in order", i)
	}

	// Uncorked again: each message goes out when it ends.
	require.NoError(t, zc.SendMsg(zmqMsg("plain", 0)))
	assert.Equal(t, before+2, writes.Load())
}
