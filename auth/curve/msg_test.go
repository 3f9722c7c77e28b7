package curve

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/capbus/capbus/keys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConn_ReadMsgAndWriteMsgRoundTripEveryShape sends messages of many
// shapes (empty frames, frames around the read buffer and stream
// thresholds, a 1 MiB frame) from a message-level dealer to a message-level
// echo and back.
func TestConn_ReadMsgAndWriteMsgRoundTripEveryShape(t *testing.T) {
	client := newKeyPair(t)
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "u"})))
	c := dealer(t, s.endpoint(), client, s.kp.Public)

	shapes := [][][]byte{
		{{}},
		{[]byte("VIP1"), {}, []byte("id"), []byte("RPC"), bytes.Repeat([]byte("p"), 200)},
		{bytes.Repeat([]byte("a"), 511), bytes.Repeat([]byte("b"), 512), bytes.Repeat([]byte("c"), 513)},
		{bytes.Repeat([]byte("x"), readBufferSize-40), bytes.Repeat([]byte("y"), readBufferSize+1)},
		{bytes.Repeat([]byte("z"), 1<<20)},
	}
	for i, frames := range shapes {
		require.NoError(t, c.WriteMsg(frames), "shape %d", i)
		got, err := c.ReadMsg()
		require.NoError(t, err, "shape %d", i)
		require.Equal(t, len(frames), len(got), "shape %d", i)
		for j := range frames {
			require.True(t, bytes.Equal(frames[j], got[j]), "shape %d frame %d", i, j)
		}
	}
}

func TestConn_ReadMsgFailsAMessageOverTheLimitsAndClosesTheConn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   string
	}{
		{"frames", [][]byte{{1}, {2}, {3}, {4}, {5}}, "more than 4 frames"},
		{"bytes", [][]byte{make([]byte, 60), make([]byte, 60)}, "more than 100 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := newKeyPair(t)
			got := make(chan error, 1)
			s := startServer(t, func(c *Conn, _ chan<- [][]byte) {
				defer c.Close()
				// The first message is within the limits.
				if _, err := c.ReadMsg(); err != nil {
					got <- fmt.Errorf("first message: %w", err)
					return
				}
				_, err := c.ReadMsg()
				got <- err
			}, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "u"})), WithMessageLimits(4, 100))
			c := dealer(t, s.endpoint(), client, s.kp.Public)
			require.NoError(t, c.WriteMsg([][]byte{[]byte("ok")}))
			require.NoError(t, c.WriteMsg(tc.frames))
			var err error
			select {
			case err = <-got:
			case <-time.After(testTimeout):
				t.Fatal("the server's ReadMsg did not return")
			}
			require.ErrorIs(t, err, ErrMessageTooLarge)
			assert.Contains(t, err.Error(), tc.want)
			_, err = c.ReadMsg()
			require.Error(t, err, "the server closed the conn")
		})
	}
}

func TestConn_WriteMsgRefusesAnOversizedFrameAndWritesNothing(t *testing.T) {
	client := newKeyPair(t)
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "u"})))
	c := dealer(t, s.endpoint(), client, s.kp.Public, WithMaxFrameSize(64))
	err := c.WriteMsg([][]byte{[]byte("fine"), make([]byte, 65)})
	require.ErrorIs(t, err, ErrFrameTooLarge)
	require.ErrorIs(t, c.WriteMsg(nil), ErrMalformed)
	// The conn still works: nothing of the refused message was sent.
	require.NoError(t, c.WriteMsg([][]byte{[]byte("next")}))
	got, err := c.ReadMsg()
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("next")}, normalize(got))
}

func TestConn_WriteMsgDoesNotAllocateAndReadMsgAllocatesTwicePerMessage(t *testing.T) {
	var s session
	_, err := rand.Read(s.key[:])
	require.NoError(t, err)
	wire := new(bytes.Buffer)
	o := newOptions("ROUTER", nil)
	client := newConn(pipeConn{buf: wire}, nil, s, &o, false)
	server := newConn(pipeConn{}, bufio.NewReader(wire), s, &o, true)

	msg := [][]byte{[]byte("VIP1"), []byte("user"), []byte("0123456789abcdef"), []byte("RPC"), make([]byte, 200)}
	write := func() {
		require.NoError(t, client.WriteMsg(msg))
	}
	write()
	wire.Grow(64 << 10)
	assert.Zero(t, testing.AllocsPerRun(100, write), "WriteMsg allocations per message")

	read := func() {
		_, err := server.ReadMsg()
		require.NoError(t, err)
	}
	read()
	// The message's buffer and its frame slice, both handed to the caller.
	assert.LessOrEqual(t, testing.AllocsPerRun(100, read), 2.0, "ReadMsg allocations per message")
}

func FuzzConnReadMsg(f *testing.F) {
	var s session
	s.key = [32]byte{1, 2, 3}
	s.recvNonce = 2
	mb := newMsgBox(&s.key, prefixMessageC)
	seal := func(nonce uint64, outer, inner byte, data string) []byte {
		cmd := shortNonceCommand{Nonce: nonce, Box: mb.seal(nil, append([]byte{inner}, data...), nonce)}
		body := cmd.append(nil, nameMessage)
		return append(appendFrameHeader(nil, outer, len(body)), body...)
	}
	f.Add(seal(3, 0, 0, "hello"))
	f.Add(append(seal(3, 0, innerMore, "a"), seal(4, 0, 0, "b")...))
	f.Add(append(seal(3, 0, innerMore, "a"), append(seal(4, 0, innerCommand, "\x04PING\x00\x01ctx"), seal(5, 0, 0, "b")...)...))
	f.Add(append(seal(3, 0, 0, "x"), seal(3, 0, 0, "x")...))
	f.Add(seal(3, flagMore, 0, "x"))
	f.Add([]byte{flagLong, 0x40, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		o := newOptions("ROUTER", []Option{WithMaxFrameSize(4096), WithMessageLimits(8, 8192)})
		c := newConn(pipeConn{buf: new(bytes.Buffer)}, bufio.NewReaderSize(bytes.NewReader(stream), 64), s, &o, true)
		for range 64 {
			frames, err := c.readMsg()
			if err != nil {
				return
			}
			require.LessOrEqual(t, len(frames), 8)
			require.LessOrEqual(t, cap(c.rbody), 4096+messageOverhead)
		}
	})
}

// TestConn_ReadMsgBufferFollowsTheMessageSizes checks the size ReadMsg
// allocates for the next message: about that of messages of one size, at
// once that of a larger one, and back down by an eighth per smaller one.
func TestConn_ReadMsgBufferFollowsTheMessageSizes(t *testing.T) {
	client := newKeyPair(t)
	s := startEchoServer(t, WithAuthenticator(allowKeys(map[keys.Key]string{client.Public: "u"})))
	c := dealer(t, s.endpoint(), client, s.kp.Public)
	echo := func(frames ...[]byte) {
		t.Helper()
		require.NoError(t, c.WriteMsg(frames))
		_, err := c.ReadMsg()
		require.NoError(t, err)
	}
	vip := [][]byte{[]byte("VIP1"), {}, []byte("id"), []byte("RPC"), make([]byte, 200)}
	for range 40 {
		echo(vip...)
	}
	size := 4 + 0 + 2 + 3 + 200 + len(vip) // data and a flags byte per frame
	assert.Equal(t, size, c.msgHint, "after messages of one size")
	echo(make([]byte, 5000))
	assert.Equal(t, 5001, c.msgHint, "after a larger message")
	echo(vip...)
	assert.Equal(t, 5001-5001/8, c.msgHint, "after a smaller one")
}
