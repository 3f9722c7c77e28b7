package curve

import (
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/poly1305"
)

// TestPolySum_MatchesXCrypto compares polySum with poly1305.Sum on random
// keys and messages of every length up to and past shortMAC, and on keys
// and messages of all ones, which push the accumulator to its largest
// values before each reduction; polyVerify must accept the tag and refuse
// it with any bit flipped.
func TestPolySum_MatchesXCrypto(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(7, 8))
	check := func(msg []byte, key *[32]byte) {
		t.Helper()
		var got, want [16]byte
		polySum(&got, msg, key)
		poly1305.Sum(&want, msg, key)
		require.Equal(t, want, got, "%d bytes, key %x", len(msg), key[:])
		require.True(t, polyVerify(&want, msg, key))
		want[rng.IntN(16)] ^= byte(1 << rng.IntN(8))
		require.False(t, polyVerify(&want, msg, key))
	}
	for n := 0; n <= 2*shortMAC+17; n++ {
		for range 200 {
			var key [32]byte
			for i := range key {
				key[i] = byte(rng.Uint32())
			}
			msg := make([]byte, n)
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			check(msg, &key)
		}
		var key [32]byte
		ones := make([]byte, n)
		for i := range ones {
			ones[i] = 0xff
		}
		for i := range key {
			key[i] = 0xff
		}
		check(ones, &key)
		clear(key[:16]) // r = 0: the tag is s, whatever the message
		check(ones, &key)
	}
}

// FuzzPolySum compares polySum with poly1305.Sum.
func FuzzPolySum(f *testing.F) {
	f.Add([]byte("VIP1"), []byte("0123456789abcdef0123456789abcdef"))
	f.Add(make([]byte, 64), make([]byte, 32))
	f.Fuzz(func(t *testing.T, msg, k []byte) {
		var key [32]byte
		copy(key[:], k)
		var got, want [16]byte
		polySum(&got, msg, &key)
		poly1305.Sum(&want, msg, &key)
		if got != want {
			t.Fatalf("%d bytes: polySum %x, poly1305.Sum %x", len(msg), got, want)
		}
	})
}

// BenchmarkPolySum compares polySum with poly1305.Sum on the lengths that
// VIP frames' boxes MAC (flags byte + data).
func BenchmarkPolySum(b *testing.B) {
	var key [32]byte
	var out [16]byte
	for _, n := range []int{4, 11, 17, 33, 64, 201, 4097} {
		msg := make([]byte, n)
		b.Run(sizeName(n)+"/polySum", func(b *testing.B) {
			for b.Loop() {
				polySum(&out, msg, &key)
			}
		})
		b.Run(sizeName(n)+"/x-crypto", func(b *testing.B) {
			for b.Loop() {
				poly1305.Sum(&out, msg, &key)
			}
		})
	}
}
