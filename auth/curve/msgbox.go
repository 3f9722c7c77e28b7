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
// HSalsa20 and Poly1305 are those of golang.org/x/crypto, and so is
// Salsa20, except on amd64 CPUs with AVX2 (wide): there salsa8AVX2
// (salsa_amd64.s, generated with avo by internal/asmgen) computes eight
// Salsa20 blocks in one pass, and the conn fills its lanes with the
// blocks of several boxes in hand (see batch). open checks the tag with
// poly1305.Verify (constant time) before it decrypts anything. Package
// poly1305 is deprecated for general-purpose use; here it is what it is
// made for, the one-time authenticator of the secretbox construction,
// keyed afresh from the keystream of every box, as nacl/secretbox uses
// it.
type msgBox struct {
	key   [32]byte   // HSalsa20(precomputed key, nonce prefix): this direction's Salsa20 key
	state [16]uint32 // Salsa20's input words under key (salsaState)
	// wide: the conn computes keystream in batches, and blocks after the
	// first ones eight at a time (hasAVX2; tests set it to run the same
	// code with x/crypto's blocks).
	wide bool
}

// newMsgBox returns the msgBox of the precomputed key and the 16-byte
// MESSAGE nonce prefix of one direction (prefixMessageC or prefixMessageS).
func newMsgBox(key *[32]byte, prefix string) msgBox {
	var b msgBox
	var in [16]byte
	copy(in[:], prefix)
	salsa.HSalsa20(&b.key, &in, key, &salsa.Sigma)
	b.state = salsaState(&b.key)
	b.wide = hasAVX2
	return b
}

// sealFrame appends the box of one frame, its inner flags byte followed by
// data, under the nonce counter n to dst, without first copying the two
// into one plaintext.
func (b *msgBox) sealFrame(dst []byte, flags byte, data []byte, n uint64) []byte {
	return b.sealFrameWith(dst, flags, data, n, nil)
}

// sealFrameWith is sealFrame given the first blocks of n's keystream, ks
// (a whole number of blocks, at least block 0), computed beforehand with
// those of other frames (batch). With ks nil it computes them itself.
func (b *msgBox) sealFrameWith(dst []byte, flags byte, data []byte, n uint64, ks []byte) []byte {
	var buf [headSize]byte
	if ks == nil {
		ks = b.head(&buf, n, 1+len(data))
	}
	start := len(dst)
	dst = grow(dst, boxOverhead+1+len(data))
	ct := dst[start+boxOverhead:]
	ct[0] = flags ^ ks[32]
	b.xor(ct[1:], data, ks, 33, n)
	poly1305.Sum((*[16]byte)(dst[start:]), ct, (*[32]byte)(ks[:32]))
	return dst
}

// open appends the plaintext of box (tag and ciphertext) under the nonce
// counter n to dst, or returns false, having decrypted nothing, if the box
// is not authentic.
func (b *msgBox) open(dst, box []byte, n uint64) ([]byte, bool) {
	return b.openWith(dst, box, n, nil)
}

// openWith is open given the first blocks of n's keystream, as
// sealFrameWith.
func (b *msgBox) openWith(dst, box []byte, n uint64, ks []byte) ([]byte, bool) {
	if len(box) < boxOverhead {
		return nil, false
	}
	ct := box[boxOverhead:]
	var buf [headSize]byte
	if ks == nil {
		ks = b.head(&buf, n, len(ct))
	}
	if !poly1305.Verify((*[16]byte)(box), ct, (*[32]byte)(ks[:32])) {
		return nil, false
	}
	start := len(dst)
	dst = grow(dst, len(ct))
	b.xor(dst[start:], ct, ks, 32, n)
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
// on, given its first blocks ks. The blocks after ks come from
// salsa8AVX2, eight per pass, where the CPU has it (b.wide), else from
// x/crypto.
func (b *msgBox) xor(out, in, ks []byte, off int, n uint64) {
	k := subtle.XORBytes(out, in, ks[off:])
	if len(in) == k {
		return
	}
	out, in = out[k:len(in)], in[k:]
	ctr := uint64(len(ks) / 64)
	if !b.wide {
		counter := salsaCounter(n, ctr)
		salsa.XORKeyStream(out, in, &counter, &b.key)
		return
	}
	var blocks [512]byte
	var l lanes
	for len(in) > 0 {
		k := min((len(in)+63)/64, 8)
		for i := range k {
			l.set(i, n, ctr+uint64(i))
		}
		b.blocks(&blocks, &l, k)
		m := subtle.XORBytes(out, in, blocks[:64*k])
		out, in, ctr = out[m:], in[m:], ctr+uint64(k)
	}
}

// A batch is the keystream of up to eight boxes that are in hand (frames
// being sealed, or MESSAGE commands already in the read buffer), computed
// in one pass of eight Salsa20 blocks: block 0 of each box, and in the
// lanes left over, the blocks that follow, as far as the boxes need them.
// Box i's blocks are contiguous, so that sealFrameWith and openWith take
// them as one keystream.
//
// This is not a cache of keystream computed ahead: a batch holds the
// blocks of exact nonce counters of boxes the caller holds (counters being
// assigned to frames in the same WriteMsg, or read from the headers of
// commands already received), it lives in one WriteMsg or ReadMsg call
// and is dropped at its end, and nothing is computed for a counter that is
// not in hand. The receiver still checks each nonce, in order, and each
// tag before it decrypts.
type batch struct {
	n     [8]uint64 // the boxes' nonce counters
	start [9]int    // box i's blocks are blocks start[i] to start[i+1]-1
	count int
	ks    [512]byte
}

// fill sets z to the keystream of the boxes whose nonce counters are ns
// (at most eight) and whose plaintexts are plainLens bytes long: block 0
// of each, then for each box in turn as many of its next blocks as it
// needs and the lanes left allow, keeping one lane for each later box.
func (b *msgBox) fill(z *batch, ns []uint64, plainLens []int) {
	var l lanes
	a := 0
	for i, n := range ns {
		need := (32 + plainLens[i] + 63) / 64
		take := min(need, 8-a-(len(ns)-1-i))
		for j := range take {
			l.set(a+j, n, uint64(j))
		}
		z.n[i], z.start[i] = n, a
		a += take
	}
	z.count, z.start[len(ns)] = len(ns), a
	b.blocks(&z.ks, &l, a)
}

// fillFrames sets z to the keystream of frames, at most eight, to be
// sealed (with their flags byte) under the nonce counters n, n+1 and on.
func (b *msgBox) fillFrames(z *batch, n uint64, frames [][]byte) {
	var ns [8]uint64
	var lens [8]int
	for i, f := range frames {
		ns[i], lens[i] = n+uint64(i), 1+len(f)
	}
	b.fill(z, ns[:len(frames)], lens[:len(frames)])
}

// keystream returns the first blocks of the keystream of nonce counter n,
// or nil if z does not hold them.
func (z *batch) keystream(n uint64) []byte {
	for i := range z.count {
		if z.n[i] == n {
			return z.ks[64*z.start[i] : 64*z.start[i+1]]
		}
	}
	return nil
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
		c := max(2*cap(dst), len(dst)+n)
		if n >= cap(dst) {
			c = len(dst) + n // a large frame: what it needs, no more
		}
		d := make([]byte, len(dst), c)
		copy(d, dst)
		dst = d
	}
	return dst[:len(dst)+n]
}
