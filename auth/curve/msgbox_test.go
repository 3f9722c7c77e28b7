package curve

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/poly1305"
)

// The crypto_box example of D. J. Bernstein, "Cryptography in NaCl"
// (2009), also the box and secretbox test vectors of NaCl and libsodium:
// Alice's secret key, Bob's public key, their crypto_box_beforenm key (the
// paper's firstkey), the nonce, a 131-byte message and its box (the
// 16-byte Poly1305 tag, then the ciphertext). The box's Poly1305 key is
// the first 32 bytes of the XSalsa20 keystream (NaCl's stream3 vector),
// and the tag is NaCl's onetimeauth vector.
const (
	naclAliceSecret = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
	naclAlicePublic = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
	naclBobSecret   = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
	naclBobPublic   = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
	naclFirstKey    = "1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389"
	naclNonce       = "69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37"
	naclStream32    = "eea6a7251c1e72916d11c2cb214d3c252539121d8e234e652d651fa4c8cff880"
	naclMessage     = "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffc" +
		"e5ecbaaf33bd751a1ac728d45e6c61296cdc3c01233561f41db66cce314adb31" +
		"0e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde" +
		"048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f93776384864" +
		"5e0705"
	naclBox = "f3ffc7703f9400e52a7dfb4b3d3305d9" +
		"8e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186a" +
		"c0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738" +
		"b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da" +
		"99832b61ca01b6de56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74" +
		"e355a5"
	// NaCl's stream test: SHA-512 of the first 4,194,304 bytes of the
	// XSalsa20 keystream of naclFirstKey and naclNonce.
	naclStreamSHA512 = "2bd8e7db6877539e4f2b295ee415cd378ae214aa3beb3e08e911a5bd4a25e6ac" +
		"16ca283c79c34c08c99f7bdb560111e8cac1ae65eea08ac384d7a591461ab6e3"
	// secretbox of "hello" under naclFirstKey and naclNonce (kalium's
	// secretbox fixture): a box whose plaintext fits in block 0.
	naclHelloBox = "1b294418500a75e29daebfe2764e569858fb08361b"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

func unhex32(t *testing.T, s string) *[32]byte {
	t.Helper()
	return (*[32]byte)(unhex(t, s))
}

// naclVectorBox returns the msgBox of the NaCl vector's key and nonce
// prefix, and the nonce counter (the nonce's last 8 bytes).
func naclVectorBox(t *testing.T) (msgBox, uint64) {
	t.Helper()
	nonce := unhex(t, naclNonce)
	return newMsgBox(unhex32(t, naclFirstKey), string(nonce[:16])), binary.BigEndian.Uint64(nonce[16:])
}

// TestMsgBox_SealsAndOpensTheNaClBoxVector puts the crypto_box vector of
// "Cryptography in NaCl" through msgBox: the key that x/crypto's
// box.Precompute derives from Alice's and Bob's keys (either way round) is
// the paper's, sealFrame gives the paper's 147 bytes (so the Poly1305 tag
// computed through the box is NaCl's onetimeauth answer), open gives the
// message back and refuses the box with any bit of its tag or ciphertext
// flipped, or under another counter.
func TestMsgBox_SealsAndOpensTheNaClBoxVector(t *testing.T) {
	var k1, k2 [32]byte
	box.Precompute(&k1, unhex32(t, naclBobPublic), unhex32(t, naclAliceSecret))
	box.Precompute(&k2, unhex32(t, naclAlicePublic), unhex32(t, naclBobSecret))
	require.Equal(t, unhex32(t, naclFirstKey), &k1)
	require.Equal(t, k1, k2)

	mb, n := naclVectorBox(t)
	msg, want := unhex(t, naclMessage), unhex(t, naclBox)
	require.Len(t, msg, 131)
	require.Len(t, want, 147)
	require.Equal(t, want, mb.sealFrame(nil, msg[0], msg[1:], n))
	require.Equal(t, want, mb.seal(nil, msg, n))

	var tag [16]byte
	poly1305.Sum(&tag, want[16:], unhex32(t, naclStream32))
	require.Equal(t, want[:16], tag[:], "the tag is Poly1305 under the first 32 bytes of keystream")

	plain, ok := mb.open([]byte("x"), want, n)
	require.True(t, ok)
	require.Equal(t, append([]byte("x"), msg...), plain)
	for bit := range 8 * len(want) {
		bad := append([]byte(nil), want...)
		bad[bit/8] ^= 1 << (bit % 8)
		_, ok := mb.open(nil, bad, n)
		require.False(t, ok, "bit %d flipped", bit)
	}
	_, ok = mb.open(nil, want, n+1)
	require.False(t, ok, "another counter")
}

// TestMsgBox_SealsTheSecretboxVectors checks msgBox against secretbox
// answers under the NaCl key and nonce: x/crypto's secretbox.Seal gives
// the NaCl box (crypto_box_afternm is secretbox under the precomputed
// key), and "hello", which fits in keystream block 0, gives the published
// 21-byte box.
func TestMsgBox_SealsTheSecretboxVectors(t *testing.T) {
	mb, n := naclVectorBox(t)
	nonce := (*[24]byte)(unhex(t, naclNonce))
	msg := unhex(t, naclMessage)
	require.Equal(t, unhex(t, naclBox), secretbox.Seal(nil, msg, nonce, unhex32(t, naclFirstKey)))

	hello := unhex(t, naclHelloBox)
	require.Equal(t, hello, secretbox.Seal(nil, []byte("hello"), nonce, unhex32(t, naclFirstKey)))
	require.Equal(t, hello, mb.sealFrame(nil, 'h', []byte("ello"), n))
	plain, ok := mb.open(nil, hello, n)
	require.True(t, ok)
	require.Equal(t, "hello", string(plain))
}

// TestMsgBox_KeystreamMatchesTheNaClStreamVector seals 4 MiB - 32 zero
// bytes, whose ciphertext is the keystream after the Poly1305 key: with
// the key (NaCl's stream3 vector) in front, its SHA-512 is NaCl's stream
// vector, which covers the long-frame path block after block.
func TestMsgBox_KeystreamMatchesTheNaClStreamVector(t *testing.T) {
	mb, n := naclVectorBox(t)
	sealed := mb.seal(nil, make([]byte, 4194304-32), n)
	h := sha512.New()
	h.Write(unhex(t, naclStream32))
	h.Write(sealed[boxOverhead:])
	require.Equal(t, naclStreamSHA512, hex.EncodeToString(h.Sum(nil)))
}

// boxLengths is every plaintext length up to 300 (block 0 holds 32 bytes,
// the head's four blocks 224) and lengths around the later block
// boundaries.
func boxLengths() []int {
	var lengths []int
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	return append(lengths, 479, 480, 481, 511, 512, 513, 543, 544, 545, 1000, 4096, 65536+7)
}

// TestMsgBox_MatchesNaclBoxInBothDirections checks, for every length of
// boxLengths, under both MESSAGE nonce prefixes and random keys and
// counters, that msgBox seals exactly what nacl/box.SealAfterPrecomputation
// and secretbox.Seal seal under the MESSAGE nonce (seal and sealFrame),
// that box.OpenAfterPrecomputation opens msgBox's boxes and msgBox opens
// nacl/box's, and that msgBox refuses a box under another counter or with
// a bit of its tag or ciphertext flipped.
func TestMsgBox_MatchesNaclBoxInBothDirections(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, prefix := range []string{prefixMessageC, prefixMessageS} {
		for _, n := range boxLengths() {
			var key [32]byte
			_, _ = rand.Read(key[:])
			plain := make([]byte, n)
			_, _ = rand.Read(plain)
			ctr := rng.Uint64()
			if n%7 == 0 {
				ctr = uint64(n) // small counters too
			}
			mb := newMsgBox(&key, prefix)
			nonce := shortNonce(prefix, ctr)
			want := box.SealAfterPrecomputation([]byte("hdr"), plain, &nonce, &key)
			require.Equal(t, want, secretbox.Seal([]byte("hdr"), plain, &nonce, &key))
			got := mb.seal([]byte("hdr"), plain, ctr)
			require.Equal(t, want, got, "seal, %d bytes, counter %d", n, ctr)
			if n > 0 {
				framed := mb.sealFrame([]byte("hdr"), plain[0], plain[1:], ctr)
				require.Equal(t, want, framed, "sealFrame, %d bytes", n)
			}

			opened, ok := box.OpenAfterPrecomputation(nil, got[3:], &nonce, &key)
			require.True(t, ok, "nacl/box opens msgBox's box, %d bytes", n)
			require.Equal(t, string(plain), string(opened))
			opened, ok = mb.open([]byte("x"), want[3:], ctr)
			require.True(t, ok, "msgBox opens nacl/box's box, %d bytes", n)
			require.Equal(t, append([]byte("x"), plain...), opened)

			_, ok = mb.open(nil, got[3:], ctr+1)
			require.False(t, ok, "wrong counter opens")
			other := newMsgBox(&key, prefixMessageC)
			if prefix == prefixMessageC {
				other = newMsgBox(&key, prefixMessageS)
			}
			_, ok = other.open(nil, got[3:], ctr)
			require.False(t, ok, "the other direction opens")
			tampered := append([]byte(nil), got[3:]...)
			tampered[rng.IntN(len(tampered))] ^= byte(1 << rng.IntN(8))
			_, ok = mb.open(nil, tampered, ctr)
			require.False(t, ok, "tampered box opens, %d bytes", n)
		}
	}
}

func TestMsgBox_RefusesABoxShorterThanItsTag(t *testing.T) {
	var key [32]byte
	mb := newMsgBox(&key, prefixMessageC)
	for n := range boxOverhead {
		_, ok := mb.open(nil, make([]byte, n), 1)
		require.False(t, ok, "%d bytes", n)
	}
}

// TestMsgBox_OpenWritesNothingForAForgedBox checks that open verifies the
// tag before it decrypts: a forged box leaves dst's spare capacity as it
// was.
func TestMsgBox_OpenWritesNothingForAForgedBox(t *testing.T) {
	var key [32]byte
	mb := newMsgBox(&key, prefixMessageS)
	sealed := mb.sealFrame(nil, 0, make([]byte, 300), 9)
	sealed[0] ^= 1
	dst := make([]byte, 0, 400)
	for i := range dst[:cap(dst)] {
		dst[:cap(dst)][i] = 0xAA
	}
	out, ok := mb.open(dst, sealed, 9)
	require.False(t, ok)
	require.Nil(t, out)
	for i, c := range dst[:cap(dst)] {
		require.Equal(t, byte(0xAA), c, "byte %d of dst", i)
	}
}

// FuzzMsgBox_MatchesNaclBox seals fuzzed data under a fuzzed key and nonce
// counter: the box must be nacl/box's, nacl/box must open it, msgBox must
// open it and nacl/box's, and refuse it with a flipped bit.
func FuzzMsgBox_MatchesNaclBox(f *testing.F) {
	f.Add([]byte("VIP1"), uint64(1), byte(0), uint16(0))
	f.Add(make([]byte, 200), uint64(7), byte(1), uint16(9))
	f.Add(make([]byte, 223), ^uint64(0), byte(2), uint16(3000))
	f.Add(make([]byte, 1000), ^uint64(0)-3, byte(3), uint16(17))
	f.Fuzz(func(t *testing.T, data []byte, n uint64, seed byte, flip uint16) {
		var key [32]byte
		for i := range key {
			key[i] = seed ^ byte(7*i)
		}
		prefix := prefixMessageC
		if seed&1 == 1 {
			prefix = prefixMessageS
		}
		mb := newMsgBox(&key, prefix)
		nonce := shortNonce(prefix, n)
		plain := append([]byte{seed}, data...)
		want := box.SealAfterPrecomputation(nil, plain, &nonce, &key)
		got := mb.sealFrame(nil, seed, data, n)
		require.Equal(t, want, got)
		opened, ok := box.OpenAfterPrecomputation(nil, got, &nonce, &key)
		require.True(t, ok)
		require.Equal(t, plain, opened)
		opened, ok = mb.open(nil, want, n)
		require.True(t, ok)
		require.Equal(t, plain, opened)
		bit := int(flip) % (8 * len(got))
		got[bit/8] ^= 1 << (bit % 8)
		_, ok = mb.open(nil, got, n)
		require.False(t, ok)
	})
}

// seal appends the box of plain under the nonce counter n to dst: the
// 16-byte Poly1305 tag, then the ciphertext. The conn always seals a
// flags byte and data (sealFrame); tests seal any plaintext, the empty
// one too.
func (b *msgBox) seal(dst, plain []byte, n uint64) []byte {
	var buf [headSize]byte
	head := b.head(&buf, n, len(plain))
	start := len(dst)
	dst = grow(dst, boxOverhead+len(plain))
	ct := dst[start+boxOverhead:]
	b.xor(ct, plain, head, 32, n)
	poly1305.Sum((*[16]byte)(dst[start:]), ct, (*[32]byte)(head[:32]))
	return dst
}
