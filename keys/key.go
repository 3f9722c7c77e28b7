package keys

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// Size is the length in bytes of a CURVE key (public or secret).
const Size = 32

// ErrInvalid is returned (wrapped) when a key cannot be parsed.
var ErrInvalid = errors.New("invalid CURVE key")

// Key is a 32-byte CURVE (Curve25519) public key. Its text form is Z85 (40
// characters), the form libzmq uses; Parse also accepts base64url without
// padding (43 characters, VOLTTRON's form) and hex (64 characters).
type Key [Size]byte

// Secret is a 32-byte CURVE secret key. Its String method never reveals
// the key; use Z85 to obtain the text form deliberately.
type Secret [Size]byte

// Pair is a CURVE long-term key pair.
type Pair struct {
	Public Key
	Secret Secret
}

// Parse parses a key in Z85 (40 characters), base64url with or without
// padding (43 or 44 characters) or hex (64 characters). Surrounding white
// space is ignored. The error wraps ErrInvalid and says which forms were
// expected.
func Parse(s string) (Key, error) {
	var k Key
	b, err := decodeKeyText(strings.TrimSpace(s))
	if err != nil {
		return k, err
	}
	copy(k[:], b)
	return k, nil
}

// ParseSecret parses a secret key in any of the forms Parse accepts.
// Errors never include the key text.
func ParseSecret(s string) (Secret, error) {
	var k Secret
	b, err := decodeKeyText(strings.TrimSpace(s))
	if err != nil {
		return k, fmt.Errorf("%w: secret key is not Z85 (40 chars), base64url (43 chars) or hex (64 chars)", ErrInvalid)
	}
	copy(k[:], b)
	return k, nil
}

func decodeKeyText(s string) ([]byte, error) {
	switch len(s) {
	case 40:
		b, err := Z85Decode(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bad Z85: %v", ErrInvalid, err)
		}
		return b, nil
	case 43, 44:
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			return nil, fmt.Errorf("%w: bad base64url: %v", ErrInvalid, err)
		}
		if len(b) != Size {
			return nil, fmt.Errorf("%w: base64url decodes to %d bytes, want %d", ErrInvalid, len(b), Size)
		}
		return b, nil
	case 64:
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bad hex: %v", ErrInvalid, err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("%w: %d characters; want Z85 (40), base64url (43) or hex (64)", ErrInvalid, len(s))
	}
}

// String returns the key in Z85.
func (k Key) String() string { return k.Z85() }

// Z85 returns the key in Z85 (40 characters).
func (k Key) Z85() string { s, _ := Z85Encode(k[:]); return s }

// Base64URL returns the key in base64url without padding (VOLTTRON's form).
func (k Key) Base64URL() string { return base64.RawURLEncoding.EncodeToString(k[:]) }

// Hex returns the key in lower-case hex.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether the key is all zero bytes (unset).
func (k Key) IsZero() bool { return k == Key{} }

// MarshalText implements encoding.TextMarshaler (Z85).
func (k Key) MarshalText() ([]byte, error) { return []byte(k.Z85()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (any form Parse accepts).
func (k *Key) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// String never reveals the secret key.
func (s Secret) String() string { return "[secret key redacted]" }

// GoString never reveals the secret key.
func (s Secret) GoString() string { return s.String() }

// Z85 returns the secret key in Z85. Handle the result as a secret.
func (s Secret) Z85() string { z, _ := Z85Encode(s[:]); return z }

// Public derives the public key of this secret key.
func (s Secret) Public() Key {
	var k Key
	pub, err := curve25519.X25519(s[:], curve25519.Basepoint)
	if err != nil {
		// Only a low-order input can fail, and Basepoint is not one.
		return k
	}
	copy(k[:], pub)
	return k
}

// Generate returns a new random key pair from crypto/rand.
func Generate() (Pair, error) {
	var kp Pair
	if _, err := rand.Read(kp.Secret[:]); err != nil {
		return kp, fmt.Errorf("generate key pair: %w", err)
	}
	kp.Public = kp.Secret.Public()
	return kp, nil
}

// String shows only the public key.
func (kp Pair) String() string { return "Pair{public: " + kp.Public.Z85() + "}" }
