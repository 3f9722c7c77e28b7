package platform

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform/admin/admintest"
	"github.com/capbus/capbus/rpc"
)

// startAdmin runs the test platform with its admin endpoint on a free
// loopback port; it returns the endpoint's base URL and access token.
func startAdmin(t *testing.T) (*testPlatform, string, string) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	tp := startPlatform(t, WithAdmin("127.0.0.1:0", tokenFile))
	require.NotEmpty(t, tp.AdminAddr())
	token, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	st, err := os.Stat(tokenFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the token file is the operator's secret")
	return tp, "http://" + tp.AdminAddr(), strings.TrimSpace(string(token))
}

// scrape returns the value of the sample whose line starts with series.
func scrape(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return v
}

// TestAdmin_MetricsCountWhatThePlatformDoes: each family the operators'
// issue asked for moves with what happens on the bus.
func TestAdmin_MetricsCountWhatThePlatformDoes(t *testing.T) {
	tp, base, _ := startAdmin(t)
	tp.startWeather(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	assert.Equal(t, "result", string(alice.call("weather", "temperature", "paris")[vip.FrameArgs]))
	code, _ := errnoOf(t, bobby.call("weather", "temperature", "paris"))
	require.Equal(t, rpc.CodeUnauthorized, code)
	code, _ = errnoOf(t, alice.call("nobody", "temperature"))
	require.Equal(t, rpc.CodeNoRoute, code)
	stranger, err := keys.Generate()
	require.NoError(t, err)
	_, err = tp.tryDial(t, stranger)
	require.ErrorIs(t, err, curve.ErrRefused)

	id := alice.nextID()
	alice.send(nil, vip.SignatureFrame, nil, []byte(id), []byte(vip.SubPubsub), []byte(vip.OpSubscribe), []byte("devices/#"))
	alice.expect(byMsgID(id))
	id = alice.nextID()
	alice.send(nil, vip.SignatureFrame, nil, []byte(id), []byte(vip.SubPubsub), []byte(vip.OpPublish), []byte("devices/a"), []byte{0xc0})
	alice.expect(func(f [][]byte) bool { return len(f) > vip.FrameArgs && string(f[vip.FrameArgs]) == vip.OpMessage })

	for series, want := range map[string]float64{
		`capbus_calls_total{callee="weather",method="temperature",outcome="ok"}`:     1,
		`capbus_calls_total{callee="weather",method="temperature",outcome="denied"}`: 1,
		`capbus_calls_total{callee="_other",method="_other",outcome="refused"}`:      1,
		`capbus_handshakes_total{outcome="ok"}`:                                      3,
		`capbus_handshakes_total{outcome="refused"}`:                                 1,
		`capbus_connections`:                 3,
		`capbus_call_duration_seconds_count`: 1,
		`capbus_pubsub_published_total`:      1,
		`capbus_pubsub_delivered_total`:      1,
		`capbus_subscriptions`:               1,
		`capbus_policy_generation`:           1,
		`capbus_queued_bytes`:                0,
		`capbus_audit_write_errors_total`:    0,
	} {
		assert.Equal(t, want, scrape(t, base, series), series)
	}
	assert.Positive(t, scrape(t, base, "go_goroutines"))
	assert.Positive(t, scrape(t, base, "process_open_fds"))

	tp.writePolicy(t, true, `["can_read_temp"]`)
	require.Eventually(t, func() bool { return scrape(t, base, `capbus_policy_reloads_total{result="ok"}`) == 1 },
		testTimeout, 10*time.Millisecond)
	assert.Equal(t, float64(2), scrape(t, base, "capbus_policy_generation"))

	resp, err := http.Get(base + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestConsole_InChromium_BobbyDeniedThenGrantedFromTheMatrix is the
// operator's story on a real platform: the console shows Bobby denied on
// weather.temperature with the capability he lacks, one click grants it
// through the same validated writer as the CLI (the file keeps its
// comments, the grant is audited with who made it), the matrix turns, and
// Bobby's next call goes through.
func TestConsole_InChromium_BobbyDeniedThenGrantedFromTheMatrix(t *testing.T) {
	tp, base, token := startAdmin(t)
	tp.startWeather(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	code, _ := errnoOf(t, bobby.call("weather", "temperature", "paris"))
	require.Equal(t, rpc.CodeUnauthorized, code)

	ctx := admintest.NewBrowser(t)
	require.NoError(t, admintest.Login(ctx, base+"/", "ops", token))
	cell, err := admintest.ReadCell(ctx, "bobby", "weather.temperature")
	require.NoError(t, err)
	assert.Equal(t, admintest.Cell{State: "denied", Missing: []string{"can_read_temp"}, Grants: []string{"can_read_temp"}}, cell)
	alice, err := admintest.ReadCell(ctx, "alice", "weather.temperature")
	require.NoError(t, err)
	assert.True(t, alice.Allowed)

	require.NoError(t, admintest.ClickGrant(ctx, "bobby", "weather.temperature", "can_read_temp"))
	cell, err = admintest.ReadCell(ctx, "bobby", "weather.temperature")
	require.NoError(t, err)
	assert.Equal(t, admintest.Cell{State: "allowed", Allowed: true}, cell)
	admintest.Screenshot(ctx, t, "console-platform.png")

	// In force at once: Bobby's next call goes through.
	assert.Equal(t, "result", string(bobby.call("weather", "temperature", "paris")[vip.FrameArgs]))
	data, err := os.ReadFile(tp.authFile)
	require.NoError(t, err)
	assert.Contains(t, string(data), "// capbus test policy", "the console's edit kept the file's comments")
	assert.Regexp(t, `"action":"grant","decision":"allow","user_id":"bobby".*"required":\["can_read_temp"\].*"by":"console:ops from 127.0.0.1"`,
		tp.audit.String())
}

// TestConsole_RevokeTakesTheCapabilityAwayAndSaysWhenThereIsNone.
func TestConsole_RevokeTakesTheCapabilityAwayAndSaysWhenThereIsNone(t *testing.T) {
	tp := startPlatform(t)
	tp.startWeather(t)
	b := consoleBackend{tp.Platform}
	ctx := context.Background()
	require.NoError(t, b.Revoke(ctx, "console:ops", "alice", "can_read_temp"))
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	code, _ := errnoOf(t, alice.call("weather", "temperature", "paris"))
	assert.Equal(t, rpc.CodeUnauthorized, code, "revoked and in force when Revoke returns")
	assert.ErrorContains(t, b.Grant(ctx, "console:ops", "nobody", "x"), `no allow entry with user_id "nobody"`)
	require.NoError(t, b.Grant(ctx, "console:ops", "alice", "can_read_temp"))
	assert.ErrorContains(t, b.Grant(ctx, "console:ops", "alice", "can_read_temp"), "already holds")

	s, err := b.Snapshot(ctx)
	require.NoError(t, err)
	assert.Equal(t, tp.authFile, s.Policy.File)
	assert.Equal(t, uint64(3), s.Policy.Generation)
	assert.Contains(t, s.Matrix.Targets, "weather.temperature")
	require.NotEmpty(t, s.Denials)
	assert.Equal(t, "weather.temperature", s.Denials[0].Target)
}
