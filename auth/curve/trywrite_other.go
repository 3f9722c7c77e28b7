//go:build !unix

package curve

import "net"

// nbWriter is absent where the platform has no non-blocking socket write:
// TryWriteMsgs then leaves everything to the next WriteMsgs.
type nbWriter struct{}

func newNBWriter(net.Conn) *nbWriter { return nil }

func (w *nbWriter) tryWrite([]byte) (int, bool, error) { return 0, false, nil }
