//go:build !amd64 || purego

package curve

// hasAVX2 is false: salsa8AVX2 exists only on amd64, without the purego
// tag.
const hasAVX2 = false

// blocks sets blocks 0 to k-1 of ks to the Salsa20 blocks whose input
// words 6 to 9 are lanes 0 to k-1 of l.
func (b *msgBox) blocks(ks *[512]byte, l *lanes, k int) { b.blocksGeneric(ks, l, k) }
