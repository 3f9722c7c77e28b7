package keys_test

import (
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/keys"
)

// FuzzZ85 checks the Z85 codec and key parsing of package auth (RFC 32):
// encoding round-trips, decoding arbitrary text never panics and what
// decodes re-encodes to the same text, and a 32-byte key parses the same
// from Z85, base64url and hex.
func FuzzZ85(f *testing.F) {
	f.Add([]byte{0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B}) // RFC 32: "HelloWorld"
	f.Add(make([]byte, 32))
	f.Add([]byte("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"))
	f.Add([]byte("%%%%%"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Arbitrary text: no panic; a successful decode re-encodes exactly.
		if d, err := keys.Z85Decode(string(b)); err == nil {
			s, err := keys.Z85Encode(d)
			require.NoError(t, err)
			require.Equal(t, string(b), s)
		}
		_, _ = keys.Parse(string(b))

		// Arbitrary bytes: encode then decode is the identity.
		raw := b[:len(b)/4*4]
		s, err := keys.Z85Encode(raw)
		require.NoError(t, err)
		require.Len(t, s, len(raw)/4*5)
		d, err := keys.Z85Decode(s)
		require.NoError(t, err)
		require.Equal(t, string(raw), string(d))
		require.Len(t, d, len(raw))

		if len(raw) >= keys.Size {
			var want keys.Key
			copy(want[:], raw)
			for _, text := range []string{want.Z85(), base64.RawURLEncoding.EncodeToString(want[:]), hex.EncodeToString(want[:])} {
				k, err := keys.Parse(text)
				require.NoError(t, err, text)
				require.Equal(t, want, k)
			}
		}
	})
}
