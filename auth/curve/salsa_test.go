package curve

import (
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSalsa8_MatchesGeneric compares salsa8 (AVX-512 where the CPU has it)
// with the pure-Go reference on random keys, nonces and counters, and
// salsa8Generic's lanes with the single-block function that the nacl/box
// comparison covers.
func TestSalsa8_MatchesGeneric(t *testing.T) {
	t.Logf("wide Salsa20 on this CPU: %v", wideSalsa())
	rng := mrand.New(mrand.NewPCG(3, 4))
	for range 2000 {
		var key [32]byte
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		b := newMsgBox(&key, prefixMessageC)
		var lanes [4][8]uint32
		var ns, ctrs [8]uint64
		for i := range 8 {
			ns[i], ctrs[i] = rng.Uint64(), rng.Uint64()
			if i%3 == 0 {
				ctrs[i] = uint64(i)
			}
			lanes[0][i], lanes[1][i], lanes[2][i], lanes[3][i] = nonceWords(ns[i], ctrs[i])
		}
		var got, want [8][64]byte
		salsa8(&got, &b.state, &lanes)
		salsa8Generic(&want, &b.state, &lanes)
		require.Equal(t, want, got)
		for name, f := range kernels() {
			got = [8][64]byte{}
			f(&got, &b.state, &lanes)
			require.Equal(t, want, got, name)
		}
		for i := range 8 {
			var blk [64]byte
			b.block(&blk, ns[i], ctrs[i])
			require.Equal(t, blk, want[i], "block %d", i)
		}
	}
}

// TestMsgBox_WideMatchesNarrow seals and opens a stream of frames of mixed
// lengths with the eight-block precomputation and without, including
// counters that jump and counters at the end of the nonce space.
func TestMsgBox_WideMatchesNarrow(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(5, 6))
	var key [32]byte
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	wide, narrow := newMsgBox(&key, prefixMessageS), newMsgBox(&key, prefixMessageS)
	wide.wide, narrow.wide = true, false
	var counters []uint64
	for n := uint64(1); n < 200; n++ {
		counters = append(counters, n)
	}
	counters = append(counters, 5, 1000, 999, 1007, 1008, 1<<40)
	for n := ^uint64(0) - 20; n != 0; n++ {
		counters = append(counters, n)
	}
	for _, n := range counters {
		data := make([]byte, rng.IntN(300))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		want := narrow.sealFrame(nil, 1, data, n)
		got := wide.sealFrame(nil, 1, data, n)
		require.Equal(t, want, got, "counter %d", n)
		plain, ok := wide.open(nil, got, n)
		require.True(t, ok, "counter %d", n)
		require.Equal(t, append([]byte{1}, data...), plain)
	}
}

// BenchmarkSalsa8 compares eight blocks at once with eight single blocks.
func BenchmarkSalsa8(b *testing.B) {
	var key [32]byte
	mb := newMsgBox(&key, prefixMessageC)
	var lanes [4][8]uint32
	var out [8][64]byte
	b.Run("salsa8", func(b *testing.B) {
		for b.Loop() {
			salsa8(&out, &mb.state, &lanes)
		}
	})
	for name, f := range kernels() {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				f(&out, &mb.state, &lanes)
			}
		})
	}
	b.Run("generic", func(b *testing.B) {
		for b.Loop() {
			salsa8Generic(&out, &mb.state, &lanes)
		}
	})
}

// FuzzMsgBox_WideMatchesNarrow seals data under a fuzzed key and nonce
// counter with the eight-block path and with single blocks: the boxes must
// be equal and must open to data.
func FuzzMsgBox_WideMatchesNarrow(f *testing.F) {
	f.Add([]byte("VIP1"), uint64(1), byte(0))
	f.Add(make([]byte, 200), uint64(7), byte(1))
	f.Add(make([]byte, 1000), ^uint64(0)-3, byte(2))
	f.Fuzz(func(t *testing.T, data []byte, n uint64, seed byte) {
		var key [32]byte
		for i := range key {
			key[i] = seed + byte(i)
		}
		wide, narrow := newMsgBox(&key, prefixMessageC), newMsgBox(&key, prefixMessageC)
		wide.wide, narrow.wide = true, false
		// A neighbouring counter first, so that block 0 may come from the
		// eight computed before.
		_ = wide.sealFrame(nil, 0, nil, n-uint64(seed%8))
		want := narrow.sealFrame(nil, 1, data, n)
		got := wide.sealFrame(nil, 1, data, n)
		require.Equal(t, want, got)
		plain, ok := wide.open(nil, got, n)
		require.True(t, ok)
		require.Equal(t, append([]byte{1}, data...), plain)
	})
}

// FuzzMsgBox_WideStreamMatchesNarrow seals a stream of frames whose
// lengths and counter steps come from the fuzzer (two bytes a frame), as a
// conn does, with the wide path and with single blocks, and opens the
// wide boxes with a wide box of their own: block 0 then comes from every
// mix of computed-ahead and missing counters.
func FuzzMsgBox_WideStreamMatchesNarrow(f *testing.F) {
	f.Add([]byte{1, 3, 1, 5, 1, 100, 1, 2, 1, 40, 1, 1, 1, 1, 1, 1, 1, 1}, byte(0))
	f.Add([]byte{1, 200, 1, 0, 3, 17, 0, 90, 2, 255, 1, 16, 1, 47}, byte(9))
	f.Fuzz(func(t *testing.T, script []byte, seed byte) {
		var key [32]byte
		for i := range key {
			key[i] = seed ^ byte(3*i)
		}
		wide, narrow, recv := newMsgBox(&key, prefixMessageS), newMsgBox(&key, prefixMessageS), newMsgBox(&key, prefixMessageS)
		wide.wide, narrow.wide, recv.wide = true, false, true
		n := uint64(seed)
		for i := 0; i+1 < len(script) && i < 400; i += 2 {
			n += uint64(script[i] % 10) // mostly 1, sometimes a jump or the same counter
			data := make([]byte, 2*int(script[i+1]))
			for j := range data {
				data[j] = byte(j) ^ seed
			}
			want := narrow.sealFrame(nil, 1, data, n)
			got := wide.sealFrame(nil, 1, data, n)
			require.Equal(t, want, got, "frame %d, counter %d, %d bytes", i/2, n, len(data))
			plain, ok := recv.open(nil, got, n)
			require.True(t, ok, "frame %d", i/2)
			require.Equal(t, append([]byte{1}, data...), plain)
		}
	})
}
