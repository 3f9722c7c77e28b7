//go:build unix

package curve

import (
	"errors"
	"net"
	"syscall"
)

// nbWriter writes to a socket without waiting. It is made once per conn,
// so that a write allocates nothing.
type nbWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

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

func (w *nbWriter) write(fd uintptr) bool {
	for w.n < len(w.b) {
		k, e := syscall.Write(int(fd), w.b[w.n:])
		if k > 0 {
			w.n += k
		}
		switch {
		case e == nil && k > 0, errors.Is(e, syscall.EINTR):
			continue
		case e == nil, errors.Is(e, syscall.EAGAIN):
			// The socket is full: the rest waits for a blocking write.
		default:
			w.err = e
		}
		break
	}
	return true // never wait for the socket
}

// tryWrite writes as much of b as the socket takes without waiting. ok is
// false when the conn offers no non-blocking write.
func (w *nbWriter) tryWrite(b []byte) (n int, ok bool, err error) {
	if w == nil {
		return 0, false, nil
	}
	w.b, w.n, w.err = b, 0, nil
	err = w.rc.Write(w.fn)
	n = w.n
	if err == nil {
		err = w.err
	}
	w.b = nil
	return n, true, err
}
