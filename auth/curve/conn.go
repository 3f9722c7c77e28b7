package curve

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// readBufferSize is the size of the buffer reads from the socket go through.
const readBufferSize = 8 << 10

// keepBuffer is the largest scratch buffer a Conn keeps between messages;
// larger ones (for big frames) are released after use.
const keepBuffer = 1 << 20

// msgBufferHint is the initial size of the buffer ReadMsg decrypts a
// message into. It then follows the sizes of the messages read: a larger
// message raises it at once, each smaller one lowers it by an eighth.
const msgBufferHint = 256

// ErrMessageTooLarge is returned (wrapped) by ReadMsg when the peer sends a
// message with more frames or more bytes than WithMessageLimits allows.
var ErrMessageTooLarge = errors.New("curve: message exceeds the per-message limits")

// Conn is a CURVE-secured ZMTP connection that carries whole multipart
// messages: ReadMsg returns the decrypted frames of the next message the
// peer sent, WriteMsg and WriteMsgs seal messages and write them with one
// write. PINGs from the peer are answered with PONG by ReadMsg and never
// returned.
//
// A Conn is safe for one reading goroutine and any number of writing
// goroutines (writes are serialized; ReadMsg's PONG takes its turn among
// them). Close is idempotent and safe to call concurrently. Every read or
// write error closes the conn.
type Conn struct {
	raw      net.Conn
	br       *bufio.Reader
	log      *slog.Logger
	peer     PeerInfo
	maxFrame int64
	sendBox  msgBox // seals our MESSAGEs
	recvBox  msgBox // opens the peer's MESSAGEs

	// The reader's state; only ReadMsg's goroutine touches it.
	rerr         error
	recvNonce    uint64
	rbody        []byte // a MESSAGE body too large for the read buffer
	rpeeked      int    // bytes of the read buffer the current body spans
	rends        []int  // end offset of each frame read so far
	msgHint      int    // capacity of the next message buffer
	maxMsgFrames int
	maxMsgBytes  int64
	pings        atomic.Int64 // PINGs answered, for tests
	wr           *waitReader  // under br; nil in tests over other readers

	wmu       sync.Mutex
	werr      error
	sendNonce uint64
	wout      []byte // sealed MESSAGEs being written, or left unwritten by TryWriteMsgs
	nb        *nbWriter

	closeOnce sync.Once
	closed    atomic.Bool
	onClose   func()
}

// newConn wraps a raw connection whose CURVE handshake produced s. server
// says which side we are.
func newConn(raw net.Conn, br *bufio.Reader, s session, o *options, server bool) *Conn {
	c := &Conn{
		raw:          raw,
		br:           br,
		log:          o.logger,
		peer:         s.peer,
		maxFrame:     o.maxFrameSize,
		maxMsgFrames: o.maxMsgFrames,
		msgHint:      msgBufferHint,
		maxMsgBytes:  o.maxMsgBytes,
		sendBox:      newMsgBox(&s.key, prefixMessageC),
		recvBox:      newMsgBox(&s.key, prefixMessageS),
		recvNonce:    s.recvNonce,
		sendNonce:    s.sendNonce,
		nb:           newNBWriter(raw),
	}
	if server {
		c.sendBox, c.recvBox = c.recvBox, c.sendBox
	}
	return c
}

// Peer describes the other side. On the server: the client's long-term
// key, user id, address and claimed metadata. On the client: the server's
// key, address and metadata.
func (c *Conn) Peer() PeerInfo { return c.peer }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying conn. A
// deadline that interrupts a read or a write ends the conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying conn. A
// deadline that interrupts a write ends the conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// Close closes the connection. Later calls do nothing and return nil.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		err = c.raw.Close()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

// ReadMsg reads the next message from the peer: the decrypted frames of
// one multipart ZMTP message. The frames share one buffer, which belongs
// to the caller. Only one goroutine may call ReadMsg at a time.
//
// PINGs are answered and other ZMTP commands are dropped. Every error
// closes the conn; a message over the limits of WithMessageLimits fails
// with ErrMessageTooLarge as soon as the limit is passed.
func (c *Conn) ReadMsg() (frames [][]byte, err error) {
	if c.rerr != nil {
		return nil, c.rerr
	}
	defer func() {
		if p := recover(); p != nil {
			err = errPanic(p)
		}
		if err != nil {
			c.rerr = err
			c.fail("read", err)
		}
	}()
	return c.readMsg()
}

func (c *Conn) readMsg() ([][]byte, error) {
	buf := make([]byte, 0, c.msgHint)
	c.rends = c.rends[:0]
	var total int64
	// The keystream of the MESSAGEs that were in the read buffer together
	// with the one being opened (exact nonces from their headers), at most
	// eight; this call's only (see batch).
	var z batch
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
		ks := z.keystream(msg.Nonce)
		if ks == nil && c.recvBox.wide && c.rpeeked > 0 {
			c.fillBuffered(&z)
			ks = z.keystream(msg.Nonce)
		}
		if c.maxMsgBytes > 0 && total+int64(len(msg.Box)-boxOverhead-1) > c.maxMsgBytes {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrMessageTooLarge, c.maxMsgBytes)
		}
		start := len(buf)
		out, ok := c.recvBox.openWith(buf, msg.Box, msg.Nonce, ks)
		if !ok {
			return nil, fmt.Errorf("%w: MESSAGE %d", ErrDecrypt, msg.Nonce)
		}
		c.recvNonce = msg.Nonce
		c.doneMessageBody()
		inner := out[start]
		if inner&innerCommand != 0 {
			// PING, PONG, SUBSCRIBE, CANCEL: never part of a message.
			c.command(out[start+1:])
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

// command handles a command the peer sent inside a MESSAGE: a PING is
// answered with a PONG carrying its context (at most 16 bytes); anything
// else is dropped.
func (c *Conn) command(cmd []byte) {
	switch {
	case hasName(cmd, namePing):
		var context []byte
		if len(cmd) >= len(namePing)+2 {
			context = cmd[len(namePing)+2:]
		}
		context = context[:min(len(context), 16)]
		c.pings.Add(1)
		pong := make([]byte, 0, len(namePong)+len(context))
		pong = append(append(pong, namePong...), context...)
		// The PONG waits its turn behind a write in progress: a peer that
		// pings without reading only holds up its own conn.
		_ = c.write(innerCommand, [][]byte{pong})
	case hasName(cmd, namePong):
	default:
		c.log.Debug("curve: dropped command from peer", "command", commandName(cmd), "remote", c.peer.RemoteAddr)
	}
}

func hasName(cmd []byte, name string) bool {
	return len(cmd) >= len(name) && string(cmd[:len(name)]) == name
}

// nextMessageBody returns the body of the next MESSAGE command on the wire.
// It points into the read buffer when it fits there (valid until
// doneMessageBody), else into c.rbody.
func (c *Conn) nextMessageBody() ([]byte, error) {
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
	if _, err := io.ReadFull(c.br, c.rbody); err != nil {
		return nil, eof(err)
	}
	return c.rbody, nil
}

// fillBuffered sets z to the keystream of the MESSAGE commands complete in
// the read buffer, at most eight, from the one nextMessageBody returned
// (it is still there) on, as long as each has a nonce above the one
// before; their nonces and lengths are those of their headers. A command
// that is anything else ends the list; ReadMsg then handles it as usual.
func (c *Conn) fillBuffered(z *batch) {
	b, _ := c.br.Peek(c.br.Buffered())
	var ns [8]uint64
	var lens [8]int
	k, after := 0, c.recvNonce
	for k < 8 && len(b) >= 2 {
		hsz, size := 2, uint64(b[1])
		if b[0] == flagLong && len(b) >= 9 {
			hsz, size = 9, binary.BigEndian.Uint64(b[1:9])
		} else if b[0] != 0 {
			break
		}
		if size < messageMinSize || size > uint64(len(b)-hsz) {
			break
		}
		body := b[hsz : hsz+int(size)]
		n := binary.BigEndian.Uint64(body[8:16])
		if string(body[:8]) != nameMessage || n <= after {
			break
		}
		ns[k], lens[k] = n, len(body)-16-boxOverhead
		k, after, b = k+1, n, b[hsz+len(body):]
	}
	c.recvBox.fill(z, ns[:k], lens[:k])
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
	if errors.Is(err, io.EOF) {
		return err
	}
	return err
}

// WriteMsg seals frames as one multipart message and writes it to the
// socket with one write. The frames are only read. A frame longer than the
// maximum frame size fails the call and nothing is written.
func (c *Conn) WriteMsg(frames [][]byte) error {
	return c.write(0, frames)
}

// WriteMsgs seals several messages, in order, and writes them all with one
// write: a writer that finds several messages queued sends them together.
// Anything TryWriteMsgs left unwritten goes first; msgs may be empty.
func (c *Conn) WriteMsgs(msgs [][][]byte) error {
	for _, m := range msgs {
		if err := checkFrames(m, c.maxFrame); err != nil {
			return err
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writable(); err != nil {
		return err
	}
	for _, m := range msgs {
		if err := c.seal(0, m); err != nil {
			return c.writeFailed(err)
		}
	}
	return c.flush()
}

// TryWriteMsgs is WriteMsgs for a caller that must not wait for the peer:
// it seals msgs, in order, after anything left unwritten, and writes what
// the socket takes at once. It reports whether everything is written; what
// is not stays in the conn and goes out first with the next write, for
// example a WriteMsgs with no message. Over a connection that is not a
// socket it writes nothing and reports false. When another write holds the
// conn (the reader's answer to a PING may be waiting for the peer), it
// seals nothing and returns ErrWriteInProgress.
func (c *Conn) TryWriteMsgs(msgs [][][]byte) (bool, error) {
	for _, m := range msgs {
		if err := checkFrames(m, c.maxFrame); err != nil {
			return false, err
		}
	}
	if !c.wmu.TryLock() {
		return false, ErrWriteInProgress
	}
	defer c.wmu.Unlock()
	if err := c.writable(); err != nil {
		return false, err
	}
	for _, m := range msgs {
		if err := c.seal(0, m); err != nil {
			return false, c.writeFailed(err)
		}
	}
	n, ok, err := c.nb.tryWrite(c.wout)
	switch {
	case err != nil:
		return false, c.writeFailed(err)
	case !ok:
		return false, nil
	case n < len(c.wout):
		c.wout = c.wout[:copy(c.wout, c.wout[n:])]
		return false, nil
	}
	c.resetOut()
	return true, nil
}

// write seals frames as one message (with inner flags for a command) and
// writes it.
func (c *Conn) write(inner byte, frames [][]byte) error {
	if err := checkFrames(frames, c.maxFrame); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writable(); err != nil {
		return err
	}
	if err := c.seal(inner, frames); err != nil {
		return c.writeFailed(err)
	}
	return c.flush()
}

func checkFrames(frames [][]byte, max int64) error {
	if len(frames) == 0 {
		return malformed("a message with no frames")
	}
	for i, f := range frames {
		if int64(len(f)) > max {
			return fmt.Errorf("%w: frame %d of %d bytes, limit %d", ErrFrameTooLarge, i, len(f), max)
		}
	}
	return nil
}

// writable reports why nothing can be written; c.wmu is held.
func (c *Conn) writable() error {
	if c.werr != nil {
		return c.werr
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	return nil
}

// seal appends frames to c.wout as one MESSAGE command each, the last one
// without MORE; inner adds flags to every frame (innerCommand for a
// command). c.wmu is held.
func (c *Conn) seal(inner byte, frames [][]byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errPanic(p)
		}
	}()
	if c.sendNonce > math.MaxUint64-uint64(len(frames))-1 {
		return fmt.Errorf("%w: nonce space exhausted", ErrBadNonce)
	}
	need := len(c.wout)
	for _, f := range frames {
		need += 9 + messageOverhead + len(f)
	}
	if cap(c.wout) < need {
		c.wout = append(make([]byte, 0, need+len(c.wout)), c.wout...)
	}
	var z batch // the keystream of the next frames (at most eight); see batch
	last := len(frames) - 1
	for i, f := range frames {
		flags := inner
		if i < last {
			flags |= innerMore
		}
		c.sendNonce++
		var ks []byte
		if c.sendBox.wide {
			if i%8 == 0 {
				c.sendBox.fillFrames(&z, c.sendNonce, frames[i:min(i+8, len(frames))])
			}
			ks = z.keystream(c.sendNonce)
		}
		c.wout = appendFrameHeader(c.wout, 0, 16+1+len(f)+boxOverhead)
		c.wout = append(c.wout, nameMessage...)
		c.wout = binary.BigEndian.AppendUint64(c.wout, c.sendNonce)
		c.wout = c.sendBox.sealFrameWith(c.wout, flags, f, c.sendNonce, ks)
	}
	return nil
}

// flush writes the sealed MESSAGEs with one write. c.wmu is held.
func (c *Conn) flush() error {
	if len(c.wout) == 0 {
		return nil
	}
	_, err := c.raw.Write(c.wout)
	c.resetOut()
	if err != nil {
		return c.writeFailed(err)
	}
	return nil
}

// resetOut empties c.wout once written; a buffer grown beyond keepBuffer is
// let go. c.wmu is held.
func (c *Conn) resetOut() {
	if cap(c.wout) > keepBuffer {
		c.wout = nil
	} else {
		c.wout = c.wout[:0]
	}
}

// writeFailed records a write error, which ends the conn. c.wmu is held.
func (c *Conn) writeFailed(err error) error {
	c.werr = err
	c.wout = c.wout[:0]
	c.fail("write", err)
	return err
}

// fail logs why the conn ends and closes it.
func (c *Conn) fail(op string, err error) {
	if c.closed.Load() || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		c.log.Debug("curve: connection closed", "op", op, "remote", c.peer.RemoteAddr, "reason", err)
	} else {
		c.log.Debug("curve: closing connection", "op", op, "remote", c.peer.RemoteAddr,
			"peer_key", c.peer.PublicKey.Z85(), "reason", err)
	}
	c.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// BeforeRead sets f, which the goroutine calling ReadMsg runs each time it
// has used up what it received and is about to read from the socket
// (where it may wait): a reader that holds back work while it handles a
// burst of messages (the replies or forwards of the burst, for one write)
// releases it there, also when the burst ends inside a message. Set it
// before the first ReadMsg; f must not call ReadMsg.
func (c *Conn) BeforeRead(f func()) {
	if c.wr != nil {
		c.wr.wait = f
	}
}

// waitReader is the reader under a conn's read buffer: it runs the conn's
// BeforeRead function before each read from the socket. (Running it only
// before a read that would wait, found with a read that does not wait
// first, made bigger batches and fewer calls per second: A/B in
// docs/BENCHMARKS.md.)
type waitReader struct {
	r    io.Reader
	wait func()
}

func (w *waitReader) Read(p []byte) (int, error) {
	if w.wait != nil {
		w.wait()
	}
	return w.r.Read(p)
}
