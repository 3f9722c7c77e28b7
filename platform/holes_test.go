package platform

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// refuseShell is an admission hook that refuses any agent exporting a
// method named "shell", and records what it saw.
type refuseShell struct {
	mu   sync.Mutex
	seen []Admission
}

func (h *refuseShell) Admit(_ context.Context, a *Admission) error {
	h.mu.Lock()
	h.seen = append(h.seen, *a)
	h.mu.Unlock()
	for _, e := range a.Exports {
		if e.Name == "shell" {
			return errors.New("exporting a shell is not allowed on this platform")
		}
	}
	return nil
}

func (h *refuseShell) last() Admission {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[len(h.seen)-1]
}

// exportAfterHello sends ["RPC", "export", EXPORTS] and returns the reply.
func (c *client) exportAfterHello(exports ...rpc.Export) [][]byte {
	c.t.Helper()
	wire := make([]vip.Export, len(exports))
	for i, e := range exports {
		wire[i] = vip.ExportOf(e)
	}
	payload, err := codec.Marshal(wire)
	require.NoError(c.t, err)
	id := c.nextID()
	c.send([]byte(""), []byte("VIP1"), []byte(""), []byte(id), []byte("RPC"), []byte("export"), payload)
	return c.expect(byMsgID(id))
}

// TestAdmissionHook_JudgesExportsAddedAfterHelloLikeThoseOfHello is the
// bypass of issue 12: refused at hello for exporting "shell", an agent
// connected without it and exported it afterwards, and was called.
func TestAdmissionHook_JudgesExportsAddedAfterHelloLikeThoseOfHello(t *testing.T) {
	hook := &refuseShell{}
	tp := startPlatform(t, WithAdmissionHook(hook))

	refused := tp.dial(t, tp.cast.weather)
	code, text := errnoOf(t, refused.hello("weather", rpc.NewExport("temperature"), rpc.NewExport("shell")))
	require.Equal(t, rpc.CodePermission, code)
	require.Contains(t, text, "exporting a shell is not allowed")

	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", rpc.NewExport("temperature"))

	reply := w.exportAfterHello(rpc.NewExport("shell"))
	code, text = errnoOf(t, reply)
	assert.Equal(t, rpc.CodePermission, code, "a refused export is errno 1")
	assert.Equal(t, `exports of "weather" refused by the platform's admission hook: exporting a shell is not allowed on this platform`, text)
	a := hook.last()
	assert.True(t, a.AfterHello)
	assert.Equal(t, "weather", a.Principal.Identity)
	assert.Equal(t, []string{"shell", "temperature"}, exportNames(a.Exports), "the hook sees every export the agent would have")

	// An export the hook accepts is taken.
	require.Equal(t, "exported", string(w.exportAfterHello(rpc.NewExport("humidity"))[vip.FrameArgs]))

	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	code, _ = errnoOf(t, alice.call("weather", "shell"))
	assert.Equal(t, rpc.CodeNotFound, code, "the refused export changed nothing")
	assert.True(t, strings.Contains(tp.audit.String(), `"action":"export","decision":"deny","user_id":"weather","identity":"weather"`))
	w.serve(func(method, caller, user string, payload []byte) any { return "ran " + method })
	reply = alice.call("weather", "humidity")
	assert.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)
	assert.EqualValues(t, 1, w.calls.Load(), "only humidity ran")
}

func exportNames(es []rpc.Export) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestAdmissionHook_SeesThePrincipalAsThePolicySeesIt(t *testing.T) {
	hook := &refuseShell{}
	tp := startPlatform(t, WithAdmissionHook(hook))
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice.ui")
	a := hook.last()
	assert.Equal(t, "alice", a.Principal.UserID)
	assert.Equal(t, "alice.ui", a.Principal.Identity)
	assert.Equal(t, tp.cast.alice.Public, a.Principal.Key)
	var caps []string
	for _, g := range a.Permissions.Capabilities {
		caps = append(caps, g.Name)
		assert.NotEmpty(t, g.Sources, "each capability says where it comes from")
	}
	assert.Equal(t, []string{"can_publish_devices", "can_read_devices", "can_read_temp"}, caps)
}

// TestRouter_ForwardsOnlyRepliesToCallsThatWereMade: a peer with no
// capability at all sends results and errors to Alice with msg-ids of its
// choosing; none reaches her, each is audited.
func TestRouter_ForwardsOnlyRepliesToCallsThatWereMade(t *testing.T) {
	tp := startPlatform(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	for _, op := range []string{"result", "error"} {
		bobby.sendStrings("alice", "VIP1", "", "m1", "RPC", op, "temperature", "\x01")
	}
	// Alice gets her pong, and nothing from Bobby before it.
	id := alice.nextID()
	alice.sendStrings("", "VIP1", "", id, "ping")
	got := alice.expect(func(f [][]byte) bool {
		return string(f[vip.FrameSubsystem]) != "peerlist"
	})
	assert.Equal(t, "pong", string(got[vip.FrameSubsystem]), "a forged reply reached Alice: %q", got)
	require.Eventually(t, func() bool { return tp.stats.unmatchedReplies.Load() == 2 }, testTimeout, time.Millisecond)
	assert.True(t, strings.Contains(tp.audit.String(), `"action":"reply","decision":"deny","user_id":"bobby","identity":"bobby","key":"`))
	assert.True(t, strings.Contains(tp.audit.String(), `"reason":"no call awaits this reply"`))

	// A real call's reply still passes, once: a second reply is dropped.
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	callID := alice.nextID()
	alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(callID), []byte("RPC"), []byte("call"), []byte("temperature"))
	call := w.expect(byMsgID(callID))
	for range 2 {
		w.send(call[0], vip.SignatureFrame, nil, []byte(callID), []byte("RPC"), []byte("result"), []byte("temperature"), []byte{0x01})
	}
	reply := alice.expect(byMsgID(callID))
	assert.Equal(t, "result", string(reply[vip.FrameArgs]))
	require.Eventually(t, func() bool { return tp.stats.unmatchedReplies.Load() == 3 }, testTimeout, time.Millisecond,
		"the second reply to one call is dropped")
}

func TestRouter_AnswersTheCallsOfACalleeThatLeaves(t *testing.T) {
	tp := startPlatform(t)
	w := tp.dial(t, tp.cast.weather) // never answers
	w.mustHello("weather", weatherExports...)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	ids := []string{alice.nextID(), alice.nextID()}
	for _, id := range ids {
		alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"))
		w.expect(byMsgID(id))
	}
	start := time.Now()
	w.close()
	answered := map[string]bool{}
	for range ids { // in any order
		f := alice.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == "error" })
		code, text := errnoOf(t, f)
		assert.Equal(t, rpc.CodeUnavailable, code)
		assert.Equal(t, `peer "weather" disconnected while the call of "temperature" was in flight; it may or may not have run`, text)
		answered[string(f[vip.FrameMsgID])] = true
	}
	assert.Equal(t, map[string]bool{ids[0]: true, ids[1]: true}, answered)
	assert.Less(t, time.Since(start), 5*time.Second, "answered at once, not at the caller's timeout")
}

func TestRouter_CallerThatLeavesCancelsItsCalls(t *testing.T) {
	tp := startPlatform(t)
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	id := alice.nextID()
	alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"))
	w.expect(byMsgID(id))
	alice.close()
	cancel := w.expect(func(f [][]byte) bool {
		return len(f) > vip.FrameArgs && string(f[vip.FrameArgs]) == "cancel"
	})
	assert.Equal(t, []string{"alice", "VIP1", "alice", id, "RPC", "cancel", "temperature"}, framesToStrings(cancel))
}

func TestRouter_ForwardsACancelOnlyForACallAwaitingItsReply(t *testing.T) {
	tp := startPlatform(t)
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	alice.sendStrings("weather", "VIP1", "", "not-a-call", "RPC", "cancel", "temperature")
	id := alice.nextID()
	alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"))
	first := w.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == "RPC" })
	assert.Equal(t, "call", string(first[vip.FrameArgs]), "the unmatched cancel was dropped")
	alice.sendStrings("weather", "VIP1", "", id, "RPC", "cancel", "temperature")
	c := w.expect(byMsgID(id))
	assert.Equal(t, "cancel", string(c[vip.FrameArgs]))
	assert.Equal(t, "alice", string(c[vip.FramePeer]), "stamped with the caller")
}

func TestRouter_DeadlineThatPassedIsATimeoutAndAnExpiredCallIsAnswered(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{MaxCallTime: 200 * time.Millisecond}))
	w := tp.dial(t, tp.cast.weather) // never answers
	w.mustHello("weather", weatherExports...)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")

	id := alice.nextID()
	alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"), nil, []byte("0"))
	code, text := errnoOf(t, alice.expect(byMsgID(id)))
	assert.Equal(t, rpc.CodeTimeout, code)
	assert.Contains(t, text, "passed before it reached the platform")

	id = alice.nextID()
	alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"), nil, []byte("soon"))
	code, _ = errnoOf(t, alice.expect(byMsgID(id)))
	assert.Equal(t, rpc.CodeInvalidArgs, code, "a TIMEOUT that is not milliseconds")

	// No TIMEOUT: the platform's maximum call time applies.
	id = alice.nextID()
	alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"))
	call := w.expect(byMsgID(id))
	code, text = errnoOf(t, alice.expect(byMsgID(id)))
	assert.Equal(t, rpc.CodeTimeout, code)
	assert.Contains(t, text, `no reply from "weather" to the call of "temperature" before its deadline`)
	// The late reply is dropped.
	before := tp.stats.unmatchedReplies.Load()
	w.send(call[0], vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("result"), []byte("temperature"), []byte{0x01})
	require.Eventually(t, func() bool { return tp.stats.unmatchedReplies.Load() == before+1 }, testTimeout, time.Millisecond)
}

func TestRouter_BoundsTheCallsAwaitingReplies(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{MaxCallsInFlight: 3}))
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	for range 3 {
		id := alice.nextID()
		alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"))
		w.expect(byMsgID(id))
	}
	code, text := errnoOf(t, alice.call("weather", "temperature"))
	assert.Equal(t, rpc.CodeOverloaded, code)
	assert.Contains(t, text, "too many calls awaiting replies")
}

// TestReload_RewritesInPlaceNeverRevokeEveryone is the rewrite storm of
// issue 12: an editor that truncates auth.json before it writes it, 100
// times, while refused calls (which read the file ahead of the watcher)
// keep coming. The closed policy is never installed and no connection is
// lost.
func TestReload_RewritesInPlaceNeverRevokeEveryone(t *testing.T) {
	if testing.Short() {
		t.Skip("about 10 s of rewrites")
	}
	tp := startPlatform(t)
	w := tp.startWeather(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	stop := make(chan struct{})
	var refused atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // refused traffic: Bobby lacks can_read_temp
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			f, err := bobby.tryCall("weather", "temperature")
			if err != nil {
				return
			}
			if string(f[vip.FrameSubsystem]) == "error" {
				refused.Add(1)
			}
		}
	}()

	content := tp.cast.policy(true, `[]`)
	for range 100 {
		f, err := os.OpenFile(tp.authFile, os.O_WRONLY|os.O_TRUNC, 0o600)
		require.NoError(t, err)
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond) // the editor's gap, not synchronisation
		_, err = f.Write(content)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	close(stop)
	wg.Wait()

	assert.Greater(t, refused.Load(), int64(100), "refused traffic ran throughout")
	for _, line := range strings.Split(tp.audit.String(), "\n") {
		assert.NotContains(t, line, "closed policy installed")
		assert.NotContains(t, line, `"action":"revoke"`)
	}
	reply := alice.call("weather", "temperature")
	assert.Equal(t, "result", string(reply[vip.FrameArgs]), "Alice is still connected and allowed")
	assert.Nil(t, w.lastErr(), "the weather agent's connection was never closed")
	assert.Nil(t, alice.lastErr())
}

// TestReload_RemovalIsInForceWithin150ms: after a write that removes a
// capability, calls are refused within the bound that PROTOCOL.md and
// AUTH.md state.
func TestReload_RemovalIsInForceWithin150ms(t *testing.T) {
	tp := startPlatform(t)
	tp.writePolicy(t, true, `["can_read_temp"]`)
	tp.startWeather(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	require.Eventually(t, func() bool {
		return string(bobby.call("weather", "temperature")[vip.FrameArgs]) == "result"
	}, testTimeout, 10*time.Millisecond)

	written := time.Now()
	require.NoError(t, atomicfile.Write(tp.authFile, tp.cast.policy(true, `[]`), 0o600))
	var refusedAt time.Duration
	for refusedAt == 0 {
		f := bobby.call("weather", "temperature")
		if string(f[vip.FrameSubsystem]) == "error" {
			refusedAt = time.Since(written)
		}
		require.Less(t, time.Since(written), testTimeout, "the removal never took effect")
	}
	t.Logf("removal in force %v after the write", refusedAt)
	assert.LessOrEqual(t, refusedAt, 150*time.Millisecond)
}

// TestReload_AGrantWrittenJustBeforeIsHonouredAndAFresherReadNeverRevokes:
// a call refused under the policy in force is judged again by what the
// file holds now; a revocation in the same file waits for the watcher.
func TestReload_AGrantWrittenJustBeforeIsHonouredAtOnce(t *testing.T) {
	tp := startPlatform(t)
	tp.startWeather(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	code, _ := errnoOf(t, bobby.call("weather", "temperature"))
	require.Equal(t, rpc.CodeUnauthorized, code)
	tp.writePolicy(t, true, `["can_read_temp"]`)
	reply := bobby.call("weather", "temperature") // at once, ahead of the watcher's debounce
	assert.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)
}
