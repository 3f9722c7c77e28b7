package curve

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// ZMTP frame flags (outer, on the wire and towards zmq4).
const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

// Flags of the first plaintext byte of a CURVE MESSAGE (libzmq's bits).
const (
	innerMore    = 0x01
	innerCommand = 0x02
)

// Sizes of the CURVE commands (whole frame bodies, name included).
const (
	helloSize       = 200
	welcomeSize     = 168
	initiateMinSize = 257
	readyMinSize    = 30
	messageMinSize  = 33 // name 8 + nonce 8 + MAC 16 + flags 1
	messageOverhead = 8 + 8 + boxOverhead + 1

	boxOverhead  = 16
	cookieSize   = 16 + 80 // nonce + secretbox(C' + s')
	vouchBoxSize = 64 + boxOverhead
)

// Command names with their length prefix.
const (
	nameHello    = "\x05HELLO"
	nameWelcome  = "\x07WELCOME"
	nameInitiate = "\x08INITIATE"
	nameReady    = "\x05READY"
	nameMessage  = "\x07MESSAGE"
	nameError    = "\x05ERROR"
	namePing     = "\x04PING"
	namePong     = "\x04PONG"
)

// appendFrameHeader appends a ZMTP 3 frame header for a body of size bytes,
// adding the LONG flag when needed.
func appendFrameHeader(dst []byte, flags byte, size int) []byte {
	if size > 255 {
		dst = append(dst, flags|flagLong)
		return binary.BigEndian.AppendUint64(dst, uint64(size))
	}
	return append(dst, flags&^flagLong, byte(size))
}

// frameHeaderSize returns the size of the header of a body of size bytes.
func frameHeaderSize(size int) int {
	if size > 255 {
		return 9
	}
	return 2
}

// readFrame reads one ZMTP frame, refusing (before allocating) a declared
// size above limit. Used during the handshake.
func readFrame(r io.Reader, limit int64) (flags byte, body []byte, err error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return 0, nil, err
	}
	flags = hdr[0]
	size := uint64(hdr[1])
	if flags&flagLong != 0 {
		if _, err := io.ReadFull(r, hdr[2:9]); err != nil {
			return 0, nil, err
		}
		size = binary.BigEndian.Uint64(hdr[1:9])
	}
	if size > uint64(limit) {
		return flags, nil, fmt.Errorf("%w: peer declared %d bytes, limit %d", ErrFrameTooLarge, size, limit)
	}
	body = make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return flags, nil, err
	}
	return flags, body, nil
}

// writeCommand writes body as one command frame.
func writeCommand(w io.Writer, body []byte) error {
	buf := appendFrameHeader(make([]byte, 0, 9+len(body)), flagCommand, len(body))
	buf = append(buf, body...)
	_, err := w.Write(buf)
	return err
}

// commandName returns the name of a command body (without its length
// prefix) for error messages.
func commandName(body []byte) string {
	if len(body) == 0 || int(body[0]) > len(body)-1 {
		return "(malformed)"
	}
	return fmt.Sprintf("%q", body[1:1+int(body[0])])
}

// helloCommand is RFC 26 HELLO: version, 72 bytes of padding, the client's
// transient public key C', a short nonce and Box[64 zeros](C'->S).
type helloCommand struct {
	ClientTransient [32]byte
	Nonce           uint64
	Box             [80]byte
}

func (h *helloCommand) append(dst []byte) []byte {
	dst = append(dst, nameHello...)
	dst = append(dst, 1, 0)                // version 1.0
	dst = append(dst, make([]byte, 72)...) // anti-amplification padding
	dst = append(dst, h.ClientTransient[:]...)
	dst = binary.BigEndian.AppendUint64(dst, h.Nonce)
	return append(dst, h.Box[:]...)
}

func decodeHello(body []byte) (h helloCommand, err error) {
	if !bytes.HasPrefix(body, []byte(nameHello)) {
		return h, malformed("expected HELLO, got %s", commandName(body))
	}
	if len(body) != helloSize {
		return h, malformed("HELLO of %d bytes, want %d", len(body), helloSize)
	}
	if body[6] != 1 {
		return h, malformed("HELLO version %d.%d, want 1.0", body[6], body[7])
	}
	p := body[8+72:]
	copy(h.ClientTransient[:], p[:32])
	h.Nonce = binary.BigEndian.Uint64(p[32:40])
	copy(h.Box[:], p[40:])
	return h, nil
}

// welcomeCommand is RFC 26 WELCOME: a long nonce and
// Box[S' + cookie](S->C').
type welcomeCommand struct {
	Nonce [16]byte
	Box   [144]byte
}

func (w *welcomeCommand) append(dst []byte) []byte {
	dst = append(dst, nameWelcome...)
	dst = append(dst, w.Nonce[:]...)
	return append(dst, w.Box[:]...)
}

func decodeWelcome(body []byte) (w welcomeCommand, err error) {
	if !bytes.HasPrefix(body, []byte(nameWelcome)) {
		return w, malformed("expected WELCOME, got %s", commandName(body))
	}
	if len(body) != welcomeSize {
		return w, malformed("WELCOME of %d bytes, want %d", len(body), welcomeSize)
	}
	copy(w.Nonce[:], body[8:24])
	copy(w.Box[:], body[24:])
	return w, nil
}

// initiateCommand is RFC 26 INITIATE: the cookie, a short nonce and
// Box[C + vouch nonce + vouch + metadata](C'->S').
type initiateCommand struct {
	Cookie [cookieSize]byte
	Nonce  uint64
	Box    []byte
}

func (c *initiateCommand) append(dst []byte) []byte {
	dst = append(dst, nameInitiate...)
	dst = append(dst, c.Cookie[:]...)
	dst = binary.BigEndian.AppendUint64(dst, c.Nonce)
	return append(dst, c.Box...)
}

func decodeInitiate(body []byte) (c initiateCommand, err error) {
	if !bytes.HasPrefix(body, []byte(nameInitiate)) {
		return c, malformed("expected INITIATE, got %s", commandName(body))
	}
	if len(body) < initiateMinSize {
		return c, malformed("INITIATE of %d bytes, want at least %d", len(body), initiateMinSize)
	}
	copy(c.Cookie[:], body[9:9+cookieSize])
	c.Nonce = binary.BigEndian.Uint64(body[9+cookieSize:])
	c.Box = body[9+cookieSize+8:]
	return c, nil
}

// shortNonceCommand is READY or MESSAGE: name, short nonce, box.
type shortNonceCommand struct {
	Nonce uint64
	Box   []byte
}

func (c *shortNonceCommand) append(dst []byte, name string) []byte {
	dst = append(dst, name...)
	dst = binary.BigEndian.AppendUint64(dst, c.Nonce)
	return append(dst, c.Box...)
}

func decodeReady(body []byte) (c shortNonceCommand, err error) {
	if !bytes.HasPrefix(body, []byte(nameReady)) {
		return c, malformed("expected READY, got %s", commandName(body))
	}
	if len(body) < readyMinSize {
		return c, malformed("READY of %d bytes, want at least %d", len(body), readyMinSize)
	}
	c.Nonce = binary.BigEndian.Uint64(body[6:14])
	c.Box = body[14:]
	return c, nil
}

func decodeMessage(body []byte) (c shortNonceCommand, err error) {
	if !bytes.HasPrefix(body, []byte(nameMessage)) {
		return c, malformed("expected MESSAGE, got %s", commandName(body))
	}
	if len(body) < messageMinSize {
		return c, malformed("MESSAGE of %d bytes, want at least %d", len(body), messageMinSize)
	}
	c.Nonce = binary.BigEndian.Uint64(body[8:16])
	c.Box = body[16:]
	return c, nil
}

// errorCommand is ZMTP ERROR: a reason of up to 255 bytes.
type errorCommand struct{ Reason string }

func (e *errorCommand) append(dst []byte) []byte {
	r := e.Reason
	if len(r) > 255 {
		r = r[:255]
	}
	dst = append(dst, nameError...)
	dst = append(dst, byte(len(r)))
	return append(dst, r...)
}

func decodeError(body []byte) (e errorCommand, err error) {
	if !bytes.HasPrefix(body, []byte(nameError)) {
		return e, malformed("expected ERROR, got %s", commandName(body))
	}
	if len(body) < 7 || int(body[6]) != len(body)-7 {
		return e, malformed("ERROR of %d bytes with bad reason length", len(body))
	}
	e.Reason = string(body[7:])
	return e, nil
}

// isError reports whether a command body is an ERROR command.
func isError(body []byte) bool { return bytes.HasPrefix(body, []byte(nameError)) }

// property is one ZMTP metadata property.
type property struct{ Name, Value string }

// metadata is a list of ZMTP metadata properties in wire order.
type metadata []property

// Get returns the value of the property name, compared case-insensitively.
func (m metadata) Get(name string) (string, bool) {
	for _, p := range m {
		if strings.EqualFold(p.Name, name) {
			return p.Value, true
		}
	}
	return "", false
}

// appendMetadata appends the properties in ZMTP wire form: name length
// (1 byte), name, value length (4 bytes big-endian), value.
func appendMetadata(dst []byte, m metadata) []byte {
	for _, p := range m {
		dst = append(dst, byte(len(p.Name)))
		dst = append(dst, p.Name...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(p.Value)))
		dst = append(dst, p.Value...)
	}
	return dst
}

// parseMetadata decodes ZMTP metadata. Names must be 1 to 255 bytes of
// ZMTP name characters; values must fit in the input.
func parseMetadata(b []byte) (metadata, error) {
	var m metadata
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 {
			return nil, malformed("metadata property with empty name")
		}
		if len(b) < 1+n+4 {
			return nil, malformed("truncated metadata property")
		}
		name := b[1 : 1+n]
		for _, c := range name {
			if !isNameChar(c) {
				return nil, malformed("metadata name %q has invalid character", name)
			}
		}
		vlen := uint64(binary.BigEndian.Uint32(b[1+n:]))
		rest := b[1+n+4:]
		if vlen > uint64(len(rest)) {
			return nil, malformed("metadata value of %d bytes, only %d left", vlen, len(rest))
		}
		m = append(m, property{Name: string(name), Value: string(rest[:vlen])})
		b = rest[vlen:]
	}
	return m, nil
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '+'
}
