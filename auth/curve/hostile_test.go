package curve

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/capbus/capbus/keys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/nacl/box"
)

// hostileServer is an echo server with a log recorder and a small frame
// limit, admitting one client key.
func hostileServer(t *testing.T, opts ...Option) (*server, *logRecorder, keys.Pair) {
	t.Helper()
	rec, logger := newLogRecorder()
	client := newKeyPair(t)
	opts = append([]Option{
		WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "mallory"})),
		WithLogger(logger),
		WithMaxFrameSize(1024),
	}, opts...)
	return startEchoServer(t, opts...), rec, client
}

// rawClient completes a CURVE handshake by hand and leaves the raw TCP conn
// to the test.
type rawClient struct {
	net.Conn
	br *bufio.Reader
	s  session
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, testTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	return raw
}

func handshakeRaw(t *testing.T, s *server, kp keys.Pair) *rawClient {
	t.Helper()
	raw := dialRaw(t, s.l.Addr().String())
	o := newOptions("DEALER", nil)
	br := bufio.NewReader(raw)
	sess, err := clientHandshake(raw, br, kp, s.kp.Public, &o)
	require.NoError(t, err)
	return &rawClient{Conn: raw, br: br, s: sess}
}

// message returns a MESSAGE frame with the given nonce, outer flags and
// inner flags.
func (c *rawClient) message(nonce uint64, outer, inner byte, data string) []byte {
	n := shortNonce(prefixMessageC, nonce)
	plain := append([]byte{inner}, data...)
	cmd := shortNonceCommand{Nonce: nonce, Box: box.SealAfterPrecomputation(nil, plain, &n, &c.s.key)}
	body := cmd.append(nil, nameMessage)
	return append(appendFrameHeader(nil, outer, len(body)), body...)
}

// roundTrip sends a valid message and waits for its echo.
func (c *rawClient) roundTrip(t *testing.T, nonce uint64, data string) {
	t.Helper()
	_, err := c.Write(c.message(nonce, 0, 0, data))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
	_, body, err := readFrame(c.br, 1<<20)
	require.NoError(t, err)
	msg, err := decodeMessage(body)
	require.NoError(t, err)
	n := shortNonce(prefixMessageS, msg.Nonce)
	plain, ok := box.OpenAfterPrecomputation(nil, msg.Box, &n, &c.s.key)
	require.True(t, ok)
	assert.Equal(t, "\x00"+data, string(plain))
}

func TestListener_ClosesWhenServerKeyIsWrong(t *testing.T) {
	s, rec, client := hostileServer(t)
	wrong := newKeyPair(t)
	_, err := Dial(context.Background(), s.endpoint(), client, wrong.Public)
	require.ErrorIs(t, err, ErrHandshake)
	rec.waitFor(t, "handshake failed", "HELLO")
}

func TestConn_ClosesOnReplayedNonce(t *testing.T) {
	s, rec, client := hostileServer(t)
	bystander := handshakeRaw(t, s, client)
	c := handshakeRaw(t, s, client)
	c.roundTrip(t, 3, "first")
	_, err := c.Write(c.message(3, 0, 0, "replayed"))
	require.NoError(t, err)
	expectClosed(t, c)
	rec.waitFor(t, "closing connection", "nonce not increasing", attr("peer_key", client.Public.Z85()))
	bystander.roundTrip(t, 3, "only the offending connection is closed")
}

func TestConn_ClosesOnNonIncreasingNonce(t *testing.T) {
	s, rec, client := hostileServer(t)
	c := handshakeRaw(t, s, client)
	c.roundTrip(t, 10, "first")
	_, err := c.Write(c.message(9, 0, 0, "older"))
	require.NoError(t, err)
	expectClosed(t, c)
	rec.waitFor(t, "closing connection", "nonce not increasing")
}

func TestConn_ClosesOnMessageWithOuterMoreOrCommandFlag(t *testing.T) {
	for name, outer := range map[string]byte{"MORE": flagMore, "COMMAND": flagCommand} {
		t.Run(name, func(t *testing.T) {
			s, rec, client := hostileServer(t)
			c := handshakeRaw(t, s, client)
			c.roundTrip(t, 3, "fine")
			_, err := c.Write(c.message(4, outer, 0, "bad flags"))
			require.NoError(t, err)
			expectClosed(t, c)
			rec.waitFor(t, "closing connection", "outer flags")
		})
	}
}

func TestListener_ClosesOnTruncatedCommands(t *testing.T) {
	hello := func() []byte {
		h := helloCommand{Nonce: 1}
		return h.append(nil)
	}
	cases := map[string]struct {
		send []byte // after our greeting
		log  string
	}{
		"ShortHELLO":        {send: frameOf(flagCommand, hello()[:150]), log: "HELLO of 150 bytes"},
		"EmptyCommand":      {send: frameOf(flagCommand, nil), log: "expected HELLO"},
		"HELLOCutMidFrame":  {send: frameOf(flagCommand, hello())[:120], log: "unexpected EOF"},
		"HeaderOnly":        {send: []byte{flagCommand | flagLong, 0, 0}, log: "unexpected EOF"},
		"MessageBeforeHELO": {send: frameOf(0, hello()), log: "want a command"},
		"NameLength255":     {send: frameOf(flagCommand, append([]byte{0xff}, make([]byte, 255)...)), log: "expected HELLO"}, // found by FuzzDecodeCommand
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, rec, _ := hostileServer(t)
			raw := dialRaw(t, s.l.Addr().String())
			require.NoError(t, writeGreeting(raw, false))
			_, err := raw.Write(tc.send)
			require.NoError(t, err)
			raw.(*net.TCPConn).CloseWrite()
			expectClosed(t, raw)
			rec.waitFor(t, "handshake failed", tc.log)
		})
	}
}

func TestConn_ClosesOnTruncatedMessage(t *testing.T) {
	s, rec, client := hostileServer(t)
	c := handshakeRaw(t, s, client)
	c.roundTrip(t, 3, "fine")
	_, err := c.Write(frameOf(0, []byte("\x07MESSAGE\x00\x00\x00\x00\x00\x00\x00\x04short")))
	require.NoError(t, err)
	expectClosed(t, c)
	rec.waitFor(t, "closing connection", "MESSAGE of 21 bytes")
}

func frameOf(flags byte, body []byte) []byte {
	return append(appendFrameHeader(nil, flags, len(body)), body...)
}

func TestListener_RefusesHugeDeclaredLengthWithoutAllocating(t *testing.T) {
	huge := make([]byte, 9)
	huge[0] = flagCommand | flagLong
	binary.BigEndian.PutUint64(huge[1:], 1<<62)

	t.Run("DuringHandshake", func(t *testing.T) {
		s, rec, _ := hostileServer(t)
		raw := dialRaw(t, s.l.Addr().String())
		require.NoError(t, writeGreeting(raw, false))
		before := totalAlloc()
		_, err := raw.Write(huge)
		require.NoError(t, err)
		expectClosed(t, raw)
		rec.waitFor(t, "handshake failed", "frame too large")
		assert.Less(t, totalAlloc()-before, uint64(8<<20), "bytes allocated")
	})
	for name, size := range map[string]uint64{"2^62": 1 << 62, "JustOverLimit": 1024 + messageOverhead + 1, "100MiB": 100 << 20} {
		t.Run("Message"+name, func(t *testing.T) {
			s, rec, client := hostileServer(t)
			bystander := handshakeRaw(t, s, client)
			c := handshakeRaw(t, s, client)
			c.roundTrip(t, 3, "fine")
			defer bystander.roundTrip(t, 3, "only the offending connection is closed")
			hdr := []byte{flagLong, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint64(hdr[1:], size)
			before := totalAlloc()
			_, err := c.Write(hdr)
			require.NoError(t, err)
			expectClosed(t, c)
			rec.waitFor(t, "closing connection", "frame too large")
			assert.Less(t, totalAlloc()-before, uint64(8<<20), "bytes allocated")
		})
	}
}

func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

func TestListener_RefusesLowOrderClientKey(t *testing.T) {
	s, rec, _ := hostileServer(t)
	var lowOrder keys.Pair // the all-zero point: anyone can forge its vouch
	_, err := Dial(context.Background(), s.endpoint(), lowOrder, s.kp.Public)
	require.ErrorIs(t, err, ErrHandshake)
	rec.waitFor(t, "handshake failed", "low-order")
}

func TestListener_StalledPeerDoesNotBlockOthers(t *testing.T) {
	s, rec, client := hostileServer(t, WithHandshakeTimeout(2*time.Second))
	stalled := dialRaw(t, s.l.Addr().String())
	g := greeting("CURVE", false)
	_, err := stalled.Write(g[:30]) // half a greeting, then nothing
	require.NoError(t, err)

	// Meanwhile other clients connect, complete and talk.
	for i := range 3 {
		c := dealer(t, s.endpoint(), client, s.kp.Public)
		require.NoError(t, c.WriteMsg(msgOf("hi", i)))
		_, err := c.ReadMsg()
		require.NoError(t, err)
	}
	assert.NotContains(t, rec.String(), "read greeting", "the stalled handshake is still pending")
	// The stalled one is dropped when its handshake times out.
	expectClosed(t, stalled)
	rec.waitFor(t, "handshake failed", "read greeting", "deadline exceeded")
}

// next reads and opens the next MESSAGE from the server.
func (c *rawClient) next(t *testing.T) (inner byte, data string) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
	_, body, err := readFrame(c.br, 1<<20)
	require.NoError(t, err)
	msg, err := decodeMessage(body)
	require.NoError(t, err)
	require.Greater(t, msg.Nonce, c.s.recvNonce, "server nonces increase")
	c.s.recvNonce = msg.Nonce
	n := shortNonce(prefixMessageS, msg.Nonce)
	plain, ok := box.OpenAfterPrecomputation(nil, msg.Box, &n, &c.s.key)
	require.True(t, ok)
	return plain[0], string(plain[1:])
}

func TestConn_AnswersPingWithPongWithoutReturningIt(t *testing.T) {
	s, _, client := hostileServer(t)
	c := handshakeRaw(t, s, client)
	_, err := c.Write(c.message(3, 0, innerCommand, "\x04PING\x00\x0acontext"))
	require.NoError(t, err)
	inner, data := c.next(t)
	assert.Equal(t, byte(innerCommand), inner)
	assert.Equal(t, "\x04PONGcontext", data)

	_, err = c.Write(c.message(4, 0, 0, "after the ping"))
	require.NoError(t, err)
	inner, data = c.next(t)
	assert.Equal(t, byte(0), inner)
	assert.Equal(t, "after the ping", data, "ReadMsg returned only the message")
	assert.Equal(t, "after the ping", string(s.nextMsg(t)[0]))
}

func TestConn_DropsOtherCommandsInsideMessages(t *testing.T) {
	s, _, client := hostileServer(t)
	c := handshakeRaw(t, s, client)
	_, err := c.Write(c.message(3, 0, innerCommand, "\x09SUBSCRIBEweather"))
	require.NoError(t, err)
	_, err = c.Write(c.message(4, 0, 0, "after"))
	require.NoError(t, err)
	assert.Equal(t, "after", string(s.nextMsg(t)[0]), "the SUBSCRIBE command never reached the program")
}
