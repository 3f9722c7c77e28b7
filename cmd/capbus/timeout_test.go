package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

// TestCall_SlowMethodExitsWithTimeout runs an embedded platform and an agent
// whose method never answers: capbus call gives up at --timeout with exit
// code 6, distinct from refused, not found and unreachable.
func TestCall_SlowMethodExitsWithTimeout(t *testing.T) {
	home := t.TempDir()
	server, err := keys.Generate()
	require.NoError(t, err)
	slowKP, err := keys.Generate()
	require.NoError(t, err)
	cliKey := filepath.Join(home, "me.json")
	r := capbus(t, home, "keygen", "--out", cliKey)
	require.Equal(t, 0, r.code, r.stderr)
	cliPub := r.stdout[:40]

	doc, err := json.Marshal(map[string]any{"allow": []map[string]any{
		{"user_id": "slow", "identity": "slow", "credentials": slowKP.Public.Base64URL()},
		{"user_id": "me", "credentials": cliPub},
	}})
	require.NoError(t, err)
	authFile := filepath.Join(home, "auth.json")
	require.NoError(t, os.WriteFile(authFile, doc, 0o600))

	quiet := slog.New(slog.DiscardHandler)
	p, err := platform.New(platform.WithAddress("tcp://127.0.0.1:0"), platform.WithKeyPair(server),
		platform.WithAuthFile(authFile), platform.WithLogger(quiet))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(ctx) }()
	<-p.Ready()

	a, err := agent.New("slow", agent.WithKeyPair(slowKP), agent.WithPlatform(p.Addr(), p.ServerKey()), agent.WithLogger(quiet))
	require.NoError(t, err)
	require.NoError(t, a.Export("wait", rpc.Func(func(ctx context.Context, _ struct{}) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})))
	adone := make(chan error, 1)
	go func() { adone <- a.Run(ctx) }()
	<-a.Ready()
	defer func() {
		cancel()
		<-adone
		<-pdone
	}()

	r = capbus(t, home, "call", "--address", p.Addr(), "--server-key", p.ServerKey().Z85(), "--key", cliKey,
		"--timeout", "300ms", "slow", "wait")
	assert.Equal(t, exitTimeout, r.code, r.stderr)
	assert.Contains(t, r.stderr, "timeout")
}
