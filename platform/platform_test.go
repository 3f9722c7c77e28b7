package platform

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func TestNew_RequiresAPolicySource(t *testing.T) {
	_, err := New()
	assert.ErrorIs(t, err, ErrNoPolicy)
}

func TestRun_ShutdownTellsPeersAndLeavesNothingRunning(t *testing.T) {
	c := newCast(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "auth.json")
	require.NoError(t, os.WriteFile(file, c.policy(true, `[]`), 0o600))
	auditFile := filepath.Join(dir, "audit.log")
	p, err := New(WithAddress("127.0.0.1:0"), WithKeystore(filepath.Join(dir, "keystore.json")),
		WithAuthFile(file), WithAuditFile(auditFile))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	require.True(t, strings.HasPrefix(p.Addr(), "tcp://127.0.0.1:"), p.Addr())
	assert.ErrorIs(t, p.Run(ctx), ErrAlreadyRun)

	tp := &testPlatform{Platform: p, cast: c}
	alice := tp.dial(t, c.alice)
	alice.mustHello("alice")
	bobby := tp.dial(t, c.bobby)
	bobby.mustHello("bobby")

	cancel()
	for _, cl := range []*client{alice, bobby} {
		f := cl.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == "error" })
		code, text := errnoOf(t, f)
		assert.Equal(t, rpc.CodeUnavailable, code)
		assert.Equal(t, "platform shutting down", text)
		assert.True(t, cl.waitClosed(testTimeout))
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}

	// The keystore was created 0600 and is reused.
	kp, err := keys.Load(filepath.Join(dir, "keystore.json"))
	require.NoError(t, err)
	assert.Equal(t, kp.Public, p.ServerKey())

	// The audit file holds JSON lines: admissions and disconnects, never a
	// secret key.
	data, err := os.ReadFile(auditFile)
	require.NoError(t, err)
	var actions []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		actions = append(actions, r["action"].(string))
	}
	assert.Contains(t, actions, "admit")
	assert.Contains(t, actions, "disconnect")
	for _, kp := range []keys.Pair{kp, c.alice, c.bobby} {
		assert.NotContains(t, string(data), kp.Secret.Z85())
	}
	// goleak in TestMain checks that no goroutine is left.
}

func TestReload_BadEditKeepsPolicyAndIsAudited(t *testing.T) {
	tp := startPlatform(t)
	w := tp.startWeather(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	require.NoError(t, atomicfile.Write(tp.authFile, []byte(`{"allow": [`), 0o600))
	require.Eventually(t, func() bool {
		return strings.Contains(tp.audit.String(), `"action":"reload","decision":"deny"`)
	}, 3*time.Second, 10*time.Millisecond)
	reply := alice.call("weather", "temperature")
	assert.Equal(t, "result", string(reply[vip.FrameArgs]))
	assert.EqualValues(t, 1, w.calls.Load())
}

func TestReload_DropsSubscriptionsNoLongerAllowed(t *testing.T) {
	tp := startPlatform(t)
	tp.writePolicy(t, true, `["can_read_devices"]`)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	require.Eventually(t, func() bool {
		id := bobby.nextID()
		bobby.sendStrings("", "VIP1", "", id, "pubsub", "subscribe", "devices/#")
		return string(bobby.expect(byMsgID(id))[vip.FrameArgs]) == "ok"
	}, 3*time.Second, 20*time.Millisecond)

	tp.writePolicy(t, true, `[]`)
	f := bobby.expect(func(f [][]byte) bool {
		return string(f[vip.FrameSubsystem]) == "error" && len(f) > 8 && string(f[8]) == "pubsub"
	})
	code, text := errnoOf(t, f)
	assert.Equal(t, rpc.CodeUnauthorized, code)
	assert.Contains(t, text, `"devices/#"`)

	// Alice publishes; Bobby no longer receives.
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	alice.sendStrings("", "VIP1", "", "p1", "pubsub", "publish", "devices/x", "\x01")
	assert.Equal(t, "ok", string(alice.expect(byMsgID("p1"))[vip.FrameArgs]))
	id := bobby.nextID()
	bobby.sendStrings("", "VIP1", "", id, "ping")
	for {
		f := bobby.expect(func([][]byte) bool { return true })
		require.False(t, len(f) > vip.FrameArgs && string(f[vip.FrameArgs]) == "message", "dropped subscription still delivered")
		if string(f[vip.FrameMsgID]) == id {
			break
		}
	}
}

func TestReload_DropsIdentityClaimsNoLongerAllowed(t *testing.T) {
	tp := startPlatform(t)
	free1 := tp.dial(t, tp.cast.free1)
	free1.mustHello("scratch")
	other := tp.dial(t, tp.cast.free1)
	other.mustHello("notes")

	// The new policy binds "scratch" to free2: free1 may no longer hold it.
	require.NoError(t, atomicfile.Write(tp.authFile, tp.cast.policyWith(policyVars{WithBobby: true, BobbyCaps: "[]", Free2Identity: "scratch"}), 0o600))
	f := free1.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == "error" })
	code, text := errnoOf(t, f)
	assert.Equal(t, rpc.CodePermission, code)
	assert.Contains(t, text, "identity claim revoked")
	assert.True(t, free1.waitClosed(time.Second))

	// free1's other identity is untouched, and free2 may now claim scratch.
	id := other.nextID()
	other.sendStrings("", "VIP1", "", id, "ping")
	assert.Equal(t, "pong", string(other.expect(byMsgID(id))[vip.FrameSubsystem]))
	tp.dial(t, tp.cast.free2).mustHello("scratch")
}

func TestRouter_CallToAFullQueueIsOverloaded(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{QueueMessages: 4}))
	// A callee that never reads.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := curve.Dial(ctx, tp.Addr(), tp.cast.weather, tp.ServerKey())
	require.NoError(t, err)
	defer conn.Close()
	wire := make([]vip.Export, len(weatherExports))
	for i, e := range weatherExports {
		wire[i] = vip.ExportOf(e)
	}
	h, _ := msgpack.Marshal(map[string]any{"identity": "weather", "exports": wire})
	require.NoError(t, conn.WriteMsg([][]byte{{}, vip.SignatureFrame, {}, []byte("h"), []byte("hello"), h}))
	welcome, err := conn.ReadMsg()
	require.NoError(t, err)
	require.Equal(t, "welcome", string(welcome[vip.FrameSubsystem]))

	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	big := make([]byte, 512<<10)
	var overloaded bool
	for i := 0; i < 256 && !overloaded; i++ {
		id := alice.nextID()
		alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"), big)
		select {
		case f := <-alice.in:
			if string(f[vip.FrameSubsystem]) == "error" {
				code, text := errnoOf(t, f)
				require.Equal(t, rpc.CodeOverloaded, code, text)
				overloaded = true
			}
		default:
		}
	}
	if !overloaded {
		f := alice.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == "error" })
		code, _ := errnoOf(t, f)
		assert.Equal(t, rpc.CodeOverloaded, code)
	}
	// The platform still answers Alice (a reply to Alice's own full queue
	// of 4 is dropped, so ask until one gets through).
	require.Eventually(t, func() bool {
		id := alice.nextID()
		alice.sendStrings("", "VIP1", "", id, "ping")
		timer := time.NewTimer(200 * time.Millisecond)
		defer timer.Stop()
		for {
			select {
			case f := <-alice.in:
				if string(f[vip.FrameMsgID]) == id {
					return true
				}
			case <-timer.C:
				return false
			}
		}
	}, testTimeout, time.Millisecond)
}

func TestRun_ListenFailureIsReturnedAndReadyCloses(t *testing.T) {
	tp := startPlatform(t)
	p, err := New(WithAddress(tp.Addr()), WithPolicy(mustParse(t, tp.cast.policy(true, "[]"))))
	require.NoError(t, err)
	err = p.Run(context.Background())
	require.Error(t, err, "the address is in use")
	<-p.Ready()
	assert.Empty(t, p.Addr())
}

func mustParse(t testing.TB, doc []byte) *auth.Policy {
	t.Helper()
	pol, err := auth.Parse("auth.json", doc)
	require.NoError(t, err)
	return pol
}

func TestReload_GrantWrittenJustBeforeACallAppliesToThatCall(t *testing.T) {
	tp := startPlatform(t)
	w := tp.startWeather(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	tp.writePolicy(t, true, `["can_read_temp"]`)
	reply := bobby.call("weather", "temperature") // no waiting for the file watcher
	require.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)
	assert.EqualValues(t, 1, w.calls.Load())
}

func TestReload_KeyWrittenJustBeforeTheHandshakeIsAdmitted(t *testing.T) {
	tp := startPlatform(t)
	tp.writePolicy(t, false, "")
	require.Eventually(t, func() bool { // Bobby's removal is in force
		return strings.Contains(tp.audit.String(), `"action":"reload","decision":"allow","file":"`+tp.authFile+`","generation":2`)
	}, 3*time.Second, 10*time.Millisecond)
	tp.writePolicy(t, true, `[]`)
	c, err := tp.tryDial(t, tp.cast.bobby) // no waiting for the file watcher
	require.NoError(t, err)
	c.mustHello("bobby")
}

// TestRouter_KeepsEachCallersOrderAcrossInlineAndQueuedWrites has two
// callers stream calls at a callee at once. The platform forwards each
// call either by sealing it into the callee's conn from the caller's reader
// or through the callee's writer queue, depending on what the writer is
// doing; whatever the mix, every call must reach the callee, or be refused
// with errno 105, and each caller's calls must arrive in the order sent.
func TestRouter_KeepsEachCallersOrderAcrossInlineAndQueuedWrites(t *testing.T) {
	// Queues large enough for every call: the refusals of a full queue
	// are platform replies, which a full queue of the caller would drop.
	tp := startPlatform(t, WithLimits(Limits{QueueMessages: 8192}))
	weather := tp.dial(t, tp.cast.weather)
	weather.mustHello("weather", weatherExports...)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	gw := tp.dial(t, tp.cast.gw)
	gw.mustHello("gateway")

	const n = 2000
	payload := make([]byte, 2048)
	stream := func(c *client) {
		for i := 1; i <= n; i++ {
			c.send([]byte("weather"), vip.SignatureFrame, nil, []byte(strconv.Itoa(i)), []byte("RPC"), []byte("call"), []byte("temperature"), payload)
		}
	}
	go stream(alice)
	go stream(gw)

	// A call refused for a full queue comes back to its caller as errno 105
	// with its msg-id; every call must either reach the callee or be
	// refused.
	last := map[string]int{}
	got := map[string]int{}
	refused := map[string]int{}
	refusal := func(who string, f [][]byte, ok bool) {
		require.True(t, ok, "%s disconnected", who)
		if string(f[vip.FrameSubsystem]) != "error" {
			return
		}
		code, text := errnoOf(t, f)
		require.Equal(t, rpc.CodeOverloaded, code, text)
		refused[who]++
	}
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for got["alice"]+refused["alice"] < n || got["gateway"]+refused["gateway"] < n {
		select {
		case f, ok := <-weather.in:
			require.True(t, ok, "callee disconnected: %v", weather.lastErr())
			if string(f[vip.FrameSubsystem]) != "RPC" {
				continue
			}
			from := string(f[vip.FramePeer])
			id, err := strconv.Atoi(string(f[vip.FrameMsgID]))
			require.NoError(t, err)
			require.Greater(t, id, last[from], "call %d from %s after %d", id, from, last[from])
			last[from] = id
			got[from]++
		case f, ok := <-alice.in:
			refusal("alice", f, ok)
		case f, ok := <-gw.in:
			refusal("gateway", f, ok)
		case <-deadline.C:
			t.Fatalf("received %v and refused %v of %d calls from each caller", got, refused, n)
		}
	}
	t.Logf("received %v, refused %v", got, refused)
	assert.Equal(t, n, got["alice"]+refused["alice"])
	assert.Equal(t, n, got["gateway"]+refused["gateway"])
}
