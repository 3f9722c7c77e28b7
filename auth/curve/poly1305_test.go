package curve

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/poly1305"
)

// TestPoly1305_PassesRFC8439EdgeCaseVectors checks the Poly1305 that the
// boxes use (golang.org/x/crypto/poly1305; its pure-Go code under the
// purego tag) against test vectors 1 and 5 to 11 of RFC 8439 section A.3,
// which aim at the final reduction and the additions around it. A box's
// Poly1305 key is keystream, so these keys cannot be put through msgBox;
// the box vectors in msgbox_test.go check the tags that msgBox computes.
func TestPoly1305_PassesRFC8439EdgeCaseVectors(t *testing.T) {
	for _, v := range []struct{ name, key, msg, tag string }{
		{
			"#1 all zero",
			"0000000000000000000000000000000000000000000000000000000000000000",
			"0000000000000000000000000000000000000000000000000000000000000000" +
				"0000000000000000000000000000000000000000000000000000000000000000",
			"00000000000000000000000000000000",
		},
		{
			"#5 h not fully reduced: h >= p before the final reduction",
			"0200000000000000000000000000000000000000000000000000000000000000",
			"ffffffffffffffffffffffffffffffff",
			"03000000000000000000000000000000",
		},
		{
			"#6 adding s overflows 2^128",
			"02000000000000000000000000000000ffffffffffffffffffffffffffffffff",
			"02000000000000000000000000000000",
			"03000000000000000000000000000000",
		},
		{
			"#7 a limb of all ones and a carry from the limb below",
			"0100000000000000000000000000000000000000000000000000000000000000",
			"ffffffffffffffffffffffffffffffff" +
				"f0ffffffffffffffffffffffffffffff" +
				"11000000000000000000000000000000",
			"05000000000000000000000000000000",
		},
		{
			"#8 h is exactly 2^130-5",
			"0100000000000000000000000000000000000000000000000000000000000000",
			"ffffffffffffffffffffffffffffffff" +
				"fbfefefefefefefefefefefefefefefe" +
				"01010101010101010101010101010101",
			"00000000000000000000000000000000",
		},
		{
			"#9 h is exactly 2^130-6",
			"0200000000000000000000000000000000000000000000000000000000000000",
			"fdffffffffffffffffffffffffffffff",
			"faffffffffffffffffffffffffffffff",
		},
		{
			"#10 the 5*H+L reduction gives a 131-bit intermediate result",
			"0100000000000000040000000000000000000000000000000000000000000000",
			"e33594d7505e43b90000000000000000" +
				"3394d7505e4379cd0100000000000000" +
				"00000000000000000000000000000000" +
				"01000000000000000000000000000000",
			"14000000000000005500000000000000",
		},
		{
			"#11 the 5*H+L reduction gives a 131-bit final result",
			"0100000000000000040000000000000000000000000000000000000000000000",
			"e33594d7505e43b90000000000000000" +
				"3394d7505e4379cd0100000000000000" +
				"00000000000000000000000000000000",
			"13000000000000000000000000000000",
		},
		{
			"NaCl onetimeauth: the tag of the NaCl box vector",
			naclStream32,
			naclBox[32:],
			naclBox[:32],
		},
	} {
		t.Run(v.name, func(t *testing.T) {
			key, msg, tag := unhex32(t, v.key), unhex(t, v.msg), (*[16]byte)(unhex(t, v.tag))
			var got [16]byte
			poly1305.Sum(&got, msg, key)
			require.Equal(t, *tag, got)
			require.True(t, poly1305.Verify(tag, msg, key))
			for bit := range 128 {
				bad := *tag
				bad[bit/8] ^= 1 << (bit % 8)
				require.False(t, poly1305.Verify(&bad, msg, key), "tag bit %d flipped", bit)
			}
		})
	}
}
