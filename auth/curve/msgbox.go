package curve

import (
	"crypto/subtle"
	"encoding/binary"
	"math/bits"

	"golang.org/x/crypto/poly1305"
	"golang.org/x/crypto/salsa20/salsa"
)

// msgBox seals and opens the boxes of MESSAGE commands in one direction.
//
// A MESSAGE box is crypto_box_afternm (XSalsa20-Poly1305 with the
// precomputed key of the transient keys) under the nonce
// "CurveZMQMESSAGE" + "C" or "S" + an 8-byte counter. XSalsa20 first derives
// a Salsa20 key with HSalsa20 from the key and the nonce's first 16 bytes,
// which are the same for every MESSAGE of a direction, so msgBox derives it
// once per connection and runs only Salsa20 per frame. The boxes are byte
// for byte those of nacl/box.SealAfterPrecomputation (a test compares them).
//
// Salsa20 itself is computed here: CURVE frames are small (most VIP frames
// are under 32 bytes), and the general-purpose stream function of
// golang.org/x/crypto/salsa20/salsa has a fixed cost sized for long
// streams. On amd64 CPUs with AVX-512VL or AVX2, salsa8 computes eight
// blocks in one pass for the frames that need more than block 0. Block 0
// and everything elsewhere is computed one block at a time in pure Go. HSalsa20 and Poly1305 come from
// golang.org/x/crypto.
type msgBox struct {
	sub   [32]byte   // HSalsa20(key, prefix): the Salsa20 key of this direction
	state [16]uint32 // Salsa20's input words under sub; words 6 to 9 vary
	// wide: compute eight blocks at once (salsa8), on CPUs where that
	// costs about as much as two single blocks.
	wide bool
}

func newMsgBox(key *[32]byte, prefix string) msgBox {
	b := msgBox{wide: wideSalsa()}
	var in [16]byte
	copy(in[:], prefix)
	salsa.HSalsa20(&b.sub, &in, key, &salsa.Sigma)
	k := &b.sub
	b.state = [16]uint32{
		sigma0, binary.LittleEndian.Uint32(k[0:]), binary.LittleEndian.Uint32(k[4:]), binary.LittleEndian.Uint32(k[8:]),
		binary.LittleEndian.Uint32(k[12:]), sigma1, 0, 0,
		0, 0, sigma2, binary.LittleEndian.Uint32(k[16:]),
		binary.LittleEndian.Uint32(k[20:]), binary.LittleEndian.Uint32(k[24:]), binary.LittleEndian.Uint32(k[28:]), sigma3,
	}
	return b
}

// sealFrame appends the box of one frame, its inner flags byte followed by
// data, under the nonce counter n to dst, without first copying the two
// into one plaintext.
func (b *msgBox) sealFrame(dst []byte, flags byte, data []byte, n uint64) []byte {
	var block [64]byte
	b.block0(&block, n)
	start := len(dst)
	dst = grow(dst, boxOverhead+1+len(data))
	ct := dst[start+boxOverhead:]
	ct[0] = flags ^ block[32]
	b.xor(ct[1:], data, &block, n, 1)
	b.tag(dst[start:], ct, &block)
	return dst
}

// block0 computes block 0 of nonce counter n: its first half keys
// Poly1305, its second half encrypts the first 32 bytes of the box.
func (b *msgBox) block0(out *[64]byte, n uint64) {
	b.block(out, n, 0)
}

// tag writes the Poly1305 tag of ct, keyed by the first half of block 0,
// to out.
func (b *msgBox) tag(out, ct []byte, block0 *[64]byte) {
	poly1305.Sum((*[16]byte)(out), ct, (*[32]byte)(block0[:32]))
}

// open appends the plaintext of box (tag and ciphertext) under the nonce
// counter n to dst, or returns false if the box is not authentic.
func (b *msgBox) open(dst, box []byte, n uint64) ([]byte, bool) {
	if len(box) < boxOverhead {
		return nil, false
	}
	var block [64]byte
	b.block0(&block, n)
	ct := box[boxOverhead:]
	if !poly1305.Verify((*[16]byte)(box), ct, (*[32]byte)(block[:32])) {
		return nil, false
	}
	start := len(dst)
	dst = grow(dst, len(ct))
	b.xor(dst[start:], ct, &block, n, 0)
	return dst, true
}

// xor sets out to in XOR the keystream of nonce counter n from position
// pos (0 or 1) on. Position 0 is byte 32 of block 0, whose first 32 bytes
// are the Poly1305 key; block 0 is given, already computed.
func (b *msgBox) xor(out, in []byte, block0 *[64]byte, n uint64, pos int) {
	k := min(len(in), 32-pos)
	subtle.XORBytes(out[:k], in[:k], block0[32+pos:32+pos+k])
	in, out = in[k:], out[k:]
	if b.wide && len(in) > 0 {
		b.xorWide(out, in, n)
		return
	}
	if len(in) >= streamThreshold {
		var counter [16]byte
		binary.BigEndian.PutUint64(counter[:8], n)
		counter[8] = 1
		salsa.XORKeyStream(out, in, &counter, &b.sub)
		return
	}
	var block [64]byte
	for i := uint64(1); len(in) > 0; i++ {
		b.block(&block, n, i)
		k := subtle.XORBytes(out, in, block[:])
		in, out = in[k:], out[k:]
	}
}

// xorWide sets out to in XOR the keystream of nonce counter n from block 1
// on, eight blocks per salsa8.
func (b *msgBox) xorWide(out, in []byte, n uint64) {
	var lanes [4][8]uint32
	var ks [8][64]byte
	for ctr := uint64(1); len(in) > 0; ctr += 8 {
		k := min((len(in)+63)/64, 8)
		for i := range k {
			lanes[0][i], lanes[1][i], lanes[2][i], lanes[3][i] = nonceWords(n, ctr+uint64(i))
		}
		salsa8(&ks, &b.state, &lanes)
		for i := range k {
			m := subtle.XORBytes(out, in, ks[i][:])
			in, out = in[m:], out[m:]
		}
	}
}

// streamThreshold is the length from which the rest of a frame is
// encrypted by golang.org/x/crypto's stream function (assembly on amd64),
// which beats the single-block function here on long inputs. (salsa8,
// where the CPU runs it wide, beats both: about 1.2 GB/s sealed against
// 0.7 GB/s.)
const streamThreshold = 512

// grow extends dst by n bytes, reallocating if needed.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		d := make([]byte, len(dst), 2*cap(dst)+n)
		copy(d, dst)
		dst = d
	}
	return dst[:len(dst)+n]
}

// Salsa20 constants, "expand 32-byte k".
const (
	sigma0 = 0x61707865
	sigma1 = 0x3320646e
	sigma2 = 0x79622d32
	sigma3 = 0x6b206574
)

// block computes Salsa20/20 block number ctr of the 8-byte nonce whose
// bytes are the big-endian encoding of n (the MESSAGE nonce counter).
func (b *msgBox) block(out *[64]byte, n, ctr uint64) {
	var in, x [16]uint32
	in = b.state
	in[6], in[7], in[8], in[9] = nonceWords(n, ctr)
	salsaCore(&x, &in)
	for w, v := range x {
		binary.LittleEndian.PutUint32(out[4*w:], v)
	}
}

// nonceWords returns input words 6 to 9 of Salsa20: the 8-byte nonce, the
// big-endian encoding of n, and the block counter ctr, little-endian.
func nonceWords(n, ctr uint64) (w6, w7, w8, w9 uint32) {
	return bits.ReverseBytes32(uint32(n >> 32)), bits.ReverseBytes32(uint32(n)), uint32(ctr), uint32(ctr >> 32)
}

// salsa8Generic computes eight Salsa20/20 blocks: word w of the input of
// block i is state[w], except words 6 to 9 (nonce and block counter),
// which are lanes[w-6][i]; block i, 64 bytes of keystream, goes to out[i].
// The assembly kernels compute the same in one pass; this is the reference
// the tests compare them with, and the fallback.
func salsa8Generic(out *[8][64]byte, state *[16]uint32, lanes *[4][8]uint32) {
	for i := range out {
		in := *state
		in[6], in[7], in[8], in[9] = lanes[0][i], lanes[1][i], lanes[2][i], lanes[3][i]
		var x [16]uint32
		salsaCore(&x, &in)
		for w, v := range x {
			binary.LittleEndian.PutUint32(out[i][4*w:], v)
		}
	}
}

// salsaCore sets out to the Salsa20/20 block of the input words in.
func salsaCore(out, in *[16]uint32) {
	j0, j1, j2, j3, j4, j5, j6, j7 := in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7]
	j8, j9, j10, j11, j12, j13, j14, j15 := in[8], in[9], in[10], in[11], in[12], in[13], in[14], in[15]

	x0, x1, x2, x3, x4, x5, x6, x7 := j0, j1, j2, j3, j4, j5, j6, j7
	x8, x9, x10, x11, x12, x13, x14, x15 := j8, j9, j10, j11, j12, j13, j14, j15

	for i := 0; i < 20; i += 2 {
		// Column round.
		x4 ^= bits.RotateLeft32(x0+x12, 7)
		x8 ^= bits.RotateLeft32(x4+x0, 9)
		x12 ^= bits.RotateLeft32(x8+x4, 13)
		x0 ^= bits.RotateLeft32(x12+x8, 18)

		x9 ^= bits.RotateLeft32(x5+x1, 7)
		x13 ^= bits.RotateLeft32(x9+x5, 9)
		x1 ^= bits.RotateLeft32(x13+x9, 13)
		x5 ^= bits.RotateLeft32(x1+x13, 18)

		x14 ^= bits.RotateLeft32(x10+x6, 7)
		x2 ^= bits.RotateLeft32(x14+x10, 9)
		x6 ^= bits.RotateLeft32(x2+x14, 13)
		x10 ^= bits.RotateLeft32(x6+x2, 18)

		x3 ^= bits.RotateLeft32(x15+x11, 7)
		x7 ^= bits.RotateLeft32(x3+x15, 9)
		x11 ^= bits.RotateLeft32(x7+x3, 13)
		x15 ^= bits.RotateLeft32(x11+x7, 18)

		// Row round.
		x1 ^= bits.RotateLeft32(x0+x3, 7)
		x2 ^= bits.RotateLeft32(x1+x0, 9)
		x3 ^= bits.RotateLeft32(x2+x1, 13)
		x0 ^= bits.RotateLeft32(x3+x2, 18)

		x6 ^= bits.RotateLeft32(x5+x4, 7)
		x7 ^= bits.RotateLeft32(x6+x5, 9)
		x4 ^= bits.RotateLeft32(x7+x6, 13)
		x5 ^= bits.RotateLeft32(x4+x7, 18)

		x11 ^= bits.RotateLeft32(x10+x9, 7)
		x8 ^= bits.RotateLeft32(x11+x10, 9)
		x9 ^= bits.RotateLeft32(x8+x11, 13)
		x10 ^= bits.RotateLeft32(x9+x8, 18)

		x12 ^= bits.RotateLeft32(x15+x14, 7)
		x13 ^= bits.RotateLeft32(x12+x15, 9)
		x14 ^= bits.RotateLeft32(x13+x12, 13)
		x15 ^= bits.RotateLeft32(x14+x13, 18)
	}

	out[0], out[1], out[2], out[3] = x0+j0, x1+j1, x2+j2, x3+j3
	out[4], out[5], out[6], out[7] = x4+j4, x5+j5, x6+j6, x7+j7
	out[8], out[9], out[10], out[11] = x8+j8, x9+j9, x10+j10, x11+j11
	out[12], out[13], out[14], out[15] = x12+j12, x13+j13, x14+j14, x15+j15
}
