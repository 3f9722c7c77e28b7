package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/filelock"
	"github.com/capbus/capbus/keys"
)

// result is what one in-process capbus invocation produced.
type result struct {
	code           int
	stdout, stderr string
}

// capbus runs the command line in-process against home.
func capbus(t *testing.T, home string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--home", home}, args...)
	code := run(context.Background(), full, strings.NewReader(""), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func newKey(t *testing.T) string {
	t.Helper()
	kp, err := keys.Generate()
	require.NoError(t, err)
	return kp.Public.Z85()
}

// fileUnchanged asserts that a failing command left auth.json as it was.
func fileUnchanged(t *testing.T, path string, before []byte) {
	t.Helper()
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "a failed command must not change %s", path)
}

func TestKeygen_WritesKeystore0600AndPrintsPublicKey(t *testing.T) {
	home := t.TempDir()
	out := filepath.Join(home, "alice.json")
	r := capbus(t, home, "keygen", "--out", out)
	require.Equal(t, 0, r.code, r.stderr)
	kp, err := keys.Load(out)
	require.NoError(t, err)
	assert.Equal(t, kp.Public.Z85()+"\n", r.stdout)
	st, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	r = capbus(t, home, "keygen", "--out", out)
	assert.Equal(t, exitError, r.code)
	assert.Contains(t, r.stderr, "exists")
}

func TestServerKey_NoPlatformYetIsNotFound(t *testing.T) {
	r := capbus(t, t.TempDir(), "serverkey")
	assert.Equal(t, exitNotFound, r.code)
	assert.Contains(t, r.stderr, "platform run")
}

func TestAuthAdd_AddsEntryAndListShowsIt(t *testing.T) {
	home := t.TempDir()
	key := newKey(t)
	r := capbus(t, home, "auth", "add", "alice", "--credentials", key, "--grant", "can_read_temp", "--identity", "alice-agent")
	require.Equal(t, 0, r.code, r.stderr)

	r = capbus(t, home, "auth", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "alice")
	assert.Contains(t, r.stdout, "can_read_temp")
	assert.Contains(t, r.stdout, key[:8])

	r = capbus(t, home, "auth", "show", "alice")
	require.Equal(t, 0, r.code, r.stderr)
	k, err := keys.Parse(key)
	require.NoError(t, err)
	assert.Contains(t, r.stdout, key, "the CLI prints keys in Z85")
	data, err := os.ReadFile(filepath.Join(home, "auth.json"))
	require.NoError(t, err)
	assert.Contains(t, string(data), key, "entries the CLI writes store the key in Z85")
	assert.Contains(t, r.stdout, `"alice-agent"`)

	p, err := auth.LoadFile(filepath.Join(home, "auth.json"))
	require.NoError(t, err)
	user, err := p.Authenticate(k, "127.0.0.1:5000")
	require.NoError(t, err)
	assert.Equal(t, "alice", user)
}

func TestAuthCommands_BadInputLeavesFileUnchanged(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, "auth.json")
	key := newKey(t)
	require.Equal(t, 0, capbus(t, home, "auth", "add", "alice", "--credentials", key).code)
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"duplicate user", []string{"auth", "add", "alice", "--credentials", newKey(t)}, exitError, "already has an entry"},
		{"duplicate key", []string{"auth", "add", "bob", "--credentials", key}, exitError, "already used by user \"alice\""},
		{"malformed key", []string{"auth", "add", "bob", "--credentials", "not-a-key"}, exitUsage, "invalid CURVE key"},
		{"missing key", []string{"auth", "add", "bob"}, exitUsage, "--credentials is required"},
		{"unknown user update", []string{"auth", "update", "nobody", "--grant", "x"}, exitNotFound, "nobody"},
		{"unknown user remove", []string{"auth", "remove", "nobody"}, exitNotFound, "nobody"},
		{"unknown user disable", []string{"auth", "disable", "nobody"}, exitNotFound, "nobody"},
		{"unknown user show", []string{"auth", "show", "nobody"}, exitNotFound, "nobody"},
		{"revoke not held", []string{"auth", "update", "alice", "--revoke", "can_fly"}, exitNotFound, "can_fly"},
		{"undefined role would break file", []string{"auth", "update", "alice", "--roles", "no_such_role"}, exitError, "no_such_role"},
		{"group naming undefined role", []string{"auth", "group", "set", "ops", "no_such_role"}, exitError, "no_such_role"},
		{"remove unknown role", []string{"auth", "role", "remove", "ghost"}, exitNotFound, "ghost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := capbus(t, home, tc.args...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.msg)
			fileUnchanged(t, path, before)
		})
	}
}

func TestAuthUpdate_GrantRevokeEnableDisable(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, "auth.json")
	key := newKey(t)
	k, _ := keys.Parse(key)
	require.Equal(t, 0, capbus(t, home, "auth", "add", "bobby", "--credentials", key).code)

	r := capbus(t, home, "auth", "update", "bobby", "--file", path)
	assert.Equal(t, exitUsage, r.code, "--file changes nothing in the entry: %s", r.stdout)
	assert.Contains(t, r.stderr, "nothing to change")

	require.Equal(t, 0, capbus(t, home, "auth", "update", "bobby", "--grant", "can_read_temp").code)
	f, err := (&authEditor{path: path}).load()
	require.NoError(t, err)
	assert.Equal(t, []string{"can_read_temp"}, f.Allow[0].Capabilities.Names())

	require.Equal(t, 0, capbus(t, home, "auth", "update", "bobby", "--revoke", "can_read_temp").code)
	f, err = (&authEditor{path: path}).load()
	require.NoError(t, err)
	assert.Empty(t, f.Allow[0].Capabilities)

	require.Equal(t, 0, capbus(t, home, "auth", "disable", "bobby").code)
	p, err := auth.LoadFile(path)
	require.NoError(t, err)
	_, err = p.Authenticate(k, "127.0.0.1:1")
	assert.ErrorIs(t, err, auth.ErrDisabled)

	require.Equal(t, 0, capbus(t, home, "auth", "enable", "bobby").code)
	p, err = auth.LoadFile(path)
	require.NoError(t, err)
	_, err = p.Authenticate(k, "127.0.0.1:1")
	assert.NoError(t, err)

	require.Equal(t, 0, capbus(t, home, "auth", "remove", "bobby").code)
	p, err = auth.LoadFile(path)
	require.NoError(t, err)
	_, err = p.Authenticate(k, "127.0.0.1:1")
	assert.ErrorIs(t, err, auth.ErrUnknownKey)
}

func TestAuthRolesGroupsAndCapabilityGroups(t *testing.T) {
	home := t.TempDir()
	require.Equal(t, 0, capbus(t, home, "auth", "capgroup", "set", "READ", "can_read_temp", "can_read_weather_data").code)
	require.Equal(t, 0, capbus(t, home, "auth", "role", "set", "reader", "READ").code)
	require.Equal(t, 0, capbus(t, home, "auth", "group", "set", "staff", "reader").code)
	require.Equal(t, 0, capbus(t, home, "auth", "add", "carol", "--credentials", newKey(t), "--groups", "staff").code)

	r := capbus(t, home, "auth", "role", "list")
	assert.Equal(t, "reader: READ\n", r.stdout)
	r = capbus(t, home, "auth", "group", "list")
	assert.Equal(t, "staff: reader\n", r.stdout)
	r = capbus(t, home, "auth", "capgroup", "list")
	assert.Equal(t, "READ: can_read_temp, can_read_weather_data\n", r.stdout)

	path := filepath.Join(home, "auth.json")
	before, _ := os.ReadFile(path)
	r = capbus(t, home, "auth", "role", "remove", "reader")
	assert.NotEqual(t, 0, r.code, "a role still used by a group cannot be removed")
	fileUnchanged(t, path, before)

	r = capbus(t, home, "auth", "explain", "carol")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "can_read_weather_data")
	assert.Contains(t, r.stdout, "reader")

	// A capability group still granted cannot be removed either: it would
	// silently become a capability of that name.
	r = capbus(t, home, "auth", "capgroup", "remove", "READ")
	assert.NotEqual(t, 0, r.code)
	assert.Contains(t, r.stderr, `capgroup "READ" is still used by roles["reader"]`)
	fileUnchanged(t, path, before)

	// Members separated by commas are members, as --grant a,b takes them.
	r = capbus(t, home, "auth", "capgroup", "set", "WRITE", "set_units, set_city", "reset")
	require.Equal(t, 0, r.code, r.stderr)
	r = capbus(t, home, "auth", "capgroup", "list")
	assert.Contains(t, r.stdout, "WRITE: set_units, set_city, reset\n")
	r = capbus(t, home, "auth", "capgroup", "remove", "WRITE")
	assert.Equal(t, 0, r.code, "a capability group nothing uses is removed: %s", r.stderr)
}

func TestAuthEdit_ConcurrentEditsAreSerialisedNoneLost(t *testing.T) {
	home := t.TempDir()
	require.Equal(t, 0, capbus(t, home, "auth", "add", "alice", "--credentials", newKey(t)).code)
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			codes[i] = capbus(t, home, "auth", "update", "alice", "--grant", "cap"+string(rune('a'+i))).code
		}(i)
	}
	wg.Wait()
	for i, c := range codes {
		assert.Equal(t, 0, c, "edit %d", i)
	}
	f, err := (&authEditor{path: filepath.Join(home, "auth.json")}).load()
	require.NoError(t, err)
	assert.Len(t, f.Allow[0].Capabilities, n, "every concurrent grant is kept")
}

func TestAuthEdit_RefusedWhileAnotherProcessHoldsTheLock(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, "auth.json")
	require.Equal(t, 0, capbus(t, home, "auth", "add", "alice", "--credentials", newKey(t)).code)
	before, _ := os.ReadFile(path)
	unlock, err := filelock.Lock(context.Background(), path, 0)
	require.NoError(t, err)
	defer unlock()
	// The held lock is exercised through an editor with no wait.
	e := &authEditor{path: path, notice: &bytes.Buffer{}, wait: 0}
	err = e.edit(context.Background(), func(f *auth.File) error { f.Allow = nil; return nil })
	require.ErrorIs(t, err, auth.ErrEditLocked)
	fileUnchanged(t, path, before)
}

func TestAuthCheck_BrokenFilePrintsLineAndColumn(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	require.NoError(t, os.WriteFile(path, []byte("{\n  \"allow\": [\n    {\"user_id\": \"a\", \"capabilites\": [\"x\"]}\n  ]\n}\n"), 0o600))
	r := capbus(t, dir, "auth", "check", path)
	assert.NotEqual(t, 0, r.code)
	assert.Contains(t, r.stderr, path+":3:")
	assert.Contains(t, r.stderr, `did you mean "capabilities"`)
}

func TestAuthCheck_VolttronFileIsValid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	key := newKey(t)
	k, _ := keys.Parse(key)
	volttron := `{
    "allow": [
        {
            "domain": "vip",
            "address": "/.*/",
            "mechanism": "CURVE",
            "credentials": "CURVE:` + k.Base64URL() + `",
            "user_id": "platform.driver",
            "identity": "platform.driver",
            "groups": [],
            "roles": [],
            "capabilities": {"edit_config_store": {"identity": "platform.driver"}},
            "rpc_method_authorizations": {},
            "comments": "Automatically added by platform on start",
            "enabled": true
        }
    ],
    "deny": [],
    "groups": {},
    "roles": {},
    "version": {"major": 1, "minor": 4}
}
`
	require.NoError(t, os.WriteFile(path, []byte(volttron), 0o600))
	r := capbus(t, dir, "auth", "check", path)
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "ok")
}

func TestKeygen_WithoutOutPrintsBothKeysQuotedForTheShell(t *testing.T) {
	r := capbus(t, t.TempDir(), "keygen")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2)
	pub := strings.TrimPrefix(lines[0], "public: ")
	require.True(t, strings.HasPrefix(pub, "'") && strings.HasSuffix(pub, "'"), pub)
	_, err := keys.Parse(strings.Trim(pub, "'"))
	assert.NoError(t, err)
	assert.True(t, strings.HasPrefix(lines[1], "secret: '"))
}

// TestAuthUpdate_GrantOfACapabilityHeldWithARestrictionSaysSo: --grant of
// a capability held only with a parameter restriction changed nothing and
// printed it as granted; it now says what restricts it and how to lift
// it, and --revoke X --grant X does.
func TestAuthUpdate_GrantOfACapabilityHeldWithARestrictionSaysSo(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, "auth.json")
	require.Equal(t, 0, capbus(t, home, "auth", "add", "bob", "--credentials", newKey(t)).code)
	require.NoError(t, auth.EditFile(context.Background(), path, func(f *auth.File) error {
		f.Allow[0].Capabilities = auth.Capabilities{{Name: "can_read_weather_data", Params: map[string]string{"days": "3"}}}
		return nil
	}))
	before, _ := os.ReadFile(path)

	r := capbus(t, home, "auth", "update", "bob", "--grant", "can_read_weather_data")
	assert.NotEqual(t, 0, r.code)
	assert.Contains(t, r.stderr, `already holds capability "can_read_weather_data", restricted to days=3`)
	assert.Contains(t, r.stderr, "--revoke can_read_weather_data --grant can_read_weather_data")
	fileUnchanged(t, path, before)
	r = capbus(t, home, "auth", "update", "bob", "--comments", "the boiler")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "capabilities [can_read_weather_data (days=3)]", "the summary shows the restriction")

	r = capbus(t, home, "auth", "update", "bob", "--revoke", "can_read_weather_data", "--grant", "can_read_weather_data")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "capabilities [can_read_weather_data]")
	f, err := (&authEditor{path: path}).load()
	require.NoError(t, err)
	assert.Equal(t, auth.Capabilities{{Name: "can_read_weather_data"}}, f.Allow[0].Capabilities)
}

// TestClientFlags_OutOfRangeValuesAreUsageErrors: --timeout 0 and
// --count -1 are refused before connecting, with exit 2 naming the flag.
func TestClientFlags_OutOfRangeValuesAreUsageErrors(t *testing.T) {
	home := t.TempDir()
	r := capbus(t, home, "ping", "--timeout", "0")
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "--timeout 0s: want a positive duration")
	r = capbus(t, home, "subscribe", "weather/#", "--count", "-1")
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "--count -1: want 0")
}
