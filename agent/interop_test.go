package agent

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/rpc"
)

// TestInterop_PythonAgent runs a capbus agent written in Python with pyzmq
// (libzmq's CURVE) and msgpack, from docs/PROTOCOL.md alone: it calls a Go
// agent by position and by keyword, then serves a method the Go SDK calls.
func TestInterop_PythonAgent(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import zmq, msgpack").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 with zmq and msgpack is not available: %v", err)
		}
		t.Skipf("python3 with zmq and msgpack is not available: %v", err)
	}
	users := append(standardUsers(), user{ID: "python", Identity: "py", Capabilities: []string{"can_read_temp"}})
	b := newBus(t, users, standardExtra())
	b.agent("weatherman", "weather", weather(t, nil, nil))
	alice := b.agent("alice", "alice", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kp := b.keys["python"]
	cmd := exec.CommandContext(ctx, python, "testdata/py_agent.py")
	cmd.Env = append(os.Environ(),
		"CAPBUS_ADDRESS="+b.addr,
		"CAPBUS_SERVER_KEY="+b.server.Public.Z85(),
		"CAPBUS_PUBLIC="+kp.Public.Z85(),
		"CAPBUS_SECRET="+kp.Secret.Z85(),
		"CAPBUS_IDENTITY=py")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var results []string
	for line := range lines {
		require.False(t, strings.HasPrefix(line, "FAIL"), "python agent: "+line)
		if line == "READY" {
			break
		}
		results = append(results, line)
	}
	require.Equal(t, "RESULT 21.5|RESULT 21.5", strings.Join(results, "|"), "python's calls of the Go agent")

	s, err := CallAs[string](ctx, alice, "py", "echo", "hi")
	require.NoError(t, err, "echo by position")
	require.Equal(t, "hi from python (alice)", s, "echo by position")
	s, err = CallAs[string](ctx, alice, "py", "echo", rpc.Kwargs{"text": "kw"})
	require.NoError(t, err, "echo by keyword")
	require.Equal(t, "kw from python (alice)", s, "echo by keyword")
	s, err = CallAs[string](ctx, alice, "py", "quit")
	require.NoError(t, err, "quit")
	require.Equal(t, "bye", s, "quit")
	var unexpected []string
	for line := range lines {
		unexpected = append(unexpected, line)
	}
	assert.Empty(t, unexpected, "python agent: unexpected output")
	require.NoError(t, cmd.Wait(), "python agent")
}
