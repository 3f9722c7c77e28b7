//go:build !unix

package curve

import "net"

// nbWriter has no non-blocking write on this platform: the caller's later
// blocking write sends everything.
type nbWriter struct{}

func newNBWriter(net.Conn) *nbWriter { return nil }

func (w *nbWriter) tryWrite([]byte) (int, bool, error) { return 0, false, nil }
