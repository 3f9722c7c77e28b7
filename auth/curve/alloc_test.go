package curve

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pipeConn is a net.Conn whose writes go to a buffer.
type pipeConn struct {
	net.Conn
	buf *bytes.Buffer
}

func (p pipeConn) Write(b []byte) (int, error) { return p.buf.Write(b) }
func (p pipeConn) Close() error                { return nil }

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
