//go:build unix

package curve

import (
	"errors"
	"net"
	"syscall"
)

// nbWriter writes to a socket without waiting for it. One is made per conn
// (its callback is bound once, so that a write allocates nothing).
type nbWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

// newNBWriter returns nil for a conn that is not a socket.
func newNBWriter(conn net.Conn) *nbWriter {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &nbWriter{rc: rc}
	w.fn = w.write
	return w
}

// write is the RawConn callback: it writes until the socket is full and
// never asks to wait.
func (w *nbWriter) write(fd uintptr) bool {
	for w.n < len(w.b) {
		k, err := syscall.Write(int(fd), w.b[w.n:])
		if k > 0 {
			w.n += k
		}
		if errors.Is(err, syscall.EINTR) || (err == nil && k > 0) {
			continue
		}
		if err != nil && !errors.Is(err, syscall.EAGAIN) {
			w.err = err
		}
		break
	}
	return true
}

// tryWrite writes as much of b as the socket takes at once. ok is false
// when the conn has no non-blocking write (w is nil).
func (w *nbWriter) tryWrite(b []byte) (n int, ok bool, err error) {
	if w == nil {
		return 0, false, nil
	}
	w.b, w.n, w.err = b, 0, nil
	if err := w.rc.Write(w.fn); err != nil {
		w.err = err
	}
	n, err = w.n, w.err
	w.b = nil
	return n, true, err
}
