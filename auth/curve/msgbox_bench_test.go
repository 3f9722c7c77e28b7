package curve

import (
	"strconv"
	"testing"
)

// vipCallFrames is the frames of a VIP call as the platform forwards it:
// recipient, "VIP1", user, msg-id, "RPC", "call", method and a 200-byte
// payload.
var vipCallFrames = [][]byte{
	[]byte("callee"), []byte("VIP1"), []byte("alice"), []byte("k3j9x.1234"),
	[]byte("RPC"), []byte("call"), []byte("echo"), make([]byte, 200),
}

// BenchmarkMessageBoxes measures the MESSAGE boxes of one direction as a
// conn seals and opens them: vip-call seals the eight frames of a VIP call
// under consecutive nonce counters and opens them again (the crypto of one
// message at one end); seal and open take one frame of each size.
//
// It uses only newMsgBox, sealFrame and open, so that the same file
// measures older versions of msgBox too (docs/BENCHMARKS.md).
func BenchmarkMessageBoxes(b *testing.B) {
	var key [32]byte
	for i := range key {
		key[i] = byte(i)
	}
	b.Run("vip-call", func(b *testing.B) {
		s, r := newMsgBox(&key, prefixMessageC), newMsgBox(&key, prefixMessageC)
		boxes := make([]byte, 0, 1024)
		plain := make([]byte, 0, 1024)
		var ends [8]int
		n := uint64(1)
		for b.Loop() {
			boxes = boxes[:0]
			for i, f := range vipCallFrames {
				boxes = s.sealFrame(boxes, 1, f, n+uint64(i))
				ends[i] = len(boxes)
			}
			plain = plain[:0]
			start := 0
			for i := range vipCallFrames {
				var ok bool
				if plain, ok = r.open(plain, boxes[start:ends[i]], n+uint64(i)); !ok {
					b.Fatal("open failed")
				}
				start = ends[i]
			}
			n += 8
		}
	})
	for _, size := range []int{4, 31, 200, 4096} {
		data := make([]byte, size)
		name := strconv.Itoa(size) + "B"
		b.Run("seal/"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			mb := newMsgBox(&key, prefixMessageC)
			out := make([]byte, 0, size+64)
			n := uint64(1)
			for b.Loop() {
				out = mb.sealFrame(out[:0], 1, data, n)
				n++
			}
		})
		b.Run("open/"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			mb := newMsgBox(&key, prefixMessageC)
			// A conn opens each counter once; boxes of 64 consecutive
			// counters are opened in turn.
			const k = 64
			sealer := newMsgBox(&key, prefixMessageC)
			boxes := make([][]byte, k)
			for i := range boxes {
				boxes[i] = sealer.sealFrame(nil, 1, data, uint64(i))
			}
			out := make([]byte, 0, size+64)
			n := uint64(0)
			for b.Loop() {
				var ok bool
				if out, ok = mb.open(out[:0], boxes[n%k], n%k); !ok {
					b.Fatal("open failed")
				}
				n++
			}
		})
	}
}
