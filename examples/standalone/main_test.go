package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStandalone_ShowsAliceReadingAndBobbysRefusal builds the example and runs
// it as a newcomer would, as its own process: Alice's reading, Bobby's
// refusal, and the weather agent following a configuration change.
func TestStandalone_ShowsAliceReadingAndBobbysRefusal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a binary")
	}
	bin := filepath.Join(t.TempDir(), "standalone")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())

	got := stdout.String()
	assert.Contains(t, got, "Alice called weather.temperature: 21.5 °C in paris.")
	assert.Contains(t, got, `Bobby called weather.temperature and the platform refused: method "temperature" of "weather" requires capabilities [can_read_temp]`)
	assert.Contains(t, got, "Bobby is missing: [can_read_temp]")
	assert.Contains(t, got, "served 1 call(s): Bobby's never reached it")
	assert.Contains(t, got, `The operator stored the weather agent's "config" entry (version 1): {"units": "F"}`)
	assert.Contains(t, got, "Alice called weather.temperature: 70.7 °F in paris.")
	assert.Contains(t, got, "The weather agent now reports in °F after a config change.")
}

func TestStandalone_FlagsNeedAllKeysForAnExistingPlatform(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--address", "tcp://127.0.0.1:1"}, &stdout, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--server-key, --alice-key and --bobby-key")
}
