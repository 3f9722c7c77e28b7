//go:build amd64 && !purego

package curve

import (
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSalsa8AVX2_MatchesTheReference compares the kernel itself with
// blocksGeneric (x/crypto one block at a time) on random keys, with eight
// unrelated nonces and block counters, some of them about to carry from
// the counter's low word into its high one.
func TestSalsa8AVX2_MatchesTheReference(t *testing.T) {
	if !hasAVX2 {
		t.Skip("this CPU has no AVX2 (or GODEBUG turned it off)")
	}
	rng := mrand.New(mrand.NewPCG(7, 8))
	for range 2000 {
		var key [32]byte
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		b := newMsgBox(&key, prefixMessageS)
		var l lanes
		for i := range 8 {
			ctr := rng.Uint64()
			if i%3 == 0 {
				ctr = 1<<32 - 1 + uint64(i%2)
			}
			l.set(i, rng.Uint64(), ctr)
		}
		var got, want [512]byte
		salsa8AVX2(&got, &b.state, (*[4][8]uint32)(&l))
		b.blocksGeneric(&want, &l, 8)
		require.Equal(t, want, got)
	}
}
