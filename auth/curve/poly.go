package curve

import (
	"crypto/subtle"
	"encoding/binary"
	"math/bits"

	"golang.org/x/crypto/poly1305"
)

// shortMAC is the longest message whose Poly1305 tag polySum computes
// itself; longer ones go to golang.org/x/crypto/poly1305, whose assembly
// is about 10% faster per block but costs about 12 ns more per message.
// Most VIP frames are a few bytes: their boxes MAC one or two blocks
// (polySum: 9-12 ns, x/crypto: 22-27 ns); a 200-byte payload 13 blocks
// (74 ns against 79).
const shortMAC = 256

// polySum writes the Poly1305 tag of msg under the one-time key to out,
// as poly1305.Sum does (a test and a fuzz test compare the two).
//
// The accumulator h is kept in three 64-bit words (h2 holds the few bits
// above 2^128) and multiplied by the clamped r, two words, with 128-bit
// products; the product is reduced modulo 2^130-5 by folding the bits
// above 2^130 back in times 5. It is constant time: no branch or index
// depends on the key or the message, only on the message's length.
func polySum(out *[16]byte, msg []byte, key *[32]byte) {
	if len(msg) > shortMAC {
		poly1305.Sum(out, msg, key)
		return
	}
	r0 := binary.LittleEndian.Uint64(key[0:8]) & 0x0FFFFFFC0FFFFFFF
	r1 := binary.LittleEndian.Uint64(key[8:16]) & 0x0FFFFFFC0FFFFFFC
	var h0, h1, h2, c uint64
	for len(msg) >= 16 {
		h0, c = bits.Add64(h0, binary.LittleEndian.Uint64(msg[0:8]), 0)
		h1, c = bits.Add64(h1, binary.LittleEndian.Uint64(msg[8:16]), c)
		h2 += 1 + c // the 2^128 of a full block
		h0, h1, h2 = polyMulReduce(h0, h1, h2, r0, r1)
		msg = msg[16:]
	}
	if len(msg) > 0 {
		// The last block, padded with a 1 byte and zeros.
		m0, m1 := tailWords(msg)
		h0, c = bits.Add64(h0, m0, 0)
		h1, c = bits.Add64(h1, m1, c)
		h2 += c
		h0, h1, h2 = polyMulReduce(h0, h1, h2, r0, r1)
	}
	polyFinish(out, h0, h1, h2, key)
}

// tailWords returns the 1 to 15 bytes of t followed by a 1 byte and zeros,
// as two little-endian words.
func tailWords(t []byte) (m0, m1 uint64) {
	n := len(t)
	if n >= 8 {
		m0 = binary.LittleEndian.Uint64(t)
		t = t[8:]
	}
	var w uint64
	for i := len(t) - 1; i >= 0; i-- {
		w = w<<8 | uint64(t[i])
	}
	w |= 1 << (8 * uint(len(t)))
	if n >= 8 {
		return m0, w
	}
	return w, 0
}

// polyMulReduce returns h*r modulo 2^130-5, partly reduced: below 5*2^128,
// which the next block's addition and the final reduction allow.
func polyMulReduce(h0, h1, h2, r0, r1 uint64) (uint64, uint64, uint64) {
	// h*r as four words t0..t3. h2 is at most a few bits and r's words are
	// clamped below 2^60, so h2*r0 and h2*r1 fit in 64 bits.
	hi00, t0 := bits.Mul64(h0, r0)
	hi10, lo10 := bits.Mul64(h1, r0)
	hi01, lo01 := bits.Mul64(h0, r1)
	hi11, lo11 := bits.Mul64(h1, r1)

	t1, c := bits.Add64(hi00, lo10, 0)
	t2, _ := bits.Add64(hi10, h2*r0, c)
	t1, c = bits.Add64(t1, lo01, 0)
	t2, c = bits.Add64(t2, hi01, c)
	t3 := hi11 + c
	t2, c = bits.Add64(t2, lo11, 0)
	t3 += h2*r1 + c

	// h = (t mod 2^130) + 5*(t >> 130) = low + 4c + c, where 4c is t2 with
	// its low 2 bits cleared and t3, and c is that shifted right by 2.
	h0, h1, h2 = t0, t1, t2&3
	cc0, cc1 := t2&^3, t3
	h0, c = bits.Add64(h0, cc0, 0)
	h1, c = bits.Add64(h1, cc1, c)
	h2 += c
	cc0, cc1 = cc0>>2|cc1<<62, cc1>>2
	h0, c = bits.Add64(h0, cc0, 0)
	h1, c = bits.Add64(h1, cc1, c)
	h2 += c
	return h0, h1, h2
}

// polyFinish reduces h fully modulo 2^130-5, adds s (the key's second
// half) modulo 2^128 and writes the tag.
func polyFinish(out *[16]byte, h0, h1, h2 uint64, key *[32]byte) {
	// g = h + 5: h >= p exactly when g reaches 2^130, and then h mod p is
	// g - 2^130, whose low 128 bits are g's. (h < 5*2^128 < 2p.)
	g0, c := bits.Add64(h0, 5, 0)
	g1, c := bits.Add64(h1, 0, c)
	_, borrow := bits.Sub64(h2+c, 4, 0)
	mask := borrow - 1 // all ones when h >= p
	h0 = h0&^mask | g0&mask
	h1 = h1&^mask | g1&mask

	h0, c = bits.Add64(h0, binary.LittleEndian.Uint64(key[16:24]), 0)
	h1, _ = bits.Add64(h1, binary.LittleEndian.Uint64(key[24:32]), c)
	binary.LittleEndian.PutUint64(out[0:8], h0)
	binary.LittleEndian.PutUint64(out[8:16], h1)
}

// polyVerify reports whether mac is the Poly1305 tag of msg under key, in
// constant time.
func polyVerify(mac *[16]byte, msg []byte, key *[32]byte) bool {
	var tag [16]byte
	polySum(&tag, msg, key)
	return subtle.ConstantTimeCompare(tag[:], mac[:]) == 1
}
