//go:build amd64 && !purego

package curve

import "golang.org/x/sys/cpu"

// kernels returns the assembly Salsa20 kernels this CPU can run, so that
// the tests compare each with the pure-Go blocks, not only the one salsa8
// picks.
func kernels() map[string]func(out *[8][64]byte, state *[16]uint32, lanes *[4][8]uint32) {
	k := map[string]func(out *[8][64]byte, state *[16]uint32, lanes *[4][8]uint32){}
	if hasAVX512() {
		k["avx512"] = salsa8AVX512
	}
	if cpu.X86.HasAVX2 {
		k["avx2"] = salsa8ByAVX2
	}
	return k
}
