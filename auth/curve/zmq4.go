package curve

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"time"
)

// NewZMQ4Conn adapts c for github.com/go-zeromq/zmq4: it returns c as the
// byte stream of a ZMTP 3 peer using the NULL mechanism, so that
//
//	zc, err := zmq4.Open(curve.NewZMQ4Conn(c), null.Security(), zmq4.Dealer, "", false, nil)
//
// runs zmq4's ZMTP session over the CURVE connection: every message zmq4
// writes is sealed by c.WriteMsg, every message c.ReadMsg returns is handed
// to zmq4 as plain frames. The greeting and READY zmq4 exchanges are
// synthesized here, the CURVE handshake having replaced them on the wire.
// On the server side the Identity zmq4 sees for the peer is a random
// routing id, never the identity the client claimed, so two clients
// claiming one identity cannot receive each other's replies.
//
// Do not use c directly once it is adapted.
func NewZMQ4Conn(c *Conn) net.Conn {
	identity := c.peer.Identity
	if c.peer.UserID != "" { // the server side: the Authenticator admitted the client
		var b [8]byte
		_, _ = rand.Read(b[:])
		identity = hex.EncodeToString(b[:])
	}
	g := greeting("NULL", c.peer.UserID == "")
	ready := appendMetadata([]byte(nameReady), metadata{
		{"Socket-Type", c.peer.SocketType},
		{"Identity", identity},
	})
	z := &zmq4Conn{c: c, greet: greetingSize}
	z.rpend = append(g[:], appendFrameHeader(nil, flagCommand, len(ready))...)
	z.rpend = append(z.rpend, ready...)
	return z
}

// zmq4Conn translates between zmq4's ZMTP byte stream and c's messages.
type zmq4Conn struct {
	c *Conn

	rmu   sync.Mutex
	rpend []byte // plaintext ZMTP bytes for zmq4
	rpos  int

	wmu    sync.Mutex
	greet  int    // bytes of zmq4's greeting still to swallow
	ready  bool   // zmq4's READY has been swallowed
	buf    []byte // bytes of the frame being parsed
	frames [][]byte
}

// Read hands zmq4 the synthesized greeting and READY, then each message
// read from c as ZMTP frames.
func (z *zmq4Conn) Read(p []byte) (int, error) {
	z.rmu.Lock()
	defer z.rmu.Unlock()
	for z.rpos >= len(z.rpend) {
		frames, err := z.c.ReadMsg()
		if err != nil {
			return 0, err
		}
		z.rpend, z.rpos = z.rpend[:0], 0
		for i, f := range frames {
			var flags byte
			if i < len(frames)-1 {
				flags = flagMore
			}
			z.rpend = append(appendFrameHeader(z.rpend, flags, len(f)), f...)
		}
	}
	n := copy(p, z.rpend[z.rpos:])
	z.rpos += n
	return n, nil
}

// Write takes the byte stream zmq4 writes: it swallows the greeting and
// the READY and writes each complete message with c.WriteMsg.
func (z *zmq4Conn) Write(p []byte) (int, error) {
	z.wmu.Lock()
	defer z.wmu.Unlock()
	n := len(p)
	if k := min(z.greet, len(p)); k > 0 {
		z.greet -= k
		p = p[k:]
	}
	z.buf = append(z.buf, p...)
	for {
		if len(z.buf) < 2 {
			return n, nil
		}
		flags, hsz, size := z.buf[0], 2, uint64(z.buf[1])
		if flags&flagLong != 0 {
			if len(z.buf) < 9 {
				return n, nil
			}
			hsz, size = 9, binary.BigEndian.Uint64(z.buf[1:9])
		}
		if size > uint64(z.c.maxFrame) {
			err := fmt.Errorf("%w: zmq4 wrote a %d-byte frame, limit %d", ErrFrameTooLarge, size, z.c.maxFrame)
			z.c.Close()
			return 0, err
		}
		if uint64(len(z.buf)-hsz) < size {
			return n, nil
		}
		body := z.buf[hsz : hsz+int(size)]
		switch {
		case flags&flagCommand != 0:
			z.ready = true // zmq4's NULL READY, or a command zmq4 sends later: dropped
		case !z.ready:
			z.c.Close()
			return 0, malformed("zmq4 wrote a message before its READY")
		default:
			z.frames = append(z.frames, append([]byte(nil), body...))
			if flags&flagMore == 0 {
				err := z.c.WriteMsg(z.frames)
				z.frames = z.frames[:0]
				if err != nil {
					return 0, err
				}
			}
		}
		z.buf = z.buf[:copy(z.buf, z.buf[hsz+int(size):])]
	}
}

func (z *zmq4Conn) Close() error                       { return z.c.Close() }
func (z *zmq4Conn) LocalAddr() net.Addr                { return z.c.raw.LocalAddr() }
func (z *zmq4Conn) RemoteAddr() net.Addr               { return z.c.raw.RemoteAddr() }
func (z *zmq4Conn) SetDeadline(t time.Time) error      { return z.c.raw.SetDeadline(t) }
func (z *zmq4Conn) SetReadDeadline(t time.Time) error  { return z.c.raw.SetReadDeadline(t) }
func (z *zmq4Conn) SetWriteDeadline(t time.Time) error { return z.c.raw.SetWriteDeadline(t) }
