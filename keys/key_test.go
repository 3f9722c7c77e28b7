package keys_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/keys"
)

// Key pairs from the libzmq zmq_curve(7) manual page.
const (
	zmqServerPublic = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
	zmqServerSecret = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
	zmqClientPublic = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
	zmqClientSecret = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"
)

func TestZ85_RFC32TestVector(t *testing.T) {
	data := []byte{0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B}
	s, err := keys.Z85Encode(data)
	require.NoError(t, err)
	assert.Equal(t, "HelloWorld", s)
	back, err := keys.Z85Decode("HelloWorld")
	require.NoError(t, err)
	assert.Equal(t, data, back)
}

func TestZ85_RejectsBadInput(t *testing.T) {
	_, err := keys.Z85Encode([]byte{1, 2, 3})
	assert.ErrorContains(t, err, "multiple of 4")
	_, err = keys.Z85Decode("Hello")
	require.NoError(t, err)
	_, err = keys.Z85Decode("Hell")
	assert.ErrorContains(t, err, "multiple of 5")
	_, err = keys.Z85Decode("Hel\"o")
	assert.ErrorContains(t, err, "offset 3")
	_, err = keys.Z85Decode("#####") // 85^5-1 overflows 32 bits
	assert.ErrorContains(t, err, "overflows")
}

func TestKey_SecretDerivesLibzmqPublicKey(t *testing.T) {
	for _, kp := range [][2]string{{zmqServerPublic, zmqServerSecret}, {zmqClientPublic, zmqClientSecret}} {
		sec, err := keys.ParseSecret(kp[1])
		require.NoError(t, err)
		assert.Equal(t, kp[0], sec.Public().Z85())
	}
}

func TestParseKey_AcceptsZ85Base64URLAndHex(t *testing.T) {
	k, err := keys.Parse(zmqServerPublic)
	require.NoError(t, err)
	for _, form := range []string{k.Z85(), k.Base64URL(), k.Base64URL() + "=", k.Hex(), "  " + k.Z85() + "\n"} {
		got, err := keys.Parse(form)
		require.NoError(t, err, form)
		assert.Equal(t, k, got, form)
	}
	assert.Len(t, k.Base64URL(), 43)
	assert.Equal(t, zmqServerPublic, k.String())
}

func TestParseKey_RejectsMalformedKeysWithReason(t *testing.T) {
	cases := map[string]string{
		"short":                       "5 characters",
		strings.Repeat("~", 40):       "bad Z85",
		strings.Repeat("*", 43):       "bad base64url",
		strings.Repeat("g", 64):       "bad hex",
		zmqServerPublic[:39] + "\x00": "bad Z85",
	}
	for in, want := range cases {
		_, err := keys.Parse(in)
		require.ErrorIs(t, err, keys.ErrInvalid, in)
		assert.ErrorContains(t, err, want, in)
	}
}

func TestSecretKey_NeverPrinted(t *testing.T) {
	kp, err := keys.Generate()
	require.NoError(t, err)
	for _, s := range []string{kp.String(), kp.Secret.String(), kp.Secret.GoString()} {
		assert.NotContains(t, s, kp.Secret.Z85())
	}
	assert.Contains(t, kp.String(), kp.Public.Z85())
}

func TestKeystore_WritesMode0600AndRoundTrips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "keystore.json")
	kp, created, err := keys.LoadOrCreate(path)
	require.NoError(t, err)
	assert.True(t, created)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	again, created, err := keys.LoadOrCreate(path)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, kp, again)
}

func TestKeystore_RefusesFileReadableByOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keystore.json")
	kp, err := keys.Generate()
	require.NoError(t, err)
	require.NoError(t, keys.Save(path, kp))
	require.NoError(t, os.Chmod(path, 0o644))
	_, err = keys.Load(path)
	require.ErrorIs(t, err, keys.ErrInsecureFile)
	assert.ErrorContains(t, err, path)
	assert.ErrorContains(t, err, "0644")
}

func TestKeystore_ReadsVolttronBase64Form(t *testing.T) {
	kp, err := keys.Generate()
	require.NoError(t, err)
	sec, err := keys.Parse(kp.Secret.Z85())
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "keystore.json")
	body := `{"public": "` + kp.Public.Base64URL() + `", "secret": "` + sec.Base64URL() + `"}`
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	got, err := keys.Load(path)
	require.NoError(t, err)
	assert.Equal(t, kp, got)
}

func TestKeystore_RejectsMismatchedPair(t *testing.T) {
	a, _ := keys.Generate()
	b, _ := keys.Generate()
	path := filepath.Join(t.TempDir(), "keystore.json")
	body := `{"public": "` + a.Public.Z85() + `", "secret": "` + b.Secret.Z85() + `"}`
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	_, err := keys.Load(path)
	require.ErrorIs(t, err, keys.ErrInvalid)
	assert.ErrorContains(t, err, "does not belong")
	assert.NotContains(t, err.Error(), b.Secret.Z85())
}
