package curve

import (
	"crypto/subtle"
	"encoding/binary"

	"golang.org/x/crypto/poly1305"
	"golang.org/x/crypto/salsa20/salsa"
)

// msgBox seals and opens the boxes of MESSAGE commands in one direction.
//
// A MESSAGE box is crypto_box_afternm (XSalsa20-Poly1305 with the
// precomputed key of the transient keys) under the 24-byte nonce
// "CurveZMQMESSAGEC" or "CurveZMQMESSAGES" followed by an 8-byte big-endian
// counter. XSalsa20 derives a Salsa20 key with HSalsa20 from the key and
// the nonce's first 16 bytes; those are the same for every MESSAGE of a
// direction, so msgBox derives the Salsa20 key once, in newMsgBox, and per
// box runs only Salsa20/20 under the nonce's last 8 bytes, as secretbox
// does after its own HSalsa20: the first 32 bytes of the keystream are the
// one-time Poly1305 key, the keystream from byte 32 on encrypts the
// plaintext, and the box is the 16-byte tag of the ciphertext followed by
// the ciphertext. The boxes are byte for byte those of
// nacl/box.SealAfterPrecomputation and nacl/secretbox (the tests compare
// them, and check published NaCl vectors).
//
// HSalsa20, Salsa20 and Poly1305 are those of golang.org/x/crypto; open
// checks the tag with poly1305.Verify (constant time) before it decrypts
// anything. Package poly1305 is deprecated for general-purpose use; here
// it is what it is made for, the one-time authenticator of the secretbox
// construction, keyed afresh from the keystream of every box, as
// nacl/secretbox uses it.
type msgBox struct {
	key [32]byte // HSalsa20(precomputed key, nonce prefix): this direction's Salsa20 key
}

// newMsgBox returns the msgBox of the precomputed key and the 16-byte
// MESSAGE nonce prefix of one direction (prefixMessageC or prefixMessageS).
func newMsgBox(key *[32]byte, prefix string) msgBox {
	var b msgBox
	var in [16]byte
	copy(in[:], prefix)
	salsa.HSalsa20(&b.key, &in, key, &salsa.Sigma)
	return b
}

// sealFrame appends the box of one frame, its inner flags byte followed by
// data, under the nonce counter n to dst, without first copying the two
// into one plaintext.
func (b *msgBox) sealFrame(dst []byte, flags byte, data []byte, n uint64) []byte {
	var buf [headSize]byte
	head := b.head(&buf, n, 1+len(data))
	start := len(dst)
	dst = grow(dst, boxOverhead+1+len(data))
	ct := dst[start+boxOverhead:]
	ct[0] = flags ^ head[32]
	b.xor(ct[1:], data, head, 33, n)
	poly1305.Sum((*[16]byte)(dst[start:]), ct, (*[32]byte)(head[:32]))
	return dst
}

// open appends the plaintext of box (tag and ciphertext) under the nonce
// counter n to dst, or returns false, having decrypted nothing, if the box
// is not authentic.
func (b *msgBox) open(dst, box []byte, n uint64) ([]byte, bool) {
	if len(box) < boxOverhead {
		return nil, false
	}
	ct := box[boxOverhead:]
	var buf [headSize]byte
	head := b.head(&buf, n, len(ct))
	if !poly1305.Verify((*[16]byte)(box), ct, (*[32]byte)(head[:32])) {
		return nil, false
	}
	start := len(dst)
	dst = grow(dst, len(ct))
	b.xor(dst[start:], ct, head, 32, n)
	return dst, true
}

// headSize is the keystream that head computes for a box whose plaintext
// does not fit in block 0: four blocks, which the amd64 code of
// golang.org/x/crypto/salsa20/salsa computes together (below 256 bytes it
// computes one block at a time), so that a frame of up to 224 bytes, such
// as a VIP call's payload, takes one call.
const headSize = 256

// head sets buf to the start of the keystream of nonce counter n and
// returns the part computed: block 0 alone when a plaintext of plainLen
// bytes fits in its last 32 bytes, else blocks 0 to 3.
func (b *msgBox) head(buf *[headSize]byte, n uint64, plainLen int) []byte {
	ks := buf[:64]
	if plainLen > 32 {
		ks = buf[:]
	}
	counter := salsaCounter(n, 0)
	salsa.XORKeyStream(ks, ks, &counter, &b.key)
	return ks
}

// xor sets out to in XOR the keystream of nonce counter n from byte off
// on, given its first blocks ks (what head returned).
func (b *msgBox) xor(out, in, ks []byte, off int, n uint64) {
	k := subtle.XORBytes(out, in, ks[off:])
	if len(in) > k {
		counter := salsaCounter(n, uint64(len(ks)/64))
		salsa.XORKeyStream(out[k:len(in)], in[k:], &counter, &b.key)
	}
}

// salsaCounter returns the 16 bytes of Salsa20's input that follow its key
// for block ctr of nonce counter n: the MESSAGE nonce's last 8 bytes (n,
// big-endian), then the block counter, little-endian.
func salsaCounter(n, ctr uint64) (c [16]byte) {
	binary.BigEndian.PutUint64(c[:8], n)
	binary.LittleEndian.PutUint64(c[8:], ctr)
	return c
}

// grow extends dst by n bytes, reallocating if needed.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		d := make([]byte, len(dst), 2*cap(dst)+n)
		copy(d, dst)
		dst = d
	}
	return dst[:len(dst)+n]
}
