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

// plainReserve is the room kept before a decrypted payload so that the ZMTP
// header handed to zmq4 can be written in place (9 header bytes end where
// the payload starts; the inner flags byte sits just before the payload).
const plainReserve = 11

// Conn is a CURVE-secured connection that presents a NULL-mechanism ZMTP
// peer to zmq4: after Listen/Accept or Dial, pass it to zmq4.Open with
// null.Security(). Each frame zmq4 writes is sealed as one CURVE MESSAGE, and
// each whole message is written to the socket with one write; each MESSAGE
// received is handed to zmq4 as a plain frame, and PINGs are answered with
// PONG without reaching zmq4.
//
// A Conn is safe for one reading and one writing goroutine at a time. Close
// is idempotent and safe to call concurrently. A read or write that fails
// for any reason other than a deadline closes the conn; a deadline may
// interrupt a write in the middle of a message, which also ends the conn.
type Conn struct {
	raw      net.Conn
	br       *bufio.Reader
	log      *slog.Logger
	peer     PeerInfo
	maxFrame int64
	sendBox  msgBox // seals our MESSAGEs
	recvBox  msgBox // opens the peer's MESSAGEs

	rmu       sync.Mutex
	rerr      error
	recvNonce uint64
	rpend     []byte // plaintext ZMTP bytes for zmq4
	rpos      int
	rhdr      [9]byte
	rhdrN     int
	rbody     []byte
	rbodyN    int
	rplain    []byte
	pings     atomic.Int64 // PINGs answered, for tests

	// ReadMsg's state, guarded by rmu.
	rpeeked      int   // bytes of the read buffer the current body spans
	rends        []int // end offset of each frame read so far
	msgHint      int   // capacity of the next message buffer (msgBufferHint)
	maxMsgFrames int
	maxMsgBytes  int64
	onReadWait   func()

	wmu       sync.Mutex
	werr      error
	sendNonce uint64
	wgreet    int  // bytes of zmq4's greeting still to swallow
	wready    bool // zmq4's READY has been swallowed
	whdr      [9]byte
	whdrN     int
	inBody    bool
	wflags    byte
	wsize     int
	wplain    []byte // inner flags byte + frame body
	wout      []byte // sealed MESSAGEs not yet written
	pong      []byte // deferred PONG plaintext, if any

	closeOnce sync.Once
	closed    atomic.Bool
	onClose   func()
	corked    bool      // guarded by wmu: hold complete messages until Uncork
	nbw       *nbWriter // guarded by wmu: TryFlush's non-blocking writes
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
		wgreet:       greetingSize,
	}
	if server {
		c.sendBox, c.recvBox = c.recvBox, c.sendBox
	}
	// What zmq4 reads first: a NULL greeting and a READY describing the peer.
	identity := s.peer.Identity
	if server {
		identity = s.peer.RoutingID // never the identity the client claimed
	}
	g := greeting("NULL", !server)
	ready := appendMetadata([]byte(nameReady), metadata{
		{"Socket-Type", s.peer.SocketType},
		{"Identity", identity},
	})
	c.rpend = append(g[:], appendFrameHeader(nil, flagCommand, len(ready))...)
	c.rpend = append(c.rpend, ready...)
	return c
}

// Peer describes the other side. On the server: the client's routing id,
// long-term key, user id, address and claimed metadata. On the client: the
// server's key, address and metadata.
func (c *Conn) Peer() PeerInfo { return c.peer }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying conn.
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

// Read hands zmq4 the plaintext ZMTP stream: the synthesized greeting and
// READY, then one plain frame per MESSAGE received.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for c.rpos >= len(c.rpend) {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readMessageSafely(); err != nil {
			if isTimeout(err) {
				return 0, err
			}
			c.rerr = err
			c.fail("read", err)
			return 0, err
		}
	}
	n := copy(p, c.rpend[c.rpos:])
	c.rpos += n
	return n, nil
}

// fill reads into buf[*have:] until buf is full; it can resume after a
// deadline.
func (c *Conn) fill(buf []byte, have *int) error {
	for *have < len(buf) {
		n, err := c.br.Read(buf[*have:])
		*have += n
		if err != nil && *have < len(buf) {
			if errors.Is(err, io.EOF) && *have > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readMessageSafely is readMessage, turning a panic into an error.
func (c *Conn) readMessageSafely() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errPanic(p)
		}
	}()
	return c.readMessage()
}

// readMessage reads one MESSAGE from the wire and makes its frame pending
// for zmq4 (or answers it, for a PING).
func (c *Conn) readMessage() error {
	if err := c.fill(c.rhdr[:2], &c.rhdrN); err != nil {
		return err
	}
	flags := c.rhdr[0]
	if flags&^flagLong != 0 {
		return malformed("MESSAGE frame with outer flags %#x (only LONG is allowed)", flags)
	}
	size := uint64(c.rhdr[1])
	if flags&flagLong != 0 {
		if err := c.fill(c.rhdr[:9], &c.rhdrN); err != nil {
			return err
		}
		size = binary.BigEndian.Uint64(c.rhdr[1:9])
	}
	if size > uint64(c.maxFrame)+messageOverhead {
		return fmt.Errorf("%w: peer declared a %d-byte MESSAGE, limit %d", ErrFrameTooLarge, size, c.maxFrame)
	}
	if size < messageMinSize {
		return malformed("MESSAGE of %d bytes, want at least %d", size, messageMinSize)
	}
	if uint64(cap(c.rbody)) < size {
		c.rbody = make([]byte, size)
	}
	c.rbody = c.rbody[:size]
	if err := c.fill(c.rbody, &c.rbodyN); err != nil {
		return err
	}
	c.rhdrN, c.rbodyN = 0, 0
	err := c.openMessage(c.rbody)
	if cap(c.rbody) > keepBuffer {
		c.rbody = nil
	}
	return err
}

// openMessage decrypts one MESSAGE command body into c.rpend.
func (c *Conn) openMessage(body []byte) error {
	msg, err := decodeMessage(body)
	if err != nil {
		return err
	}
	if msg.Nonce <= c.recvNonce {
		return fmt.Errorf("%w: MESSAGE nonce %d after %d", ErrBadNonce, msg.Nonce, c.recvNonce)
	}
	if need := plainReserve + len(msg.Box) - boxOverhead; cap(c.rplain) < need {
		c.rplain = make([]byte, plainReserve, need)
	}
	out, ok := c.recvBox.open(c.rplain[:plainReserve], msg.Box, msg.Nonce)
	if !ok {
		return fmt.Errorf("%w: MESSAGE %d", ErrDecrypt, msg.Nonce)
	}
	c.recvNonce = msg.Nonce
	if cap(out) <= keepBuffer {
		c.rplain = out
	} else {
		c.rplain = nil // release a big buffer once zmq4 has read it
	}
	inner := out[plainReserve]
	start := plainReserve + 1
	var zflags byte
	if inner&innerMore != 0 {
		zflags |= flagMore
	}
	if inner&innerCommand != 0 {
		var ok bool
		if start, ok = c.handleCommand(out, start); !ok {
			return nil // consumed here (PING, PONG, unknown command)
		}
		zflags = 0 // translated into a message
	}
	size := len(out) - start
	hsz := frameHeaderSize(size)
	appendFrameHeader(out[start-hsz:start-hsz], zflags, size)
	c.rpend, c.rpos = out[start-hsz:], 0
	return nil
}

// handleCommand deals with a command the peer sent inside a MESSAGE.
// PING is answered with PONG; SUBSCRIBE and CANCEL (ZMTP 3.1) are turned
// into ZMTP 3.0 subscription messages for zmq4 (returning where the message
// starts and true); anything else is dropped.
func (c *Conn) handleCommand(out []byte, start int) (int, bool) {
	cmd := out[start:]
	switch {
	case hasName(cmd, namePing):
		var context []byte
		if len(cmd) >= len(namePing)+2 {
			context = cmd[len(namePing)+2:]
		}
		if len(context) > 16 {
			context = context[:16]
		}
		c.pings.Add(1)
		c.sendPong(context)
	case hasName(cmd, namePong):
	case hasName(cmd, "\x09SUBSCRIBE"):
		start += len("\x09SUBSCRIBE") - 1
		out[start] = 1
		return start, true
	case hasName(cmd, "\x06CANCEL"):
		start += len("\x06CANCEL") - 1
		out[start] = 0
		return start, true
	default:
		c.log.Debug("curve: dropped command from peer", "command", commandName(cmd), "remote", c.peer.RemoteAddr)
	}
	return 0, false
}

func hasName(cmd []byte, name string) bool {
	return len(cmd) >= len(name) && string(cmd[:len(name)]) == name
}

// Write takes the ZMTP byte stream zmq4 writes: it swallows the greeting and
// the READY, seals each later frame as one MESSAGE, and writes the sealed
// frames of a message to the socket at once when its last frame (no MORE)
// is complete.
func (c *Conn) Write(p []byte) (n int, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			n, err = c.writeFailed(0, errPanic(r))
		}
	}()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n = len(p)
	for len(p) > 0 {
		if c.wgreet > 0 {
			k := min(c.wgreet, len(p))
			c.wgreet -= k
			p = p[k:]
			continue
		}
		if !c.inBody {
			c.whdr[c.whdrN] = p[0]
			c.whdrN++
			p = p[1:]
			need := 2
			if c.whdr[0]&flagLong != 0 {
				need = 9
			}
			if c.whdrN < need {
				continue
			}
			size := uint64(c.whdr[1])
			if need == 9 {
				size = binary.BigEndian.Uint64(c.whdr[1:9])
			}
			if size > uint64(c.maxFrame) {
				return c.writeFailed(n-len(p), fmt.Errorf("%w: zmq4 wrote a %d-byte frame, limit %d", ErrFrameTooLarge, size, c.maxFrame))
			}
			c.whdrN, c.inBody = 0, true
			c.wflags, c.wsize = c.whdr[0], int(size)
			var inner byte
			if c.wflags&flagMore != 0 {
				inner |= innerMore
			}
			if c.wflags&flagCommand != 0 {
				inner = innerCommand
			}
			if cap(c.wplain) < 1+c.wsize {
				c.wplain = make([]byte, 0, 1+c.wsize)
			}
			if need := len(c.wout) + 9 + messageOverhead + c.wsize; cap(c.wout) < need {
				c.wout = append(make([]byte, 0, need+len(c.wout)), c.wout...)
			}
			c.wplain = append(c.wplain[:0], inner)
		} else {
			k := min(c.wsize-(len(c.wplain)-1), len(p))
			c.wplain = append(c.wplain, p[:k]...)
			p = p[k:]
		}
		if len(c.wplain)-1 == c.wsize {
			if err := c.frameDone(); err != nil {
				return c.writeFailed(n-len(p), err)
			}
		}
	}
	return n, nil
}

func (c *Conn) writeFailed(n int, err error) (int, error) {
	c.werr = err
	c.fail("write", err)
	return n, err
}

// frameDone handles a complete frame written by zmq4.
func (c *Conn) frameDone() error {
	c.inBody = false
	if !c.wready {
		if c.wflags&flagCommand == 0 {
			return malformed("zmq4 wrote a message before its READY")
		}
		c.wready = true // zmq4's NULL READY: the CURVE handshake replaced it
		if c.pong != nil {
			return c.flush()
		}
		return nil
	}
	if err := c.seal(c.wplain); err != nil {
		return err
	}
	if cap(c.wplain) > keepBuffer {
		c.wplain = nil
	}
	if c.wflags&flagMore != 0 || (c.corked && len(c.wout) < corkLimit) {
		return nil
	}
	return c.flush()
}

// corkLimit bounds what a corked conn holds before it writes anyway.
const corkLimit = 256 << 10

// Cork makes the conn hold complete messages in its buffer instead of
// writing each to the socket when it ends, until Uncork (or until 256 KiB
// are held). A writer that has several messages queued corks, hands them to
// zmq4 one by one, and uncorks: they reach the socket in one write. Without
// Cork every message is written as soon as its last frame is complete.
func (c *Conn) Cork() {
	c.wmu.Lock()
	c.corked = true
	c.wmu.Unlock()
}

// Uncork writes everything Cork held, with one write, and stops holding.
func (c *Conn) Uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.corked = false
	if c.werr != nil {
		return c.werr
	}
	if len(c.wout) == 0 && c.pong == nil || c.inBody || c.whdrN > 0 || !c.wready {
		return nil
	}
	if err := c.flush(); err != nil {
		_, err = c.writeFailed(0, err)
		return err
	}
	return nil
}

// seal appends plain (inner flags + data) to c.wout as one MESSAGE.
func (c *Conn) seal(plain []byte) error { return c.appendMessage(plain[0], plain[1:]) }

// appendMessage appends one frame, its inner flags byte and data, to c.wout
// as one MESSAGE command.
func (c *Conn) appendMessage(inner byte, data []byte) error {
	if c.sendNonce == math.MaxUint64 {
		return fmt.Errorf("%w: nonce space exhausted", ErrBadNonce)
	}
	c.sendNonce++
	c.wout = appendFrameHeader(c.wout, 0, 16+1+len(data)+boxOverhead)
	c.wout = append(c.wout, nameMessage...)
	c.wout = binary.BigEndian.AppendUint64(c.wout, c.sendNonce)
	c.wout = c.sendBox.sealFrame(c.wout, inner, data, c.sendNonce)
	return nil
}

// flush writes the pending MESSAGEs (and a deferred PONG) with one write.
func (c *Conn) flush() error {
	if c.pong != nil {
		if err := c.seal(c.pong); err != nil {
			return err
		}
		c.pong = nil
	}
	_, err := c.raw.Write(c.wout)
	if cap(c.wout) > keepBuffer {
		c.wout = nil
	} else {
		c.wout = c.wout[:0]
	}
	return err
}

// sendPong answers a PING. In the middle of a message written by zmq4 the
// PONG waits for the message's end, so it never splits a multipart message.
func (c *Conn) sendPong(context []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil || c.closed.Load() {
		return
	}
	c.pong = append(append(append(make([]byte, 0, 1+len(namePong)+len(context)), innerCommand), namePong...), context...)
	if c.inBody || c.whdrN > 0 || len(c.wout) > 0 || !c.wready {
		return
	}
	if err := c.flush(); err != nil {
		c.werr = err
		c.fail("write PONG", err)
	}
}

// fail logs why the conn ends and closes it.
func (c *Conn) fail(op string, err error) {
	if c.closed.Load() || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		c.log.Debug("curve: connection closed", "op", op, "remote", c.peer.RemoteAddr, "reason", err)
	} else {
		c.log.Warn("curve: closing connection", "op", op, "remote", c.peer.RemoteAddr,
			"peer_key", c.peer.PublicKey.Z85(), "routing_id", c.peer.RoutingID, "reason", err)
	}
	c.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Buffered reports how many bytes have been received and not yet read.
func (c *Conn) Buffered() int { return c.br.Buffered() }
