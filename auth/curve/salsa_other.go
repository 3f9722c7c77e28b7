//go:build !amd64 || purego

package curve

// wideSalsa reports whether this CPU runs salsa8 in one pass of eight
// blocks: only amd64 with AVX-512VL does.
func wideSalsa() bool { return false }

// salsa8 computes eight Salsa20/20 blocks; see salsa8Generic.
func salsa8(out *[8][64]byte, state *[16]uint32, lanes *[4][8]uint32) {
	salsa8Generic(out, state, lanes)
}
