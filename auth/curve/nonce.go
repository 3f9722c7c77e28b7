package curve

import (
	"crypto/rand"
	"encoding/binary"
)

// Nonce prefixes of RFC 26 as libzmq 4.3.4 uses them.
const (
	prefixHello    = "CurveZMQHELLO---"
	prefixWelcome  = "WELCOME-"
	prefixCookie   = "COOKIE--"
	prefixInitiate = "CurveZMQINITIATE"
	prefixVouch    = "VOUCH---"
	prefixReady    = "CurveZMQREADY---"
	prefixMessageC = "CurveZMQMESSAGEC" // client to server
	prefixMessageS = "CurveZMQMESSAGES" // server to client
)

// shortNonce is a 16-byte prefix followed by an 8-byte big-endian counter.
func shortNonce(prefix string, n uint64) (nonce [24]byte) {
	copy(nonce[:16], prefix)
	binary.BigEndian.PutUint64(nonce[16:], n)
	return nonce
}

// longNonce is an 8-byte prefix followed by 16 random bytes.
func longNonce(prefix string, n []byte) (nonce [24]byte) {
	copy(nonce[:8], prefix)
	copy(nonce[8:], n)
	return nonce
}

// random16 returns 16 bytes from crypto/rand.
func random16() (b [16]byte, err error) {
	_, err = rand.Read(b[:])
	return b, err
}
