//go:build amd64 && !purego

package curve

import "golang.org/x/sys/cpu"

// hasAVX2 reports whether this CPU runs salsa8AVX2 (salsa_amd64.s). Like
// the runtime, x/sys/cpu reads GODEBUG at start-up: with cpu.avx2=off it
// reports no AVX2 and the pure x/crypto path runs (a test checks this).
var hasAVX2 = cpu.X86.HasAVX2

// blocks sets blocks 0 to k-1 of ks to the Salsa20 blocks whose input
// words 6 to 9 are lanes 0 to k-1 of l. Where the CPU has AVX2,
// salsa8AVX2 computes all eight lanes in one pass; a single block is
// cheaper from x/crypto (docs/BENCHMARKS.md).
func (b *msgBox) blocks(ks *[512]byte, l *lanes, k int) {
	if hasAVX2 && k > 1 {
		salsa8AVX2(ks, &b.state, (*[4][8]uint32)(l))
		return
	}
	b.blocksGeneric(ks, l, k)
}
