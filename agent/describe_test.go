package agent

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

func TestDescribe_SaysWhatEachMethodNeedsAndWhetherTheCallerMayCallIt(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	b.agent("weatherman", "weather", weather(t, nil, nil))
	alice := b.agent("alice", "alice", nil)
	bob := b.agent("bob", "bob", nil)
	ctx := context.Background()

	d, err := alice.Describe(ctx, "weather")
	require.NoError(t, err)
	assert.Equal(t, "weather", d.Identity)
	assert.Equal(t, "weatherman", d.UserID)
	byName := map[string]MethodDescription{}
	for _, m := range d.Methods {
		byName[m.Name] = m
	}
	require.Contains(t, byName, "temperature")
	temp := byName["temperature"]
	assert.True(t, temp.Allowed)
	assert.Equal(t, []string{"can_read_temp"}, temp.Capabilities)
	assert.Equal(t, []string{"can_read_temp"}, temp.DeclaredCapabilities)
	assert.Equal(t, []string{"name"}, temp.Params, "rpc.Func names the parameters after the struct's msgpack fields")
	admin := byName["admin"]
	assert.False(t, admin.Allowed)
	assert.Equal(t, []string{"admin"}, admin.Roles)
	assert.Equal(t, []string{"role:admin"}, admin.Missing)
	require.Len(t, admin.Warnings, 1)
	assert.Contains(t, admin.Warnings[0], `role "admin" (required by weather.admin) grants no capability in auth.json`)

	d, err = bob.Describe(ctx, "weather")
	require.NoError(t, err)
	for _, m := range d.Methods {
		if m.Name == "temperature" {
			assert.False(t, m.Allowed)
			assert.Equal(t, []string{"can_read_temp"}, m.Missing)
			assert.Contains(t, m.Reason, "can_read_temp")
		}
	}
	_, err = bob.Describe(ctx, "nobody")
	assert.ErrorIs(t, err, rpc.ErrNoRoute)
}

func TestAgent_WarnsWhenAnExportsRoleCanBeHeldByNobody(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	var logs syncBuffer
	b.agent("weatherman", "weather", weather(t, nil, nil), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `role \"admin\" (required by weather.admin) grants no capability in auth.json`)
	}, 10*time.Second, 5*time.Millisecond, "logs: %s", &logs)
	assert.Contains(t, logs.String(), "every call of it will be refused")
}

func TestWhoAmI_SaysWhenThePlatformRejectedAuthJSON(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra())
	alice := b.agent("alice", "alice", nil)
	ctx := context.Background()
	me, err := alice.WhoAmI(ctx)
	require.NoError(t, err)
	assert.Nil(t, me.Rejected)

	data, err := os.ReadFile(b.authFile)
	require.NoError(t, err)
	broken := strings.Replace(string(data), `"user_id"`, `"usr_id"`, 1)
	require.NoError(t, atomicfile.Write(b.authFile, []byte(broken), 0o600))
	require.Eventually(t, func() bool {
		me, err = alice.WhoAmI(ctx)
		return err == nil && me.Rejected != nil
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, b.authFile, me.Rejected.File)
	assert.Contains(t, me.Rejected.String(), b.authFile+":")
	assert.Contains(t, me.Rejected.Path, "usr_id")
	assert.Contains(t, me.Rejected.Message, `did you mean "user_id"`)
	assert.Contains(t, me.PolicyNote, "older policy")
}

func TestAgent_WithConnectAttemptsGivesUpAtOnceWhenNothingListens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "tcp://" + l.Addr().String()
	require.NoError(t, l.Close())

	b := newBus(t, standardUsers(), standardExtra())
	a := b.newAgent("alice", "alice", WithAddress(addr), WithConnectAttempts(1))
	errc := make(chan error, 1)
	go func() { errc <- a.Run(context.Background()) }()
	err = <-errc
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Contains(t, err.Error(), "nothing is listening at "+addr)
	werr := a.WaitConnected(context.Background())
	require.Error(t, werr, "WaitConnected fails at once after Run gave up")
	assert.Contains(t, werr.Error(), "nothing is listening")
}

// TestAgent_WaitConnectedSeesRunGiveUpEveryTime repeats a failed first
// attempt: WaitConnected must return Run's diagnosis as soon as Run gives
// up, never wait for its own deadline (a state change between reading the
// state and waiting for the next change was once missed).
func TestAgent_WaitConnectedSeesRunGiveUpEveryTime(t *testing.T) {
	// 50 failed handshakes from one host: more than the failure limit,
	// which would answer the last ones "busy" (see the next test).
	b := newBus(t, standardUsers(), standardExtra(), platform.WithLimits(platform.Limits{HandshakeFailures: 1000}))
	other, err := keys.Generate()
	require.NoError(t, err)
	for i := range 50 {
		a := b.newAgent("alice", "alice", WithServerKey(other.Public), WithConnectAttempts(1))
		errc := make(chan error, 1)
		go func() { errc <- a.Run(context.Background()) }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := a.WaitConnected(ctx)
		cancel()
		require.Error(t, err)
		require.NotErrorIs(t, err, context.DeadlineExceeded, "attempt %d: WaitConnected missed Run's end", i)
		assert.Contains(t, err.Error(), "wrong or stale server key")
		require.ErrorIs(t, <-errc, curve.ErrServerKey)
	}
}

// TestAgent_AHostThatKeepsFailingHandshakesIsToldToComeBackLater: past
// the platform's failure limit, a host's handshakes are answered "busy"
// (ERROR "300") without a key agreement; the agent says so and, as the
// refusal is temporary, keeps trying until the backoff ends.
func TestAgent_AHostThatKeepsFailingHandshakesIsToldToComeBackLater(t *testing.T) {
	b := newBus(t, standardUsers(), standardExtra(), platform.WithLimits(platform.Limits{HandshakeFailures: 3}))
	other, err := keys.Generate()
	require.NoError(t, err)
	for range 3 {
		a := b.newAgent("alice", "alice", WithServerKey(other.Public), WithConnectAttempts(1))
		require.ErrorIs(t, a.Run(context.Background()), curve.ErrServerKey)
	}
	// Now even the right server key is told to come back later...
	a := b.newAgent("alice", "alice", WithConnectAttempts(1))
	err = a.Run(context.Background())
	require.ErrorIs(t, err, curve.ErrBusy)
	assert.Contains(t, err.Error(), "takes no connection from this agent for now")
	// ...and an agent that keeps trying gets in once the backoff (1 s) ends.
	a = b.newAgent("alice", "alice", WithBackoff(50*time.Millisecond, 200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.NoError(t, a.WaitConnected(ctx))
	cancel()
	require.NoError(t, <-done)
}
