package curve

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/capbus/capbus/keys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keyEnv passes keys to the Python peers in Z85, libzmq's form.
func keyEnv(name string, k keys.Key) string { return name + "=" + k.Z85() }

// clientEnv is the environment of a Python client of the echo server s
// with the key pair client.
func clientEnv(s *server, client keys.Pair) []string {
	return []string{
		"ENDPOINT=" + s.endpoint(),
		keyEnv("CURVE_SERVER_PUBLIC", s.kp.Public),
		keyEnv("CURVE_CLIENT_PUBLIC", client.Public),
		"CURVE_CLIENT_SECRET=" + client.Secret.Z85(),
	}
}

// echoServers are the two ways a program reads and writes messages on a
// conn: whole through ReadMsg and WriteMsg, and through zmq4 over the
// adapter.
var echoServers = []struct {
	name  string
	start func(testing.TB, ...Option) *server
}{
	{"ReadMsg", startEchoServer},
	{"zmq4", startZMQ4EchoServer},
}

func TestInterop_LibzmqDealerTalksToCapbusRouter(t *testing.T) {
	for _, es := range echoServers {
		t.Run(es.name, func(t *testing.T) {
			client := newKeyPair(t)
			s := es.start(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "py-user"})))

			py := startPython(t, "libzmq_dealer.py", clientEnv(s, client)...)
			py.expect(t, "MULTIPART OK")

			first := s.nextMsg(t)
			assert.Equal(t, [][]byte{[]byte("hello"), {}, []byte("world")}, normalize(first))
			peer := s.nextConn(t).Peer()
			assert.Equal(t, client.Public, peer.PublicKey)
			assert.Equal(t, "py-user", peer.UserID)
			assert.Equal(t, "DEALER", peer.SocketType)
			assert.Equal(t, "py-dealer", peer.Identity)

			py.expect(t, "BIG OK")
			py.expect(t, "SEQUENCE OK")
			py.wait(t)
		})
	}
}

func normalize(frames [][]byte) [][]byte {
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = append([]byte{}, f...)
	}
	return out
}

func TestInterop_CapbusDealerTalksToLibzmqRouterWithZAP(t *testing.T) {
	server, client, stranger := newKeyPair(t), newKeyPair(t), newKeyPair(t)
	py := startPython(t, "libzmq_router_zap.py",
		keyEnv("CURVE_SERVER_PUBLIC", server.Public),
		"CURVE_SERVER_SECRET="+server.Secret.Z85(),
		keyEnv("CURVE_ALLOWED_CLIENT", client.Public),
		"CURVE_USER_ID=alice")
	endpoint := py.expect(t, "LISTENING")

	c := dealer(t, endpoint, client, server.Public)
	assert.Equal(t, "ROUTER", c.Peer().SocketType)
	require.NoError(t, c.WriteMsg([][]byte{[]byte("hello"), []byte("world")}))
	reply, err := c.ReadMsg()
	require.NoError(t, err)
	assert.Equal(t, []string{"user-id", "alice", "hello", "world"}, strs(reply))
	py.expect(t, "FROM alice")

	t.Run("RefusedKeyGetsError400", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, err := Dial(ctx, endpoint, stranger, server.Public)
		require.ErrorIs(t, err, ErrRefused)
		var refused *RefusedError
		require.True(t, errors.As(err, &refused))
		assert.Equal(t, "400", refused.Reason)
	})

	t.Run("WrongServerKeyFailsHandshake", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, err := Dial(ctx, endpoint, client, stranger.Public)
		require.ErrorIs(t, err, ErrHandshake)
		assert.NotErrorIs(t, err, ErrRefused)
	})

	require.NoError(t, c.WriteMsg([][]byte{[]byte("quit")}))
	reply, err = c.ReadMsg()
	require.NoError(t, err)
	assert.Equal(t, []string{"bye"}, strs(reply))
	py.wait(t)
}

func strs(frames [][]byte) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = string(f)
	}
	return out
}

func TestInterop_LibzmqClientWithRefusedKeyFailsItsHandshake(t *testing.T) {
	rec, logger := newLogRecorder()
	s := startEchoServer(t, WithAuthenticator(allowKeys(nil)), WithLogger(logger))
	client := newKeyPair(t)
	py := startPython(t, "libzmq_refused.py", clientEnv(s, client)...)
	assert.Equal(t, "400", py.expect(t, "HANDSHAKE_FAILED_AUTH"))
	py.wait(t)
	rec.waitFor(t, "client refused", attr("client_key", client.Public.Z85()))
}

func TestInterop_LibzmqHeartbeatsAreAnsweredAndConnectionStays(t *testing.T) {
	for _, es := range echoServers {
		t.Run(es.name, func(t *testing.T) {
			client := newKeyPair(t)
			s := es.start(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "hb"})))
			py := startPython(t, "libzmq_heartbeat.py", clientEnv(s, client)...)
			py.expect(t, "CONNECTED")
			c := s.nextConn(t)
			py.expect(t, "STILL CONNECTED")
			py.wait(t)
			// 1.5 s at a 100 ms interval: about 15 PINGs, none of them seen
			// by the program.
			assert.GreaterOrEqual(t, c.pings.Load(), int64(5), "PINGs answered")
			for {
				select {
				case m := <-s.recv:
					for _, f := range m {
						assert.False(t, bytes.Contains(f, []byte("PING")), "a PING reached the program")
					}
					continue
				case <-time.After(0):
				}
				break
			}
		})
	}
}
