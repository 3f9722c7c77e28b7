package curve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pipeConn is a net.Conn whose writes go to a buffer.
type pipeConn struct {
	net.Conn
	buf *bytes.Buffer
}

func (p pipeConn) Write(b []byte) (int, error) { return p.buf.Write(b) }
func (p pipeConn) Close() error                { return nil }

func TestConn_SealAndOpenDoNotAllocatePerMessage(t *testing.T) {
	var s session
	_, err := rand.Read(s.key[:])
	require.NoError(t, err)
	s.peer.SocketType = "DEALER"
	wire := new(bytes.Buffer)
	o := newOptions("ROUTER", nil)
	client := newConn(pipeConn{buf: wire}, nil, s, &o, false)
	server := newConn(pipeConn{}, bufio.NewReader(wire), s, &o, true)

	// zmq4's own greeting and READY are swallowed; the server's reader
	// first gets the synthesized NULL greeting and READY.
	g := greeting("NULL", false)
	ready := append([]byte{flagCommand, 22}, "\x05READY\x0bSocket-Type\x00\x00\x00\x00"...)
	_, err = client.Write(append(g[:], ready...))
	require.NoError(t, err)
	assert.Zero(t, wire.Len(), "greeting and READY never reach the wire")
	pre := make([]byte, 64+2+6+64)
	n, err := server.Read(pre)
	require.NoError(t, err)
	assert.Equal(t, "NULL", string(trimZeros(pre[12:32])))
	assert.Contains(t, string(pre[:n]), "Identity")

	frame := append([]byte{0, 200}, make([]byte, 200)...)
	got := make([]byte, len(frame))
	roundTrip := func() {
		if _, err := client.Write(frame[:2]); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Write(frame[2:]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(server, got); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	require.Equal(t, frame, got)
	wire.Grow(4096)
	assert.Zero(t, testing.AllocsPerRun(100, roundTrip), "allocations per message")
}

func TestListener_CloseStopsHandshakesInProgress(t *testing.T) {
	s, rec, _ := hostileServer(t)
	stalled := dialRaw(t, s.l.Addr().String())
	_, err := stalled.Write([]byte{0xff}) // a byte of greeting, then nothing
	require.NoError(t, err)
	rec.waitFor(t, "handshake started", attr("remote", stalled.LocalAddr().String()))
	closed := make(chan error, 1)
	go func() { closed <- s.l.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(testTimeout):
		t.Fatal("Close blocked on a stalled handshake")
	}
	expectClosed(t, stalled)
	rec.waitFor(t, "handshake failed", "context canceled")
	_, err = s.l.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = Dial(context.Background(), s.endpoint(), newKeyPair(t), s.kp.Public, WithHandshakeTimeout(time.Second))
	require.Error(t, err)
}
