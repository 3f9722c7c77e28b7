package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/examples/weather/station"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/pendingkeys"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
)

// home is a capbus home with a platform running in process, as "capbus
// platform run" lays it out: the platform's own commented auth.json,
// known_hosts and pending_keys.json.
type home struct {
	t    *testing.T
	dir  string
	addr string
	key  keys.Key // the platform's public key
	me   string   // the CLI key, Z85
}

// startHome starts a platform in a fresh home and admits the CLI's
// default key as user "me" with caps.
func startHome(t *testing.T, caps ...string) *home {
	t.Helper()
	dir := t.TempDir()
	h := &home{t: t, dir: dir}
	require.NoError(t, ensureAuthFile(filepath.Join(dir, "auth.json")))
	p, err := platform.New(platform.WithAddress("tcp://127.0.0.1:0"), platform.WithAuthFile(filepath.Join(dir, "auth.json")),
		platform.WithPendingKeysFile(filepath.Join(dir, "pending_keys.json")), platform.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	require.NotEmpty(t, p.Addr())
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	h.addr, h.key = p.Addr(), p.ServerKey()
	require.NoError(t, rememberHost(filepath.Join(dir, "known_hosts"), h.addr, h.key))

	r := h.run("keygen", "--out", filepath.Join(dir, "cli-keystore.json"))
	require.Equal(t, 0, r.code, r.stderr)
	h.me = strings.TrimSpace(r.stdout)
	args := []string{"auth", "add", "me", "--credentials", h.me}
	if len(caps) > 0 {
		args = append(args, "--grant", strings.Join(caps, ","))
	}
	r = h.run(args...)
	require.Equal(t, 0, r.code, r.stderr)
	return h
}

// run runs capbus in this home against this platform.
func (h *home) run(args ...string) result {
	h.t.Helper()
	return capbus(h.t, h.dir, append([]string{"--address", h.addr}, args...)...)
}

// weather runs the example weather agent (temperature, forecast,
// set_units with role admin), admitted as user weather.
func (h *home) weather() { h.weatherAs("weather", "weather") }

// weatherAs runs the example weather agent as identity, admitted as user.
func (h *home) weatherAs(user, identity string) {
	h.t.Helper()
	kp, err := keys.Generate()
	require.NoError(h.t, err)
	r := h.run("auth", "add", user, "--identity", identity, "--credentials", kp.Public.Z85())
	require.Equal(h.t, 0, r.code, r.stderr)
	a, err := agent.New(identity, agent.WithKeyPair(kp), agent.WithPlatform(h.addr, h.key), agent.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(h.t, err)
	require.NoError(h.t, station.New(nil).Register(a))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	h.t.Cleanup(func() { cancel(); <-done })
	require.NoError(h.t, a.WaitConnected(ctx))
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "tcp://" + l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestClient_NothingListeningFailsAtOnceWithExit5NamingTheAddress(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	server := newKey(t)
	for _, cmd := range [][]string{{"ping"}, {"peers"}, {"call", "weather", "temperature"}} {
		t.Run(cmd[0], func(t *testing.T) {
			start := time.Now()
			r := capbus(t, dir, append([]string{"--address", addr, "--server-key", server}, cmd...)...)
			elapsed := time.Since(start)
			assert.Equal(t, exitUnreachable, r.code, r.stderr)
			assert.Contains(t, r.stderr, "nothing is listening at "+addr)
			assert.Less(t, elapsed, time.Second, "a refused connection is reported at once, not after --timeout (10s)")
			assert.Empty(t, r.stdout)
		})
	}
}

// stranger writes a key pair that auth.json does not know, and returns
// its keystore file and public key.
func (h *home) stranger() (path, key string) {
	h.t.Helper()
	path = filepath.Join(h.t.TempDir(), "stranger.json")
	r := h.run("keygen", "--out", path)
	require.Equal(h.t, 0, r.code, r.stderr)
	return path, strings.TrimSpace(r.stdout)
}

func TestClient_UnknownKeyExits3WithAShellSafeAddCommand(t *testing.T) {
	h := startHome(t)
	stranger, key := h.stranger()

	start := time.Now()
	r := h.run("ping", "--key", stranger)
	assert.Less(t, time.Since(start), time.Second)
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, "refused this CLI's key '"+key+"'")
	m := regexp.MustCompile(`capbus auth add USER --credentials (.*)`).FindStringSubmatch(r.stderr)
	require.NotNil(t, m, r.stderr)

	// The hint pastes into a shell as one word: the shell gives back the key.
	out, err := exec.Command("sh", "-c", "printf '%s' "+m[1]).Output()
	require.NoError(t, err)
	assert.Equal(t, key, string(out))
}

func TestClient_WrongServerKeyIsNamedAndExits5(t *testing.T) {
	h := startHome(t)
	wrong := newKey(t)
	start := time.Now()
	r := h.run("peers", "--server-key", wrong)
	assert.Less(t, time.Since(start), time.Second)
	assert.Equal(t, exitUnreachable, r.code, r.stderr)
	assert.Contains(t, r.stderr, "does not hold the server key '"+wrong+"'")
}

func TestAuthUpdate_AnEditRefusedAsInvalidPrintsNothingOnStdout(t *testing.T) {
	h := startHome(t)
	path := filepath.Join(h.dir, "auth.json")
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, args := range [][]string{
		{"auth", "update", "me", "--roles", "panel"},
		{"auth", "update", "me", "--add-role", "panel"},
		{"auth", "add", "panel", "--credentials", newKey(t), "--roles", "panel"},
		{"auth", "group", "set", "ops", "panel"},
	} {
		r := h.run(args...)
		assert.Equal(t, exitError, r.code, r.stderr)
		assert.Empty(t, r.stdout, "%v: nothing is reported done", args)
		assert.Contains(t, r.stderr, "the file would be invalid")
		fileUnchanged(t, path, before)
	}
	r := h.run("auth", "update", "me", "--add-role", "panel")
	assert.Contains(t, r.stderr, "capbus auth role set", "the refusal says how to define the role")
}

func TestAuthEdits_KeepThePlatformsCommentedAuthJSON(t *testing.T) {
	h := startHome(t) // auth add me ran on the platform's own file
	path := filepath.Join(h.dir, "auth.json")
	header := closedAuthJSON[:strings.Index(closedAuthJSON, "{")]
	comments := func() {
		t.Helper()
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(data), header), "the platform's comments are kept:\n%s", data)
	}
	comments()
	r := h.run("auth", "update", "me", "--grant", "can_read_temp")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "updated me: key '"+h.me+"', capabilities [can_read_temp]\n", r.stdout)
	comments()
	r = h.run("auth", "add", "bob", "--credentials", newKey(t))
	require.Equal(t, 0, r.code, r.stderr)
	r = h.run("auth", "remove", "me")
	require.Equal(t, 0, r.code, r.stderr)
	comments()
	assert.Empty(t, r.stderr, "no note about lost comments")
}

func TestAuthUpdate_AddAndRemoveRolesAndGroups_RolesReplaces(t *testing.T) {
	home := t.TempDir()
	require.Equal(t, 0, capbus(t, home, "auth", "role", "set", "admin", "stop").code)
	require.Equal(t, 0, capbus(t, home, "auth", "role", "set", "viewer", "read").code)
	require.Equal(t, 0, capbus(t, home, "auth", "group", "set", "ops", "admin").code)
	require.Equal(t, 0, capbus(t, home, "auth", "add", "al", "--credentials", newKey(t), "--roles", "viewer").code)
	roles := func() ([]string, []string) {
		f, err := (&authEditor{path: filepath.Join(home, "auth.json")}).load()
		require.NoError(t, err)
		return f.Allow[0].Roles, f.Allow[0].Groups
	}
	r := capbus(t, home, "auth", "update", "al", "--add-role", "admin", "--add-group", "ops")
	require.Equal(t, 0, r.code, r.stderr)
	rs, gs := roles()
	assert.Equal(t, []string{"viewer", "admin"}, rs)
	assert.Equal(t, []string{"ops"}, gs)
	require.Equal(t, 0, capbus(t, home, "auth", "update", "al", "--remove-role", "viewer", "--remove-group", "ops").code)
	rs, gs = roles()
	assert.Equal(t, []string{"admin"}, rs)
	assert.Empty(t, gs)
	r = capbus(t, home, "auth", "update", "al", "--remove-role", "viewer")
	assert.Equal(t, exitNotFound, r.code)
	require.Equal(t, 0, capbus(t, home, "auth", "update", "al", "--roles", "viewer").code)
	rs, _ = roles()
	assert.Equal(t, []string{"viewer"}, rs, "--roles replaces every role")
}

func TestAuthAdd_AdmitFromIsTheEntrysAddressAndAddressStaysThePlatforms(t *testing.T) {
	home := t.TempDir()
	r := capbus(t, home, "--address", "tcp://127.0.0.1:1", "auth", "add", "al", "--credentials", newKey(t), "--admit-from", "/10\\..*/")
	require.Equal(t, 0, r.code, r.stderr)
	r = capbus(t, home, "auth", "add", "bo", "--credentials", newKey(t), "--address", "tcp://127.0.0.1:1")
	require.Equal(t, 0, r.code, "--address is the global platform address on auth add too: %s", r.stderr)
	f, err := (&authEditor{path: filepath.Join(home, "auth.json")}).load()
	require.NoError(t, err)
	assert.Equal(t, "/10\\..*/", f.Allow[0].Address)
	assert.Empty(t, f.Allow[1].Address, "the platform's address is not an admission rule")
}

func TestDescribe_PrintsEachMethodWhatItNeedsAndWhetherYouMayCallIt(t *testing.T) {
	h := startHome(t, "can_read_temp")
	h.weather()
	r := h.run("describe", "weather")
	require.Equal(t, 0, r.code, r.stderr)
	lines := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	assert.Regexp(t, `^temperature\s+city\s+can_read_temp\s+yes$`, lines["temperature"])
	assert.Regexp(t, `^forecast\s+city, days\s+can_read_temp, can_read_weather_data\s+no: missing can_read_weather_data$`, lines["forecast"])
	assert.Regexp(t, `^set_units\s+units\s+role:admin\s+no: missing role:admin$`, lines["set_units"])
	assert.Contains(t, r.stdout, `warning: role "admin" (required by weather.set_units) grants no capability in auth.json`)

	r = h.run("describe", "weather", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var d describeJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &d))
	assert.Equal(t, "weather", d.Identity)
	require.Len(t, d.Methods, 3)
	assert.Equal(t, "forecast", d.Methods[0].Name)
	assert.Equal(t, []string{"can_read_weather_data"}, d.Methods[0].Missing)

	r = h.run("describe", "nosuchagent")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
}

func TestAuthCheck_WarnsAboutARoleThatAnExportRequiresAndNobodyHolds(t *testing.T) {
	h := startHome(t)
	h.weather()
	r := h.run("auth", "check")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, `warning: role "admin" (required by weather.set_units) grants no capability in auth.json`)

	// Offline, the file's own method rules are still checked.
	require.Equal(t, 0, h.run("auth", "role", "set", "admin", "set_units").code)
	require.NoError(t, auth.EditFile(context.Background(), filepath.Join(h.dir, "auth.json"), func(f *auth.File) error {
		f.Methods = map[string]auth.MethodRule{"weather.reset": {Roles: []string{"admin"}}}
		return nil
	}))
	r = h.run("auth", "check", "--offline")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, `warning: role "admin" (required by weather.reset) is held by nobody in auth.json`)
	require.Equal(t, 0, h.run("auth", "update", "me", "--add-role", "admin").code)
	r = h.run("auth", "check")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "warning:")
}

func TestAuthExplain_TakesTheDeclaredRequirementsFromTheRunningPlatform(t *testing.T) {
	h := startHome(t, "can_read_temp")
	h.weather()
	r := h.run("auth", "explain", "me", "--call", "weather.forecast")
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, "weather.forecast declares capabilities [can_read_temp, can_read_weather_data]")
	assert.Contains(t, r.stdout, "missing: [can_read_weather_data]")

	r = h.run("auth", "explain", "me", "--call", "weather.humidity")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	assert.Contains(t, r.stderr, "exports: forecast, set_units, temperature")

	addr := freePort(t)
	r = capbus(t, h.dir, "--address", addr, "auth", "explain", "me", "--call", "weather.forecast", "--server-key", h.key.Z85())
	assert.Equal(t, exitUsage, r.code, "explain has no --server-key: %s", r.stderr)
	require.NoError(t, rememberHost(filepath.Join(h.dir, "known_hosts"), addr, h.key))
	r = capbus(t, h.dir, "--address", addr, "auth", "explain", "me", "--call", "weather.forecast")
	assert.Equal(t, 0, r.code, "without the platform only the file's rules count: %s", r.stderr)
	assert.Contains(t, r.stderr, "note: no platform asked (nothing is listening at "+addr)
}

func TestWhoami_SaysWhenTheFileOnDiskWasRejected(t *testing.T) {
	h := startHome(t)
	r := h.run("whoami")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "policy:")
	assert.Contains(t, r.stdout, "key '"+h.me+"'")

	path := filepath.Join(h.dir, "auth.json")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, atomicfile.Write(path, []byte(strings.Replace(string(data), `"allow"`, `"alow"`, 1)), 0o600))
	require.Eventually(t, func() bool {
		return strings.Contains(h.run("whoami").stdout, "policy: the auth.json on disk was rejected")
	}, 10*time.Second, 20*time.Millisecond)
	r = h.run("whoami")
	assert.Contains(t, r.stdout, path+":")
	assert.Contains(t, r.stdout, `did you mean "allow"`)
	assert.Regexp(t, `an older policy \(generation \d+\) is in force`, r.stdout)
}

func TestAuthPending_ListsRefusedKeysAndApproveAdmitsOne(t *testing.T) {
	h := startHome(t)
	// A key that begins with '-' (Z85 has it) is still read as KEY.
	stranger := filepath.Join(t.TempDir(), "thermostat.json")
	kp := dashKey(t)
	require.NoError(t, keys.Save(stranger, kp))
	key := kp.Public.Z85()
	r := h.run("ping", "--key", stranger)
	require.Equal(t, exitRefused, r.code, r.stderr)

	var l []pendingkeys.Key
	require.Eventually(t, func() bool {
		l, _ = pendingkeys.Read(filepath.Join(h.dir, "pending_keys.json"))
		return len(l) == 1
	}, 10*time.Second, 20*time.Millisecond)
	r = h.run("auth", "pending")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "'"+key+"'")
	assert.Contains(t, r.stdout, "127.0.0.1:")

	r = h.run("auth", "approve", key[:12], "--user", "thermostat", "--identity", "thermostat", "--grant", "publish_devices")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "approved '"+key+"' as user thermostat")
	r = h.run("ping", "--key", stranger, "--identity", "thermostat")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `you are user "thermostat"`)
	r = h.run("auth", "pending")
	assert.Equal(t, "no pending keys\n", r.stdout)

	r = h.run("ping", "--key", filepath.Join(h.dir, "nope.json"))
	assert.NotEqual(t, 0, r.code)
	r = h.run("auth", "pending", "--clear")
	require.Equal(t, 0, r.code, r.stderr)
	r = h.run("auth", "approve", "zzzz", "--user", "x")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	r = h.run("auth", "approve", "-fQ", "--user", "x")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "needs -- before it")
}

// dashKey returns a key pair whose public key's Z85 form begins with '-'
// and does not read as a flag of approve.
func dashKey(t *testing.T) keys.Pair {
	t.Helper()
	for range 100_000 {
		kp, err := keys.Generate()
		require.NoError(t, err)
		if z := kp.Public.Z85(); z[0] == '-' && z[1] != 'f' && z[1] != 'h' && z[1] != '-' {
			return kp
		}
	}
	t.Fatal("no key beginning with '-' in 100,000")
	return keys.Pair{}
}

// TestCall_ANegativeNumberIsAnArgumentNotAFlag: "capbus call ... -1" and
// "capbus publish TOPIC -18" pass the number on, where flag parsing read
// it as an unknown shorthand flag.
func TestCall_ANegativeNumberIsAnArgumentNotAFlag(t *testing.T) {
	h := startHome(t, "can_read_temp", "can_read_weather_data", "publish_devices")
	h.weather()
	r := h.run("call", "weather", "forecast", `"oslo"`, "-1")
	assert.Equal(t, exitError, r.code, r.stderr)
	assert.Contains(t, r.stderr, "days must be 1 to 7, got -1", "the agent judged the argument")
	assert.NotContains(t, r.stderr, "shorthand")

	r = h.run("publish", "devices/freezer/setpoint", "-18")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "published to devices/freezer/setpoint\n", r.stdout)
}

// TestAuthExplain_JudgesTheIdentityTheCallerCanClaimAndADottedCallee: the
// callee of --call is what comes before the last dot (platform.driver),
// and the caller is judged as the identity its entry may claim, not as
// its user id, which the platform would refuse.
func TestAuthExplain_JudgesTheIdentityTheCallerCanClaimAndADottedCallee(t *testing.T) {
	h := startHome(t, "can_read_temp")
	h.weatherAs("driver", "platform.driver")
	r := h.run("auth", "explain", "me", "--call", "platform.driver.forecast")
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, "platform.driver.forecast declares capabilities [can_read_temp, can_read_weather_data]")
	assert.Contains(t, r.stdout, "missing: [can_read_weather_data]")

	kp := newKey(t)
	r = h.run("auth", "add", "carol", "--identity", "carol.control", "--credentials", kp, "--grant", "can_read_temp")
	require.Equal(t, 0, r.code, r.stderr)
	r = h.run("auth", "explain", "carol", "--call", "weather.temperature", "--offline")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `identity "carol.control"`)
	r = h.run("auth", "explain", "carol", "--call", "weather.temperature", "--offline", "--identity", "carol")
	assert.Equal(t, exitRefused, r.code)
	assert.Contains(t, r.stderr, `may not claim identity "carol"`)

	// A disabled user would be refused: exit 3, as the help says.
	require.Equal(t, 0, h.run("auth", "disable", "carol").code)
	r = h.run("auth", "explain", "carol", "--call", "weather.temperature", "--offline")
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, `"enabled": false`)
}

// TestAuthPending_DoesNotListAKeyAdmittedSince: a key refused once and
// then added with auth add (not approve) is no longer pending.
func TestAuthPending_DoesNotListAKeyAdmittedSince(t *testing.T) {
	h := startHome(t)
	stranger, key := h.stranger()
	r := h.run("ping", "--key", stranger)
	require.Equal(t, exitRefused, r.code, r.stderr)
	require.Eventually(t, func() bool {
		return strings.Contains(h.run("auth", "pending").stdout, "'"+key+"'")
	}, 10*time.Second, 20*time.Millisecond)

	r = h.run("auth", "add", "stranger", "--credentials", key)
	require.Equal(t, 0, r.code, r.stderr)
	r = h.run("auth", "pending")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "no pending keys\n", r.stdout)
}
