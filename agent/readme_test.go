package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

// readmeAgent is the code of README.md's "Writing an agent", word for
// word between the README markers (TestReadme_SnippetIsThisFilesCode
// checks it): TestReadme_WritingAnAgentRuns runs it against a real
// platform, so that the README's code cannot rot.
func readmeAgent(ctx context.Context, other *agent.Agent) (float64, error) {
	// README:begin
	a, err := agent.FromEnv("weather") // CAPBUS_HOME, CAPBUS_ADDRESS, known_hosts, keys/weather.json
	if err != nil {
		return 0, err
	}
	err = a.Export("temperature", rpc.Func(func(ctx context.Context, city string) (float64, error) {
		if c, ok := rpc.CallerFrom(ctx); ok { // the user the platform authenticated
			log.Printf("%s asked for %s", c.UserID, city)
		}
		return 21.5, nil
	}), rpc.Allow("can_read_temp")) // callers without it are refused by the platform
	if err != nil {
		return 0, err
	}
	go a.Run(ctx)                                // connects, serves, reconnects until ctx ends
	if err := a.WaitConnected(ctx); err != nil { // fails with the reason: key refused, wrong server key...
		return 0, err
	}

	// Elsewhere, in another agent:
	t, err := agent.CallAs[float64](ctx, other, "weather", "temperature", "paris")
	var e *rpc.Error
	if errors.Is(err, rpc.ErrUnauthorized) && errors.As(err, &e) {
		log.Printf("refused, missing %v", e.Missing())
	}
	// README:end
	return t, err
}

// localPlatform lays out a capbus home as "capbus platform run" does
// (known_hosts, keys/<identity>.json) in a temporary directory, points
// CAPBUS_HOME and CAPBUS_ADDRESS at it and runs a platform there. Each
// user gets a key pair, saved as keys/<user>.json.
func localPlatform(t *testing.T, allow []map[string]any) map[string]keys.Pair {
	t.Helper()
	home := t.TempDir()
	kps := map[string]keys.Pair{}
	for _, e := range allow {
		kp, err := keys.Generate()
		require.NoError(t, err)
		user := e["user_id"].(string)
		kps[user] = kp
		e["credentials"] = kp.Public.Z85()
		require.NoError(t, keys.Save(filepath.Join(home, "keys", user+".json"), kp))
	}
	doc, err := json.Marshal(map[string]any{"allow": allow})
	require.NoError(t, err)
	authFile := filepath.Join(home, "auth.json")
	require.NoError(t, os.WriteFile(authFile, doc, 0o600))
	p, err := platform.New(platform.WithAddress("tcp://127.0.0.1:0"), platform.WithAuthFile(authFile),
		platform.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	require.NotEmpty(t, p.Addr())
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.NoError(t, keys.AddKnownHost(filepath.Join(home, "known_hosts"), p.Addr(), p.ServerKey()))
	t.Setenv(agent.EnvHome, home)
	t.Setenv(agent.EnvAddress, p.Addr())
	t.Setenv(agent.EnvKeystore, "")
	return kps
}

// runAgent runs a until the end of the test, once connected.
func runAgent(t *testing.T, a *agent.Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.NoError(t, a.WaitConnected(ctx))
}

func TestReadme_WritingAnAgentRuns(t *testing.T) {
	localPlatform(t, []map[string]any{
		{"user_id": "weather", "identity": "weather"},
		{"user_id": "alice", "capabilities": []string{"can_read_temp"}},
		{"user_id": "bob"},
	})
	quiet := agent.WithLogger(slog.New(slog.DiscardHandler))
	alice, err := agent.FromEnv("alice", quiet)
	require.NoError(t, err)
	runAgent(t, alice)
	bob, err := agent.FromEnv("bob", quiet)
	require.NoError(t, err)
	runAgent(t, bob)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	temp, err := readmeAgent(ctx, alice)
	require.NoError(t, err)
	assert.Equal(t, 21.5, temp)

	_, err = agent.CallAs[float64](ctx, bob, "weather", "temperature", "paris")
	require.ErrorIs(t, err, rpc.ErrUnauthorized)
	var e *rpc.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, []string{"can_read_temp"}, e.Missing())
}

// TestReadme_SnippetIsThisFilesCode checks that README.md's "Writing an
// agent" code block is the code of readmeAgent, the one the test runs.
func TestReadme_SnippetIsThisFilesCode(t *testing.T) {
	src, err := os.ReadFile("readme_test.go")
	require.NoError(t, err)
	begin := strings.Index(string(src), "\t// README:begin\n")
	end := strings.Index(string(src), "\t// README:end\n")
	require.True(t, begin > 0 && end > begin)
	var code []string
	for _, line := range strings.Split(string(src[begin:end]), "\n")[1:] {
		code = append(code, strings.TrimPrefix(line, "\t"))
	}
	want := strings.TrimRight(strings.Join(code, "\n"), "\n")

	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	section := string(readme)[strings.Index(string(readme), "## Writing an agent"):]
	start := strings.Index(section, "```go\n")
	require.GreaterOrEqual(t, start, 0, "README.md's Writing an agent has a go code block")
	block := section[start+len("```go\n"):]
	block = strings.TrimRight(block[:strings.Index(block, "```")], "\n")
	assert.Equal(t, want, block, "README.md's code block must be readmeAgent's code (agent/readme_test.go)")
}

func TestFromEnv_ExplainsAMissingKeystoreOrKnownHosts(t *testing.T) {
	localPlatform(t, []map[string]any{{"user_id": "alice"}})
	_, err := agent.FromEnv("nokeys")
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(os.Getenv(agent.EnvHome), "keys", "nokeys.json"))
	assert.Contains(t, err.Error(), "capbus keygen --out")

	t.Setenv(agent.EnvAddress, "tcp://127.0.0.1:1")
	_, err = agent.FromEnv("alice")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "known_hosts")
	assert.Contains(t, err.Error(), "tcp://127.0.0.1:1")
	assert.ErrorIs(t, err, keys.ErrNoKnownHost)
}

func TestFromEnv_OptionsWinOverTheEnvironment(t *testing.T) {
	kps := localPlatform(t, []map[string]any{{"user_id": "alice"}})
	keystore := filepath.Join(t.TempDir(), "elsewhere.json")
	require.NoError(t, keys.Save(keystore, kps["alice"]))
	t.Setenv(agent.EnvKeystore, keystore)
	a, err := agent.FromEnv("alice.console", agent.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err, "CAPBUS_KEYSTORE names the key pair")
	runAgent(t, a)
	me, err := a.WhoAmI(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "alice", me.UserID)

	t.Setenv(agent.EnvKeystore, filepath.Join(t.TempDir(), "missing.json"))
	_, err = agent.FromEnv("alice.other", agent.WithKeyPair(kps["alice"]))
	require.NoError(t, err, "WithKeyPair replaces the keystore: the missing one is not read")
}
