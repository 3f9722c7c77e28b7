package platform

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requirePythonZMQ skips the test when /usr/bin/python3 cannot import zmq
// and msgpack, except when CI=true: then it fails.
func requirePythonZMQ(t *testing.T) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import zmq, msgpack").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("needs /usr/bin/python3 with python3-zmq and python3-msgpack: %v: %s", err, bytes.TrimSpace(out))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func TestPython_ClientFromProtocolDocCallsGoAgentAndIsRefusedWhatItLacks(t *testing.T) {
	requirePythonZMQ(t)
	tp := startPlatform(t)
	w := tp.startWeather(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/vip_client.py")
	cmd.Env = append(os.Environ(),
		"CAPBUS_ADDRESS="+tp.Addr(),
		"CAPBUS_SERVER_KEY="+tp.ServerKey().Z85(),
		"CAPBUS_PUBLIC="+tp.cast.gw.Public.Z85(),
		"CAPBUS_SECRET="+tp.cast.gw.Secret.Z85(),
		"CAPBUS_IDENTITY=gateway",
		"CAPBUS_PEER=weather",
		"CAPBUS_ALLOWED=temperature",
		"CAPBUS_DENIED=set_units",
	)
	out, err := cmd.CombinedOutput()
	t.Logf("python:\n%s", out)
	require.NoError(t, err)
	s := string(out)
	assert.Contains(t, s, "WELCOME gateway gateway")
	assert.Contains(t, s, "RESULT 21.5")
	assert.Contains(t, s, `REFUSED 13 method "set_units" of "weather" requires capabilities [can_configure], but capabilities [] were provided; missing [can_configure]`)
	assert.True(t, strings.HasSuffix(strings.TrimSpace(s), "OK"))
	assert.EqualValues(t, 1, w.calls.Load(), "the weather agent served only the allowed call")
}
