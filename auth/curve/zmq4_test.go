package curve

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/keys"
)

func TestZMQ4Conn_RoundTripsMultipartMessagesBetweenZmq4Peers(t *testing.T) {
	client := newKeyPair(t)
	s := startZMQ4EchoServer(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "alice"})))
	_, zc := zmq4Dealer(t, s.endpoint(), client, s.kp.Public, WithIdentity("agent-1"))

	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	for _, m := range []zmq4.Msg{
		zmq4.NewMsgFrom([]byte("a"), nil, []byte("c")),
		zmq4.NewMsg(big),
		zmq4.NewMsg(nil),
	} {
		require.NoError(t, zc.SendMsg(m))
		got, err := zc.RecvMsg()
		require.NoError(t, err)
		require.Equal(t, len(m.Frames), len(got.Frames))
		for i := range m.Frames {
			assert.True(t, bytes.Equal(m.Frames[i], got.Frames[i]), "frame %d", i)
		}
	}
}

func TestZMQ4Conn_InteroperatesWithTheMessageAPI(t *testing.T) {
	client := newKeyPair(t)
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "alice"})))
	_, zc := zmq4Dealer(t, s.endpoint(), client, s.kp.Public)
	require.NoError(t, zc.SendMsg(zmq4.NewMsgFrom([]byte("VIP1"), []byte("x"))))
	got, err := zc.RecvMsg()
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("VIP1"), []byte("x")}, got.Frames)
}

func TestZMQ4Conn_GivesZmq4ARoutingIDNotTheClaimedIdentity(t *testing.T) {
	a, b := newKeyPair(t), newKeyPair(t)
	srv := newKeyPair(t)
	l, err := Listen(context.Background(), "127.0.0.1:0", srv,
		WithAuthenticator(allowKeys(map[keys.Key]string{a.Public: "a", b.Public: "b"})))
	require.NoError(t, err)
	defer l.Close()

	var ids []string
	for _, kp := range []keys.Pair{a, b} {
		done := make(chan error, 1)
		go func() {
			c, err := Dial(context.Background(), l.Addr().String(), kp, srv.Public, WithIdentity("admin"))
			if err == nil {
				defer c.Close()
				_, err = zmq4.Open(NewZMQ4Conn(c), null.Security(), zmq4.Dealer, nil, false, nil)
			}
			done <- err
		}()
		c, err := l.Accept()
		require.NoError(t, err)
		defer c.Close()
		zc, err := zmq4.Open(NewZMQ4Conn(c), null.Security(), zmq4.Router, nil, true, nil)
		require.NoError(t, err)
		require.NoError(t, <-done)
		assert.Equal(t, "admin", c.Peer().Identity, "the claimed identity is recorded")
		id := zc.Peer.Meta["Identity"]
		assert.NotEqual(t, "admin", id, "zmq4 routes by a routing id of the adapter")
		assert.Len(t, id, 16)
		ids = append(ids, id)
	}
	assert.NotEqual(t, ids[0], ids[1])
}
