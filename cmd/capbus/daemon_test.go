package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the tests run the capbus command as a real process: the
// test binary re-executed with CAPBUS_RUN_MAIN=1 is capbus.
func TestMain(m *testing.M) {
	if os.Getenv("CAPBUS_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// capbusProcess starts "capbus args..." as a child process with home as
// CAPBUS_HOME.
func capbusProcess(t *testing.T, home string, args ...string) (*exec.Cmd, *bufio.Scanner, *lockedBuilder) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), "CAPBUS_RUN_MAIN=1", "CAPBUS_HOME="+home)
	stderr := &lockedBuilder{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewScanner(out), stderr
}

// lockedBuilder is a strings.Builder safe for a writer and a reader.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// auditRecords reads the audit log's records.
func auditRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &r), "line %q", line)
		out = append(out, r)
	}
	return out
}

func actions(rs []map[string]any) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r["action"].(string))
	}
	return out
}

func TestPlatformRun_SIGHUPReloadsAndReopensTheAuditLogAndTheAuditShowsStartAndStop(t *testing.T) {
	home := t.TempDir()
	// No admin endpoint: its default port is shared by every platform on
	// this host, and the test is not about it.
	cmd, out, stderr := capbusProcess(t, home, "platform", "run", "--address", "tcp://127.0.0.1:0", "--admin-address", "off")
	require.True(t, out.Scan(), "no output; stderr: %s", stderr)
	require.Contains(t, out.Text(), "capbus platform listening on tcp://127.0.0.1:")
	audit := filepath.Join(home, "audit.log")
	require.Eventually(t, func() bool {
		_, err := os.Stat(audit)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	first := auditRecords(t, audit)
	require.Equal(t, "start", first[0]["action"])
	assert.Equal(t, float64(cmd.Process.Pid), first[0]["pid"])
	assert.Contains(t, first[0]["address"], "tcp://127.0.0.1:")
	assert.NotEmpty(t, first[0]["version"])

	// logrotate moves the file away, then sends SIGHUP; the platform lives
	// on, writes to a new file, and reloads auth.json.
	require.NoError(t, os.Rename(audit, audit+".1"))
	require.NoError(t, os.WriteFile(filepath.Join(home, "auth.json"), []byte(`{"allow": [], "roles": {"r": []}}`), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, err := os.Stat(audit)
		return err == nil && strings.Contains(readFile(t, audit), `"action":"reload"`)
	}, 10*time.Second, 10*time.Millisecond, "stderr: %s", stderr)

	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "reloaded on SIGHUP") },
		10*time.Second, 10*time.Millisecond, "SIGHUP reloads instead of killing the platform")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "stderr: %s", stderr)
	rs := auditRecords(t, audit)
	assert.Equal(t, "stop", rs[len(rs)-1]["action"], "records: %v", actions(rs))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}

func TestPlatformRun_AFailedStartExitsNonZeroAndWritesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	home := filepath.Join(t.TempDir(), "home")
	cmd, out, stderr := capbusProcess(t, home, "platform", "run", "--address", "tcp://"+busy.Addr().String())
	for out.Scan() {
		assert.NotContains(t, out.Text(), "listening on", "a failed start printed that it listens")
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "stderr: %s", stderr)
	assert.NotZero(t, exit.ExitCode())
	assert.Contains(t, stderr.String(), "address already in use")
	entries, err := os.ReadDir(home)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Empty(t, names, "a failed start wrote files in the home")
}

// TestPlatformRun_ServesTheAdminEndpointWithATokenInTheHome: --admin-address
// opens /metrics and the console, whose token the platform writes into its
// home, mode 0600; the start line says where.
func TestPlatformRun_ServesTheAdminEndpointWithATokenInTheHome(t *testing.T) {
	home := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, out, stderr := capbusProcess(t, home, "platform", "run", "--address", "tcp://127.0.0.1:0", "--admin-address", addr)
	var console string
	for out.Scan() {
		if c, ok := strings.CutPrefix(out.Text(), "admin console: "); ok {
			console = c
			break
		}
	}
	require.Equal(t, "http://"+addr+"/ (token in "+filepath.Join(home, "admin.token")+"; metrics at /metrics)", console, "stderr: %s", stderr)
	st, err := os.Stat(filepath.Join(home, "admin.token"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), "capbus_connections 0")
	resp, err = http.Get("http://" + addr + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(page), "token", "the console asks for its token")

	// An explicit address that is taken fails the start, naming it.
	_, out2, stderr2 := capbusProcess(t, t.TempDir(), "platform", "run", "--address", "tcp://127.0.0.1:0", "--admin-address", addr)
	assert.False(t, out2.Scan(), "a second platform on the same admin address does not start")
	require.Eventually(t, func() bool {
		return strings.Contains(stderr2.String(), "admin endpoint") && strings.Contains(stderr2.String(), addr)
	},
		10*time.Second, 10*time.Millisecond, "stderr: %s", stderr2)
}
