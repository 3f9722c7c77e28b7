package curve

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	mrand "math/rand/v2"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/salsa20/salsa"
)

// TestBlocks_MatchXCryptoSalsa20 compares blocks (salsa8AVX2 where the CPU
// has it, x/crypto elsewhere) with one call of x/crypto's Salsa20 over the
// same blocks, for runs of one to eight consecutive blocks from random
// counters, from counters whose low word carries into the high one within
// the run, and from counters at the end of the 64-bit range.
func TestBlocks_MatchXCryptoSalsa20(t *testing.T) {
	t.Logf("salsa8AVX2 in use: %v", hasAVX2)
	rng := mrand.New(mrand.NewPCG(3, 4))
	for i := range 3000 {
		var key [32]byte
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		b := newMsgBox(&key, prefixMessageC)
		n, ctr, k := rng.Uint64(), rng.Uint64(), 1+i%8
		switch i % 3 {
		case 1:
			ctr = 1<<32 - uint64(rng.IntN(8)) // the low word carries
		case 2:
			ctr = ^uint64(0) - uint64(rng.IntN(7)) // the 64-bit counter wraps
		}
		var l lanes
		for j := range k {
			l.set(j, n, ctr+uint64(j))
		}
		var got [512]byte
		b.blocks(&got, &l, k)
		want := make([]byte, 64*k)
		c := salsaCounter(n, ctr)
		salsa.XORKeyStream(want, want, &c, &b.key)
		require.Equal(t, want, got[:64*k], "%d blocks from counter %#x", k, ctr)
	}
}

// TestHasAVX2_IsOffUnderGODEBUGCPUAVX2Off runs this test again in a child
// process with GODEBUG=cpu.avx2=off: there x/sys/cpu must report no AVX2,
// so that msgBox uses neither salsa8AVX2 nor batches, and the CI step run
// with that setting tests the x/crypto path.
func TestHasAVX2_IsOffUnderGODEBUGCPUAVX2Off(t *testing.T) {
	if strings.Contains(os.Getenv("GODEBUG"), "cpu.avx2=off") {
		var key [32]byte
		mb := newMsgBox(&key, prefixMessageC)
		require.False(t, hasAVX2)
		require.False(t, mb.wide)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHasAVX2_IsOffUnderGODEBUGCPUAVX2Off$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "GODEBUG=cpu.avx2=off")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestHasAVX2_IsOffUnderGODEBUGCPUAVX2Off")
}

// BenchmarkBlocks compares a pass of eight blocks (blocks: salsa8AVX2
// where the CPU has it) with x/crypto's Salsa20 on one to eight blocks.
func BenchmarkBlocks(b *testing.B) {
	var key [32]byte
	mb := newMsgBox(&key, prefixMessageC)
	var l lanes
	var out [512]byte
	b.Run("pass-of-8", func(b *testing.B) {
		for b.Loop() {
			mb.blocks(&out, &l, 8)
		}
	})
	for _, k := range []int{1, 2, 3, 4, 8} {
		b.Run("xcrypto-"+string(rune('0'+k)), func(b *testing.B) {
			var c [16]byte
			for b.Loop() {
				salsa.XORKeyStream(out[:64*k], out[:64*k], &c, &mb.key)
			}
		})
	}
}
