package curve

import (
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/nacl/box"
)

// TestMsgBox_MatchesNaclBox checks that msgBox seals exactly what
// nacl/box.SealAfterPrecomputation seals under the MESSAGE nonce, and opens
// it, for every length around the block and threshold boundaries.
func TestMsgBox_MatchesNaclBox(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	lengths := []int{}
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range []int{511, 512, 513, 543, 544, 545, 1000, 4096, 65536 + 7} {
		lengths = append(lengths, n)
	}
	for _, prefix := range []string{prefixMessageC, prefixMessageS} {
		for _, n := range lengths {
			var key [32]byte
			_, _ = rand.Read(key[:])
			plain := make([]byte, n)
			_, _ = rand.Read(plain)
			ctr := rng.Uint64()
			if n%7 == 0 {
				ctr = uint64(n) // small counters too
			}
			mb := newMsgBox(&key, prefix)
			nonce := shortNonce(prefix, ctr)
			want := box.SealAfterPrecomputation([]byte("hdr"), plain, &nonce, &key)
			got := mb.seal([]byte("hdr"), plain, ctr)
			require.Equal(t, want, got, "seal, %d bytes, counter %d", n, ctr)

			if n > 0 {
				framed := mb.sealFrame([]byte("hdr"), plain[0], plain[1:], ctr)
				require.Equal(t, want, framed, "sealFrame, %d bytes", n)
			}

			opened, ok := mb.open([]byte("x"), got[3:], ctr)
			require.True(t, ok, "open, %d bytes", n)
			require.Equal(t, append([]byte("x"), plain...), opened)

			_, ok = mb.open(nil, got[3:], ctr+1)
			require.False(t, ok, "wrong counter opens")
			if n > 0 {
				tampered := append([]byte(nil), got[3:]...)
				tampered[16+rng.IntN(n)] ^= 1
				_, ok = mb.open(nil, tampered, ctr)
				require.False(t, ok, "tampered ciphertext opens")
			}
		}
	}
}

func TestMsgBox_RefusesShortBox(t *testing.T) {
	var key [32]byte
	mb := newMsgBox(&key, prefixMessageC)
	_, ok := mb.open(nil, make([]byte, 15), 1)
	require.False(t, ok)
}

// BenchmarkMessageBox compares sealing one MESSAGE box with msgBox and with
// nacl/box.SealAfterPrecomputation, for a VIP header frame and a 200-byte
// payload frame.
func BenchmarkMessageBox(b *testing.B) {
	var key [32]byte
	for _, n := range []int{9, 201, 4097} {
		plain := make([]byte, n)
		out := make([]byte, 0, n+64)
		b.Run(sizeName(n)+"/nacl-box", func(b *testing.B) {
			b.SetBytes(int64(n))
			var nonce [24]byte
			copy(nonce[:], prefixMessageC)
			for i := range b.N {
				binary.BigEndian.PutUint64(nonce[16:], uint64(i))
				out = box.SealAfterPrecomputation(out[:0], plain, &nonce, &key)
			}
		})
		for _, wide := range []bool{false, true} {
			name := "/msgbox"
			if wide {
				name = "/msgbox-wide"
			}
			b.Run(sizeName(n)+name, func(b *testing.B) {
				b.SetBytes(int64(n))
				mb := newMsgBox(&key, prefixMessageC)
				mb.wide = wide
				if wide && !wideSalsa() {
					b.Skip("this CPU has no wide Salsa20")
				}
				for i := range b.N {
					out = mb.seal(out[:0], plain, uint64(i))
				}
			})
		}
	}
}

func sizeName(n int) string { return "frame-" + strconv.Itoa(n) + "B" }

// seal appends the box of plain under the nonce counter n to dst: the
// 16-byte Poly1305 tag, then the ciphertext. The conn always seals a
// flags byte and data (sealFrame); tests seal any plaintext.
func (b *msgBox) seal(dst, plain []byte, n uint64) []byte {
	var block [64]byte
	b.block0(&block, n)
	start := len(dst)
	dst = grow(dst, boxOverhead+len(plain))
	ct := dst[start+boxOverhead:]
	b.xor(ct, plain, &block, n, 0)
	b.tag(dst[start:], ct, &block)
	return dst
}

// vipCall is the frames of a VIP call as the platform forwards it, with a
// 200-byte payload.
var vipCall = [][]byte{[]byte("caller"), []byte("VIP1"), []byte("alice"), []byte("k3j9x.1234"), []byte("RPC"), []byte("call"), []byte("echo"), make([]byte, 200)}

// BenchmarkVIPMessageBoxes seals and opens the eight boxes of a VIP call,
// the crypto of one message (a round trip costs the platform four).
func BenchmarkVIPMessageBoxes(b *testing.B) {
	var key [32]byte
	for _, wide := range []bool{false, true} {
		name := "narrow"
		if wide {
			name = "wide"
		}
		b.Run(name, func(b *testing.B) {
			if wide && !wideSalsa() {
				b.Skip("this CPU has no wide Salsa20")
			}
			s, r := newMsgBox(&key, prefixMessageC), newMsgBox(&key, prefixMessageC)
			s.wide, r.wide = wide, wide
			boxes := make([]byte, 0, 1024)
			plain := make([]byte, 0, 1024)
			var ends [8]int
			n := uint64(0)
			for b.Loop() {
				boxes = boxes[:0]
				for i, f := range vipCall {
					boxes = s.sealFrame(boxes, 1, f, n+uint64(i))
					ends[i] = len(boxes)
				}
				plain = plain[:0]
				start := 0
				for i := range vipCall {
					var ok bool
					if plain, ok = r.open(plain, boxes[start:ends[i]], n+uint64(i)); !ok {
						b.Fatal("open failed")
					}
					start = ends[i]
				}
				n += 8
			}
		})
	}
}
