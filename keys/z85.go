package keys

import (
	"encoding/binary"
	"fmt"
)

// The Z85 alphabet of ZeroMQ RFC 32.
const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

// z85Decoder maps a character to its value plus one; zero means invalid.
var z85Decoder = func() (t [256]byte) {
	for i := 0; i < len(z85Alphabet); i++ {
		t[z85Alphabet[i]] = byte(i + 1)
	}
	return t
}()

// Z85Encode encodes b as Z85 (ZeroMQ RFC 32). The length of b must be a
// multiple of 4.
func Z85Encode(b []byte) (string, error) {
	if len(b)%4 != 0 {
		return "", fmt.Errorf("z85: input length %d is not a multiple of 4", len(b))
	}
	out := make([]byte, len(b)/4*5)
	for i, o := 0, 0; i < len(b); i, o = i+4, o+5 {
		v := binary.BigEndian.Uint32(b[i:])
		for j := 4; j >= 0; j-- {
			out[o+j] = z85Alphabet[v%85]
			v /= 85
		}
	}
	return string(out), nil
}

// Z85Decode decodes a Z85 string (ZeroMQ RFC 32). The length of s must be a
// multiple of 5. The error names the offset of the first bad character.
func Z85Decode(s string) ([]byte, error) {
	if len(s)%5 != 0 {
		return nil, fmt.Errorf("z85: input length %d is not a multiple of 5", len(s))
	}
	out := make([]byte, len(s)/5*4)
	for i, o := 0, 0; i < len(s); i, o = i+5, o+4 {
		var v uint64
		for j := 0; j < 5; j++ {
			d := z85Decoder[s[i+j]]
			if d == 0 {
				return nil, fmt.Errorf("z85: invalid character %q at offset %d", s[i+j], i+j)
			}
			v = v*85 + uint64(d-1)
		}
		if v > 0xFFFFFFFF {
			return nil, fmt.Errorf("z85: group at offset %d overflows 32 bits", i)
		}
		binary.BigEndian.PutUint32(out[o:], uint32(v))
	}
	return out, nil
}
