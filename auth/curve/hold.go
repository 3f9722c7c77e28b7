package curve

import (
	"net"
)

// QueueMsg seals frames as one multipart message into the conn's output
// buffer without writing it to the socket: a later TryFlush, Uncork or
// WriteMsg writes it, after everything queued before it. It lets a program
// seal messages for a conn from another goroutine than the conn's writer
// and decide later, once, when to write them. Held reports how much is
// waiting.
func (c *Conn) QueueMsg(frames [][]byte) error {
	return c.writeMsg(frames, false)
}

// Held returns the number of sealed bytes waiting in the output buffer.
func (c *Conn) Held() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return len(c.wout)
}

// TryFlush writes what the output buffer holds without waiting for the
// socket: it reports true when everything was written, and false when the
// socket took only part of it (or the platform offers no non-blocking
// write), in which case the rest stays held for a later Uncork or WriteMsg,
// which wait. An error means the conn failed and is closed.
func (c *Conn) TryFlush() (bool, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return false, c.werr
	}
	if c.closed.Load() {
		return false, net.ErrClosed
	}
	if c.pong != nil {
		if err := c.seal(c.pong); err != nil {
			_, err = c.writeFailed(0, err)
			return false, err
		}
		c.pong = nil
	}
	if len(c.wout) == 0 {
		return true, nil
	}
	if c.nbw == nil {
		c.nbw = newNBWriter(c.raw)
	}
	n, _, err := c.nbw.tryWrite(c.wout)
	if err != nil {
		_, err = c.writeFailed(0, err)
		return false, err
	}
	if n == len(c.wout) {
		if cap(c.wout) > keepBuffer {
			c.wout = nil
		} else {
			c.wout = c.wout[:0]
		}
		return true, nil
	}
	c.wout = c.wout[:copy(c.wout, c.wout[n:])]
	return false, nil
}

// OnReadWait sets a function that ReadMsg calls, on the reading goroutine,
// each time it is about to wait for more bytes from the socket: when every
// message already received has been returned. A program that holds
// messages (QueueMsg) while it handles a burst of input can write them
// there, once per burst. Set it before the first ReadMsg.
func (c *Conn) OnReadWait(f func()) {
	c.rmu.Lock()
	c.onReadWait = f
	c.rmu.Unlock()
}

// readWait calls the OnReadWait function if reading n bytes would wait for
// the socket.
func (c *Conn) readWait(n int) {
	if c.onReadWait != nil && c.br.Buffered() < n {
		c.onReadWait()
	}
}
