package curve

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/capbus/capbus/keys"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/salsa20/salsa"
)

// maxHandshakeCommand bounds every command read before the handshake is
// complete (INITIATE carries metadata, the largest).
const maxHandshakeCommand = 64 << 10

// session is the outcome of a handshake: the precomputed transient key and
// the short-nonce counters, which continue into the MESSAGE phase.
type session struct {
	key       [32]byte
	sendNonce uint64 // last nonce we used
	recvNonce uint64 // last nonce the peer used
	peer      PeerInfo
}

// readCommand reads one frame of the handshake and requires the COMMAND flag.
func readCommand(r io.Reader) ([]byte, error) {
	flags, body, err := readFrame(r, maxHandshakeCommand)
	if err != nil {
		return nil, err
	}
	if flags&^flagLong != flagCommand {
		return nil, malformed("handshake frame with flags %#x, want a command", flags)
	}
	return body, nil
}

// serverHandshake runs the server side of the CURVE handshake on rw,
// reading through r. On error, s.peer holds what was learnt about the
// client (its key once the vouch was verified) for logging.
//
// busy makes it answer the HELLO with ERROR "300" (try again later) before
// any key agreement: the client's host is in its failure backoff.
func serverHandshake(ctx context.Context, rw io.Writer, r io.Reader, kp keys.Pair, o *options, remote string, busy bool) (s session, err error) {
	s.peer.RemoteAddr = remote
	if err := writeGreeting(rw, true); err != nil {
		return s, fmt.Errorf("write greeting: %w", err)
	}
	if err := readGreeting(r); err != nil {
		return s, err
	}

	// HELLO: prove that the client knows our public key.
	body, err := readCommand(r)
	if err != nil {
		return s, fmt.Errorf("read HELLO: %w", err)
	}
	hello, err := decodeHello(body)
	if err != nil {
		return s, err
	}
	if busy {
		errCmd := errorCommand{Reason: reasonBusy}
		if werr := writeCommand(rw, errCmd.append(nil)); werr != nil {
			return s, fmt.Errorf("%w: host in its failure backoff; write ERROR: %w", ErrBusy, werr)
		}
		return s, fmt.Errorf("%w: host in its failure backoff", ErrBusy)
	}
	// A client makes a new transient key for every connection: a HELLO
	// with a key seen before is a replay, refused before the key agreement.
	if o.seen != nil && o.seen.contains(hello.ClientTransient) {
		return s, fmt.Errorf("%w: client transient key %s seen before", ErrReplay, keys.Key(hello.ClientTransient).Z85())
	}
	// Four scalar multiplications in all: HELLO's (reused for WELCOME),
	// the transient key's, and the two of INITIATE (the connection's key and
	// the vouch's), each done once (boxKey).
	serverPriv := o.serverPriv
	if serverPriv == nil {
		if serverPriv, err = ecdh.X25519().NewPrivateKey(kp.Secret[:]); err != nil {
			return s, err
		}
	}
	helloKey, err := boxKey(serverPriv, hello.ClientTransient[:])
	if err != nil {
		return s, malformed("HELLO: client transient key: %v", err)
	}
	nonce := shortNonce(prefixHello, hello.Nonce)
	var zeros [64]byte
	plain, ok := box.OpenAfterPrecomputation(zeros[:0], hello.Box[:], &nonce, &helloKey)
	if !ok || len(plain) != 64 {
		return s, fmt.Errorf("%w: HELLO (the client does not use this server's public key)", ErrDecrypt)
	}
	if o.seen != nil {
		o.seen.add(hello.ClientTransient)
	}

	// WELCOME: our transient key and a cookie holding both transient keys.
	tPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return s, err
	}
	tPub := tPriv.PublicKey().Bytes()
	var cookieKey [32]byte
	if _, err := rand.Read(cookieKey[:]); err != nil {
		return s, err
	}
	cookieNonce, err := random16()
	if err != nil {
		return s, err
	}
	cookiePlain := append(append(make([]byte, 0, 64), hello.ClientTransient[:]...), tPriv.Bytes()...)
	cn := longNonce(prefixCookie, cookieNonce[:])
	cookie := secretbox.Seal(append(make([]byte, 0, cookieSize), cookieNonce[:]...), cookiePlain, &cn, &cookieKey)

	var welcome welcomeCommand
	if welcome.Nonce, err = random16(); err != nil {
		return s, err
	}
	wn := longNonce(prefixWelcome, welcome.Nonce[:])
	box.SealAfterPrecomputation(welcome.Box[:0], append(append(make([]byte, 0, 128), tPub...), cookie...), &wn, &helloKey)
	if err := writeCommand(rw, welcome.append(nil)); err != nil {
		return s, fmt.Errorf("write WELCOME: %w", err)
	}

	// INITIATE: the cookie, then the client's long-term key and its vouch.
	if body, err = readCommand(r); err != nil {
		return s, fmt.Errorf("read INITIATE: %w", err)
	}
	ini, err := decodeInitiate(body)
	if err != nil {
		return s, err
	}
	cn = longNonce(prefixCookie, ini.Cookie[:16])
	opened, ok := secretbox.Open(nil, ini.Cookie[16:], &cn, &cookieKey)
	if !ok || !bytes.Equal(opened, cookiePlain) {
		return s, fmt.Errorf("%w: INITIATE cookie", ErrDecrypt)
	}
	if ini.Nonce <= hello.Nonce {
		return s, fmt.Errorf("%w: INITIATE nonce %d after HELLO nonce %d", ErrBadNonce, ini.Nonce, hello.Nonce)
	}
	if s.key, err = boxKey(tPriv, hello.ClientTransient[:]); err != nil {
		return s, malformed("HELLO: client transient key: %v", err)
	}
	nonce = shortNonce(prefixInitiate, ini.Nonce)
	plain, ok = box.OpenAfterPrecomputation(nil, ini.Box, &nonce, &s.key)
	if !ok {
		return s, fmt.Errorf("%w: INITIATE", ErrDecrypt)
	}
	if len(plain) < 32+16+vouchBoxSize {
		return s, malformed("INITIATE box of %d bytes", len(plain))
	}
	var clientKey [32]byte
	copy(clientKey[:], plain[:32])
	vouchKey, err := boxKey(tPriv, clientKey[:])
	if err != nil {
		// A low-order key gives a shared secret anyone can compute: a
		// vouch for it proves nothing.
		return s, malformed("client key %s is a low-order point", keys.Key(clientKey).Z85())
	}
	vn := longNonce(prefixVouch, plain[32:48])
	vouch, ok := box.OpenAfterPrecomputation(nil, plain[48:48+vouchBoxSize], &vn, &vouchKey)
	if !ok {
		return s, fmt.Errorf("%w: vouch (the client does not hold the secret key of %s)", ErrDecrypt, keys.Key(clientKey).Z85())
	}
	if !bytes.Equal(vouch[:32], hello.ClientTransient[:]) || !bytes.Equal(vouch[32:], kp.Public[:]) {
		return s, malformed("vouch does not name this connection's keys")
	}
	s.peer.PublicKey = keys.Key(clientKey)
	md, err := parseMetadata(plain[48+vouchBoxSize:])
	if err != nil {
		return s, err
	}
	s.peer.SocketType, ok = md.Get("Socket-Type")
	if !ok {
		return s, malformed("INITIATE metadata has no Socket-Type")
	}
	s.peer.Identity, _ = md.Get("Identity")
	if err := checkSocketTypes(o.socketType, s.peer.SocketType); err != nil {
		return s, err
	}
	s.recvNonce = ini.Nonce

	// Authorization, then READY, or ERROR "400" (refused) or "300" (busy).
	userID, err := authenticate(ctx, o.authenticator, AuthRequest{
		PublicKey:  s.peer.PublicKey,
		RemoteAddr: s.peer.RemoteAddr,
		Identity:   s.peer.Identity,
		SocketType: s.peer.SocketType,
	})
	if err != nil {
		errCmd := errorCommand{Reason: reasonRefused}
		if errors.Is(err, ErrBusy) {
			errCmd.Reason = reasonBusy
		}
		if werr := writeCommand(rw, errCmd.append(nil)); werr != nil {
			err = errors.Join(err, fmt.Errorf("write ERROR: %w", werr))
		}
		return s, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	s.peer.UserID = userID

	s.sendNonce = 1
	nonce = shortNonce(prefixReady, s.sendNonce)
	ready := shortNonceCommand{Nonce: s.sendNonce}
	ready.Box = box.SealAfterPrecomputation(nil, appendMetadata(nil, metadata{{"Socket-Type", o.socketType}}), &nonce, &s.key)
	if err := writeCommand(rw, ready.append(nil, nameReady)); err != nil {
		return s, fmt.Errorf("write READY: %w", err)
	}
	return s, nil
}

// authenticate calls a, turning a panic into a refusal.
func authenticate(ctx context.Context, a Authenticator, req AuthRequest) (userID string, err error) {
	if a == nil {
		return "", errors.New("no authenticator configured")
	}
	defer func() {
		if p := recover(); p != nil {
			userID, err = "", fmt.Errorf("authenticator panicked: %v", p)
		}
	}()
	return a.Authenticate(ctx, req)
}

// boxKey returns the NaCl box key of priv and the peer's public key pub,
// as box.Precompute computes it (X25519, then HSalsa20 with a zero nonce),
// with one scalar multiplication: crypto/ecdh's PrivateKey has its public
// key already, where curve25519.X25519 would compute it again on every
// call. It fails for a low-order pub, whose shared secret is all zeros.
func boxKey(priv *ecdh.PrivateKey, pub []byte) (key [32]byte, err error) {
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return key, err
	}
	shared, err := priv.ECDH(p)
	if err != nil {
		return key, err
	}
	var in [32]byte
	copy(in[:], shared)
	var zero [16]byte
	salsa.HSalsa20(&key, &zero, &in, &salsa.Sigma)
	return key, nil
}
