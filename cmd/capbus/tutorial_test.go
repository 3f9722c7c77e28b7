package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tutorial runs built binaries as separate processes against one home, the
// way README.md's tutorial does.
type tutorial struct {
	t       *testing.T
	capbus  string // path of the built capbus binary
	weather string // path of the built weather agent
	home    string
	address string
	env     []string
}

func buildBinary(t *testing.T, pkg, out string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	return out
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return "tcp://" + l.Addr().String()
}

// run runs one capbus command to completion.
func (tu *tutorial) run(args ...string) result {
	tu.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tu.capbus, args...)
	cmd.Env = tu.env
	cmd.Dir = tu.home
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(tu.t, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// start starts a long-running process and waits until a line of its
// standard output contains ready.
func (tu *tutorial) start(ready string, bin string, args ...string) {
	tu.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = tu.env
	cmd.Dir = tu.home
	stdout, err := cmd.StdoutPipe()
	require.NoError(tu.t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(tu.t, cmd.Start())
	exited := make(chan struct{})
	tu.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), ready) {
				close(found)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-found:
	case <-exited:
		tu.t.Fatalf("%s exited before %q: %s", filepath.Base(bin), ready, stderr.String())
	case <-time.After(30 * time.Second):
		tu.t.Fatalf("%s did not print %q within 30s: %s", filepath.Base(bin), ready, stderr.String())
	}
}

// TestTutorial_FollowsTheReadme walks README.md's tutorial step by step with
// real processes, files and ports, including the grant that takes effect
// without a restart.
func TestTutorial_FollowsTheReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	bins := t.TempDir()
	home := filepath.Join(t.TempDir(), "demo-home")
	require.NoError(t, os.MkdirAll(home, 0o700))
	tu := &tutorial{
		t:       t,
		capbus:  buildBinary(t, ".", filepath.Join(bins, "capbus")),
		weather: buildBinary(t, "../../examples/weather", filepath.Join(bins, "weather")),
		home:    home,
		address: freeAddress(t),
	}
	tu.env = append(os.Environ(), "CAPBUS_HOME="+home, "CAPBUS_ADDRESS="+tu.address)

	// 1. Start a platform: it creates its keys and a closed auth.json.
	tu.start("capbus platform listening on", tu.capbus, "platform", "run")
	st, err := os.Stat(filepath.Join(home, "keystore.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	r := tu.run("serverkey")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Len(t, strings.TrimSpace(r.stdout), 40)

	// 2. A key for the weather agent where agents look for it, admitted
	// with its identity.
	r = tu.run("keygen", "--out", filepath.Join(home, "keys", "weather.json"))
	require.Equal(t, 0, r.code, r.stderr)
	weatherKey := strings.TrimSpace(r.stdout)
	r = tu.run("auth", "add", "weather", "--identity", "weather", "--credentials", weatherKey)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "added weather: key '"+weatherKey+"', identity weather, capabilities []\n", r.stdout)
	authJSON, err := os.ReadFile(filepath.Join(home, "auth.json"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(authJSON), "// capbus auth.json"), "the platform's comments are kept")

	// 3. Run the weather agent: it finds its key and the platform from
	// CAPBUS_HOME and CAPBUS_ADDRESS.
	tu.start("weather agent connected", tu.weather, "--publish-interval", "100ms")

	// 4. A key for yourself (the CLI's default key), admitted with nothing.
	r = tu.run("keygen", "--out", filepath.Join(home, "cli-keystore.json"))
	require.Equal(t, 0, r.code, r.stderr)
	r = tu.run("auth", "add", "me", "--credentials", strings.TrimSpace(r.stdout))
	require.Equal(t, 0, r.code, r.stderr)

	r = tu.run("peers")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "weather")
	r = tu.run("describe", "weather")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `temperature\s+city\s+can_read_temp\s+no: missing can_read_temp`, r.stdout)
	assert.Contains(t, r.stdout, `warning: role "admin" (required by weather.set_units) grants no capability in auth.json`)

	// 5. Calling the weather agent is refused, naming the capability.
	r = tu.run("call", "weather", "temperature")
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, `method "temperature" of "weather" requires capabilities [can_read_temp]`)
	assert.Contains(t, r.stderr, "missing [can_read_temp]")

	// 6. Grant the capability; 7. the very next call passes, no restart.
	r = tu.run("auth", "update", "me", "--grant", "can_read_temp")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "updated me: key '")
	r = tu.run("call", "weather", "temperature")
	require.Equal(t, 0, r.code, r.stderr)
	assert.JSONEq(t, `{"city":"paris","temperature":21.5,"units":"C"}`, r.stdout)

	// Forecast needs one more capability; set_units needs the admin role.
	r = tu.run("call", "weather", "forecast", `"oslo"`, "2")
	assert.Equal(t, exitRefused, r.code)
	assert.Contains(t, r.stderr, "missing [can_read_weather_data]")
	r = tu.run("call", "weather", "set_units", `"F"`)
	assert.Equal(t, exitRefused, r.code)
	assert.Contains(t, r.stderr, "admin")

	// Not found and unreachable have their own exit codes.
	r = tu.run("call", "weather", "humidity")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	r = tu.run("call", "nosuchagent", "temperature")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	r = tu.run("call", "--address", freeAddress(t), "--server-key", weatherKey, "--timeout", "1s", "weather", "temperature")
	assert.Equal(t, exitUnreachable, r.code, r.stderr)

	// The weather agent's readings can be watched.
	r = tu.run("subscribe", "weather/#", "--count", "2")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "/temperature weather@weather {")

	// The explanation takes what the agent declares from the platform.
	r = tu.run("auth", "explain", "me", "--call", "weather.forecast")
	assert.Equal(t, exitRefused, r.code)
	assert.Contains(t, r.stdout, "missing: [can_read_weather_data]")

	// 8. A stranger's key is remembered and can be approved.
	// (The start of a key that reads as approve's -f flag needs a "--"
	// before it; the tutorial's stranger is not such a key.)
	var stranger string
	for stranger == "" || strings.HasPrefix(stranger, "-f") {
		r = tu.run("keygen", "--out", "stranger.json", "--force")
		require.Equal(t, 0, r.code, r.stderr)
		stranger = strings.TrimSpace(r.stdout)
	}
	r = tu.run("ping", "--key", "stranger.json")
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, "capbus auth add USER --credentials '"+stranger+"'")
	require.Eventually(t, func() bool {
		return strings.Contains(tu.run("auth", "pending").stdout, "'"+stranger+"'")
	}, 10*time.Second, 50*time.Millisecond)
	r = tu.run("auth", "approve", stranger[:10], "--user", "stranger")
	require.Equal(t, 0, r.code, r.stderr)
	r = tu.run("ping", "--key", "stranger.json")
	assert.Equal(t, 0, r.code, r.stderr)

	// 9. Configure the weather agent: refused until granted, then followed
	// live; deleting the entry brings the defaults back.
	config, err := filepath.Abs("../../examples/weather/config.json")
	require.NoError(t, err)
	r = tu.run("config", "store", "weather", "config", config)
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, "missing [edit_config_store]")
	r = tu.run("auth", "update", "me", "--grant", "edit_config_store")
	require.Equal(t, 0, r.code, r.stderr)
	r = tu.run("config", "store", "weather", "config", config)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `stored weather "config" version 1 (json,`)
	// The agent applies the entry on its own goroutine, as it arrives.
	require.Eventually(t, func() bool {
		r = tu.run("call", "weather", "temperature")
		return r.code == 0 && strings.Contains(r.stdout, `"units":"F"`)
	}, 10*time.Second, 50*time.Millisecond, "the weather agent follows its configuration")
	assert.JSONEq(t, `{"city":"paris","temperature":70.7,"units":"F"}`, r.stdout)
	r = tu.run("config", "delete", "weather", "config")
	require.Equal(t, 0, r.code, r.stderr)
	require.Eventually(t, func() bool {
		r = tu.run("call", "weather", "temperature")
		return r.code == 0 && strings.Contains(r.stdout, `"units":"C"`)
	}, 10*time.Second, 50*time.Millisecond, "the defaults are back")
	r = tu.run("config", "history", "weather", "config")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^2\s+\S+\s+me\s+deleted$`, r.stdout)
	_, err = os.Stat(filepath.Join(home, "config.db"))
	require.NoError(t, err, "the platform keeps its configuration store in its home")

	// The audit log recorded the refusals and the changes, with the user.
	audit, err := os.ReadFile(filepath.Join(home, "audit.log"))
	require.NoError(t, err)
	assert.Contains(t, string(audit), `"can_read_temp"`)
	assert.Contains(t, string(audit), `"action":"config","decision":"allow","user_id":"me"`)
}
