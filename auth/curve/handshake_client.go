package curve

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/capbus/capbus/keys"
	"golang.org/x/crypto/nacl/box"
)

// clientHandshake runs the client side of the CURVE handshake on rw,
// reading through r.
func clientHandshake(rw io.Writer, r io.Reader, kp keys.Pair, serverKey keys.Key, o *options) (s session, err error) {
	s.peer.PublicKey = serverKey
	if err := writeGreeting(rw, false); err != nil {
		return s, fmt.Errorf("write greeting: %w", err)
	}
	if err := readGreeting(r); err != nil {
		return s, err
	}

	// HELLO from a fresh transient key pair.
	tPub, tSec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return s, err
	}
	server := (*[32]byte)(&serverKey)
	hello := helloCommand{ClientTransient: *tPub, Nonce: 1}
	nonce := shortNonce(prefixHello, hello.Nonce)
	box.Seal(hello.Box[:0], make([]byte, 64), &nonce, server, tSec)
	if err := writeCommand(rw, hello.append(nil)); err != nil {
		return s, fmt.Errorf("write HELLO: %w", err)
	}

	// WELCOME (or ERROR, or a close if the server key is wrong).
	body, err := readCommand(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return s, fmt.Errorf("%w (%w)", ErrServerKey, err)
		}
		return s, fmt.Errorf("read WELCOME: %w", err)
	}
	if isError(body) {
		return s, refused(body)
	}
	welcome, err := decodeWelcome(body)
	if err != nil {
		return s, err
	}
	wn := longNonce(prefixWelcome, welcome.Nonce[:])
	plain, ok := box.Open(nil, welcome.Box[:], &wn, server, tSec)
	if !ok {
		return s, fmt.Errorf("%w: WELCOME", ErrDecrypt)
	}
	var serverTransient [32]byte
	copy(serverTransient[:], plain[:32])

	// INITIATE: cookie, our long-term key, the vouch and our metadata.
	vouchNonce, err := random16()
	if err != nil {
		return s, err
	}
	vn := longNonce(prefixVouch, vouchNonce[:])
	vouch := box.Seal(nil, append(append(make([]byte, 0, 64), tPub[:]...), serverKey[:]...), &vn, &serverTransient, (*[32]byte)(&kp.Secret))
	md := metadata{{"Socket-Type", o.socketType}}
	if o.identity != "" {
		md = append(md, property{"Identity", o.identity})
	}
	iplain := append(append(append(make([]byte, 0, 256), kp.Public[:]...), vouchNonce[:]...), vouch...)
	iplain = appendMetadata(iplain, md)
	box.Precompute(&s.key, &serverTransient, tSec)
	ini := initiateCommand{Nonce: 2}
	copy(ini.Cookie[:], plain[32:])
	nonce = shortNonce(prefixInitiate, ini.Nonce)
	ini.Box = box.SealAfterPrecomputation(nil, iplain, &nonce, &s.key)
	if err := writeCommand(rw, ini.append(nil)); err != nil {
		return s, fmt.Errorf("write INITIATE: %w", err)
	}
	s.sendNonce = ini.Nonce

	// READY or ERROR.
	if body, err = readCommand(r); err != nil {
		return s, fmt.Errorf("read READY: %w", err)
	}
	if isError(body) {
		return s, refused(body)
	}
	ready, err := decodeReady(body)
	if err != nil {
		return s, err
	}
	nonce = shortNonce(prefixReady, ready.Nonce)
	plain, ok = box.OpenAfterPrecomputation(nil, ready.Box, &nonce, &s.key)
	if !ok {
		return s, fmt.Errorf("%w: READY", ErrDecrypt)
	}
	m, err := parseMetadata(plain)
	if err != nil {
		return s, err
	}
	s.peer.SocketType, _ = m.Get("Socket-Type")
	s.peer.Identity, _ = m.Get("Identity")
	if err := checkSocketTypes(o.socketType, s.peer.SocketType); err != nil {
		return s, err
	}
	s.recvNonce = ready.Nonce
	return s, nil
}

func refused(body []byte) error {
	e, err := decodeError(body)
	if err != nil {
		return err
	}
	return &RefusedError{Reason: e.Reason}
}
