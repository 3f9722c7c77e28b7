package curve

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
)

// ErrMessageTooLarge is returned (wrapped) by ReadMsg when the peer sends a
// message with more frames or more bytes than WithMessageLimits allows.
var ErrMessageTooLarge = errors.New("curve: message exceeds the per-message limits")

// errMixed is returned when ReadMsg or WriteMsg is used while zmq4 is in the
// middle of its own greeting, READY or message on the same conn.
var errMixed = errors.New("curve: ReadMsg/WriteMsg used before zmq4.Open finished or in the middle of a zmq4 message")

// ReadMsg reads the next message from the peer: the frames of one multipart
// ZMTP message, decrypted. It is the message-level alternative to handing
// the conn to zmq4 for every message: once zmq4.Open has exchanged the
// greeting and READY over the conn, a program may read each message with
// ReadMsg instead of zmq4's RecvMsg. It does no per-frame allocation: the
// frames returned share one buffer, which belongs to the caller.
//
// PINGs are answered and other ZMTP commands are dropped, as with zmq4.
// Every error closes the conn (a read deadline, too: the message being read
// would be lost); a message over the limits of WithMessageLimits fails with
// ErrMessageTooLarge before it is all read.
func (c *Conn) ReadMsg() ([][]byte, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return nil, c.rerr
	}
	if c.rpos < len(c.rpend) || c.rhdrN > 0 || c.rbodyN > 0 {
		return nil, errMixed
	}
	frames, err := c.readMsgSafely()
	if err != nil {
		c.rerr = err
		c.fail("read", err)
		return nil, err
	}
	return frames, nil
}

// readMsgSafely is readMsg, turning a panic into an error.
func (c *Conn) readMsgSafely() (frames [][]byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errPanic(p)
		}
	}()
	return c.readMsg()
}

// msgBufferHint is the initial size of the buffer ReadMsg decrypts a
// message into. It then follows the sizes of the messages read: a larger
// message raises it at once, each smaller one lowers it by an eighth, so
// that a conn whose messages have about the same size allocates about
// that size, and one whose sizes alternate rarely grows a buffer twice.
const msgBufferHint = 256

func (c *Conn) readMsg() ([][]byte, error) {
	buf := make([]byte, 0, c.msgHint)
	c.rends = c.rends[:0]
	var total int64
	for {
		body, err := c.nextMessageBody()
		if err != nil {
			return nil, err
		}
		msg, err := decodeMessage(body)
		if err != nil {
			return nil, err
		}
		if msg.Nonce <= c.recvNonce {
			return nil, fmt.Errorf("%w: MESSAGE nonce %d after %d", ErrBadNonce, msg.Nonce, c.recvNonce)
		}
		start := len(buf)
		out, ok := c.recvBox.open(buf, msg.Box, msg.Nonce)
		if !ok {
			return nil, fmt.Errorf("%w: MESSAGE %d", ErrDecrypt, msg.Nonce)
		}
		c.recvNonce = msg.Nonce
		c.doneMessageBody()
		inner := out[start]
		if inner&innerCommand != 0 {
			// PING, PONG, SUBSCRIBE, CANCEL: never part of a message.
			cmd := out[start+1:]
			if hasName(cmd, namePing) {
				var context []byte
				if len(cmd) >= len(namePing)+2 {
					context = cmd[len(namePing)+2:]
				}
				c.pings.Add(1)
				c.sendPong(context[:min(len(context), 16)])
			} else if !hasName(cmd, namePong) {
				c.log.Debug("curve: dropped command from peer", "command", commandName(cmd), "remote", c.peer.RemoteAddr)
			}
			buf = out[:start]
			continue
		}
		buf = out
		c.rends = append(c.rends, len(buf))
		total += int64(len(buf) - start - 1)
		if c.maxMsgFrames > 0 && len(c.rends) > c.maxMsgFrames {
			return nil, fmt.Errorf("%w: more than %d frames", ErrMessageTooLarge, c.maxMsgFrames)
		}
		if c.maxMsgBytes > 0 && total > c.maxMsgBytes {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrMessageTooLarge, c.maxMsgBytes)
		}
		if inner&innerMore == 0 {
			break
		}
	}
	frames := make([][]byte, len(c.rends))
	start := 0
	for i, end := range c.rends {
		frames[i] = buf[start+1 : end : end] // skip the inner flags byte
		start = end
	}
	c.msgHint = min(max(len(buf), c.msgHint-c.msgHint/8, 64), keepBuffer)
	return frames, nil
}

// nextMessageBody returns the body of the next MESSAGE command on the wire.
// It points into the read buffer when it fits there (valid until
// doneMessageBody), else into c.rbody.
func (c *Conn) nextMessageBody() ([]byte, error) {
	c.readWait(2)
	hdr, err := c.br.Peek(2)
	if err != nil {
		return nil, eof(err)
	}
	flags := hdr[0]
	if flags&^flagLong != 0 {
		return nil, malformed("MESSAGE frame with outer flags %#x (only LONG is allowed)", flags)
	}
	hsz, size := 2, uint64(hdr[1])
	if flags&flagLong != 0 {
		hsz = 9
		c.readWait(9)
		if hdr, err = c.br.Peek(9); err != nil {
			return nil, eof(err)
		}
		size = binary.BigEndian.Uint64(hdr[1:9])
	}
	if size > uint64(c.maxFrame)+messageOverhead {
		return nil, fmt.Errorf("%w: peer declared a %d-byte MESSAGE, limit %d", ErrFrameTooLarge, size, c.maxFrame)
	}
	if size < messageMinSize {
		return nil, malformed("MESSAGE of %d bytes, want at least %d", size, messageMinSize)
	}
	if n := hsz + int(size); n <= c.br.Size() {
		c.readWait(n)
		whole, err := c.br.Peek(n)
		if err != nil {
			return nil, eof(err)
		}
		c.rpeeked = n
		return whole[hsz:], nil
	}
	if _, err := c.br.Discard(hsz); err != nil {
		return nil, eof(err)
	}
	if uint64(cap(c.rbody)) < size {
		c.rbody = make([]byte, size)
	}
	c.rbody = c.rbody[:size]
	c.readWait(len(c.rbody))
	n := 0
	if err := c.fill(c.rbody, &n); err != nil {
		return nil, eof(err)
	}
	return c.rbody, nil
}

// doneMessageBody releases the body nextMessageBody returned.
func (c *Conn) doneMessageBody() {
	if c.rpeeked > 0 {
		_, _ = c.br.Discard(c.rpeeked)
		c.rpeeked = 0
	} else if cap(c.rbody) > keepBuffer {
		c.rbody = nil
	}
}

// eof reports a stream that ends inside a MESSAGE as io.ErrUnexpectedEOF.
func eof(err error) error {
	if errors.Is(err, bufio.ErrBufferFull) {
		return malformed("MESSAGE header larger than the read buffer")
	}
	return err
}

// WriteMsg seals frames as one multipart message and writes it to the
// socket with one write (or holds it, while corked). It is the
// message-level alternative to zmq4's SendMsg on this conn, usable once
// zmq4.Open has returned; the frames are only read. A frame longer than the
// maximum frame size fails the call and nothing is written.
func (c *Conn) WriteMsg(frames [][]byte) error {
	return c.writeMsg(frames, true)
}

// writeMsg seals frames into c.wout and, if flush and not corked, writes.
func (c *Conn) writeMsg(frames [][]byte, flush bool) (err error) {
	if len(frames) == 0 {
		return malformed("WriteMsg with no frames")
	}
	for i, f := range frames {
		if int64(len(f)) > c.maxFrame {
			return fmt.Errorf("%w: frame %d of %d bytes, limit %d", ErrFrameTooLarge, i, len(f), c.maxFrame)
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			_, err = c.writeFailed(0, errPanic(r))
		}
	}()
	if c.werr != nil {
		return c.werr
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	if !c.wready || c.inBody || c.whdrN > 0 {
		return errMixed
	}
	if c.sendNonce > math.MaxUint64-uint64(len(frames))-1 {
		_, err = c.writeFailed(0, fmt.Errorf("%w: nonce space exhausted", ErrBadNonce))
		return err
	}
	need := len(c.wout)
	for _, f := range frames {
		need += 9 + messageOverhead + len(f)
	}
	if cap(c.wout) < need {
		c.wout = append(make([]byte, 0, need+len(c.wout)), c.wout...)
	}
	last := len(frames) - 1
	for i, f := range frames {
		var inner byte
		if i < last {
			inner = innerMore
		}
		if err := c.appendMessage(inner, f); err != nil {
			_, err = c.writeFailed(0, err)
			return err
		}
	}
	if !flush || c.corked && len(c.wout) < corkLimit {
		return nil
	}
	if err := c.flush(); err != nil {
		_, err = c.writeFailed(0, err)
		return err
	}
	return nil
}
