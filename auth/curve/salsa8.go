package curve

import (
	"encoding/binary"
	"math/bits"

	"golang.org/x/crypto/salsa20/salsa"
)

//go:generate go run -C internal/asmgen . -out ../../salsa_amd64.s -stubs ../../salsa_amd64_stubs.go -pkg curve

// lanes holds input words 6 to 9 of Salsa20 (the 8-byte nonce, then the
// block counter) for eight blocks: word w of block i is lanes[w-6][i].
type lanes [4][8]uint32

// set sets lane i to block ctr of the MESSAGE nonce counter n: the nonce
// is n big-endian, the block counter little-endian, as in salsaCounter.
func (l *lanes) set(i int, n, ctr uint64) {
	l[0][i] = bits.ReverseBytes32(uint32(n >> 32))
	l[1][i] = bits.ReverseBytes32(uint32(n))
	l[2][i] = uint32(ctr)
	l[3][i] = uint32(ctr >> 32)
}

// salsaState returns the input words of Salsa20 under key, with words 6
// to 9 zero: what salsa8AVX2 broadcasts to its eight blocks.
func salsaState(key *[32]byte) [16]uint32 {
	k := func(i int) uint32 { return binary.LittleEndian.Uint32(key[4*i:]) }
	s := func(i int) uint32 { return binary.LittleEndian.Uint32(salsa.Sigma[4*i:]) }
	return [16]uint32{
		s(0), k(0), k(1), k(2),
		k(3), s(1), 0, 0,
		0, 0, s(2), k(4),
		k(5), k(6), k(7), s(3),
	}
}

// blocksGeneric is blocks without salsa8AVX2, one call of x/crypto's
// Salsa20 per block: the reference that the tests compare salsa8AVX2
// with, and what runs without AVX2.
func (b *msgBox) blocksGeneric(ks *[512]byte, l *lanes, k int) {
	for i := range k {
		var c [16]byte
		for w := range 4 {
			binary.LittleEndian.PutUint32(c[4*w:], l[w][i])
		}
		blk := ks[64*i : 64*i+64]
		clear(blk)
		salsa.XORKeyStream(blk, blk, &c, &b.key)
	}
}
