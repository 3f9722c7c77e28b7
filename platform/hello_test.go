package platform

import (
	"testing"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func TestHello_WelcomeSaysWhatThePlatformDecided(t *testing.T) {
	tp := startPlatform(t)
	alice := tp.dial(t, tp.cast.alice)
	reply := alice.hello("alice.desk")
	require.Equal(t, "welcome", string(reply[vip.FrameSubsystem]))
	assert.Equal(t, "alice", string(reply[vip.FrameUser]))
	var w map[string]any
	require.NoError(t, msgpack.Unmarshal(reply[vip.FrameArgs], &w))
	assert.Equal(t, "alice.desk", w["identity"])
	assert.Equal(t, "alice", w["user_id"])
	assert.Equal(t, Version, w["version"])
	assert.Equal(t, tp.ServerKey().Z85(), w["server_key"])
	assert.EqualValues(t, 1, w["generation"])
}

func TestHello_IdentityOfAnotherKeysLiveConnectionIsRefused(t *testing.T) {
	tp := startPlatform(t)
	a := tp.dial(t, tp.cast.free1)
	a.mustHello("scratch")
	b := tp.dial(t, tp.cast.free2)
	code, text := errnoOf(t, b.hello("scratch"))
	assert.Equal(t, rpc.CodeIdentityInUse, code)
	assert.Contains(t, text, `"scratch"`)
	assert.True(t, b.waitClosed(testTimeout))

	// a is still there.
	id := a.nextID()
	a.sendStrings("", "VIP1", "", id, "query", "whoami")
	var me map[string]any
	require.NoError(t, msgpack.Unmarshal(a.expect(byMsgID(id))[6], &me))
	assert.Equal(t, "scratch", me["identity"])
	assert.Equal(t, "free1", me["user_id"])
}

func TestHello_SameKeyReconnectingReplacesTheStaleConnection(t *testing.T) {
	tp := startPlatform(t)
	old := tp.dial(t, tp.cast.alice)
	old.mustHello("alice")
	fresh := tp.dial(t, tp.cast.alice)
	fresh.mustHello("alice", rpc.NewExport("echo"))
	assert.True(t, old.waitClosed(testTimeout), "the stale connection is closed")

	// Calls to "alice" reach the new connection.
	gw := tp.dial(t, tp.cast.gw)
	gw.mustHello("gateway")
	fresh.serve(func(string, string, string, []byte) any { return "fresh" })
	reply := gw.call("alice", "echo")
	require.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)
	var v string
	require.NoError(t, msgpack.Unmarshal(reply[7], &v))
	assert.Equal(t, "fresh", v)
}

func TestPeerlist_ListsAndBroadcastsAddAndDrop(t *testing.T) {
	tp := startPlatform(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	add := alice.expect(func(f [][]byte) bool {
		return string(f[vip.FrameSubsystem]) == "peerlist" && string(f[vip.FrameArgs]) == "add"
	})
	assert.Equal(t, []string{"", "VIP1", "", "", "peerlist", "add", "weather"}, framesToStrings(add))

	id := alice.nextID()
	alice.sendStrings("", "VIP1", "", id, "peerlist", "list")
	assert.Equal(t, []string{"alice", "weather"}, framesToStrings(alice.expect(byMsgID(id))[6:]))

	w.close()
	drop := alice.expect(func(f [][]byte) bool {
		return string(f[vip.FrameSubsystem]) == "peerlist" && string(f[vip.FrameArgs]) == "drop"
	})
	assert.Equal(t, "weather", string(drop[6]))
	code, _ := errnoOf(t, alice.call("weather", "temperature"))
	assert.Equal(t, rpc.CodeNoRoute, code)
}

func TestQuery_AnswersServerkeyVersionWhoamiCallablePermissions(t *testing.T) {
	tp := startPlatform(t)
	tp.startWeather(t)
	bobby := tp.dial(t, tp.cast.bobby)
	ask := func(what string) any {
		id := bobby.nextID()
		bobby.sendStrings("", "VIP1", "", id, "query", what)
		f := bobby.expect(byMsgID(id))
		require.Equal(t, "query", string(f[vip.FrameSubsystem]), "%q", f)
		require.Equal(t, what, string(f[vip.FrameArgs]))
		var v any
		require.NoError(t, msgpack.Unmarshal(f[6], &v))
		return v
	}
	// Before hello: serverkey, version and whoami work.
	assert.Equal(t, tp.ServerKey().Z85(), ask("serverkey"))
	assert.Equal(t, Version, ask("version"))
	bobby.mustHello("bobby")
	me := ask("whoami").(map[string]any)
	assert.Equal(t, "bobby", me["user_id"])
	assert.Equal(t, tp.cast.bobby.Public.Z85(), me["key"])

	callable := ask("callable").([]any)
	var names []string
	for _, c := range callable {
		m := c.(map[string]any)
		names = append(names, m["peer"].(string)+"."+m["method"].(string))
	}
	assert.Equal(t, []string{"weather.hello"}, names, "Bobby may call only the open method")

	perm := ask("permissions").(map[string]any)
	assert.Empty(t, perm["capabilities"])

	tp.writePolicy(t, true, `["can_read_temp"]`)
	require.Eventually(t, func() bool {
		return len(ask("callable").([]any)) == 2
	}, 3e9, 2e7)
	perm = ask("permissions").(map[string]any)
	assert.Equal(t, []any{"can_read_temp"}, perm["capabilities"])
}

func TestPeerlist_APeerWhoseHelloSaysOffIsToldOfNoArrivalOrDeparture(t *testing.T) {
	tp := startPlatform(t)
	isPeerlist := func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == vip.SubPeerlist }
	quiet := tp.dial(t, tp.cast.alice)
	require.Equal(t, vip.SubWelcome, string(quiet.helloMeta("alice", map[string]string{vip.MetaPeerlist: vip.PeerlistOff})[vip.FrameSubsystem]))
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	// weather comes and goes, then comes again: once bobby has the second
	// add, the broadcasts of the first add and of the drop are over.
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	assert.Equal(t, []string{"add", "weather"}, framesToStrings(bobby.expect(isPeerlist))[5:])
	w.close()
	assert.Equal(t, []string{"drop", "weather"}, framesToStrings(bobby.expect(isPeerlist))[5:])
	w = tp.dial(t, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	assert.Equal(t, []string{"add", "weather"}, framesToStrings(bobby.expect(isPeerlist))[5:])

	// Everything the quiet peer received up to the answer of its listing.
	id := quiet.nextID()
	quiet.sendStrings("", "VIP1", "", id, vip.SubPeerlist, vip.OpList)
	var before [][]string
	listing := quiet.expect(func(f [][]byte) bool {
		if byMsgID(id)(f) {
			return true
		}
		before = append(before, framesToStrings(f))
		return false
	})
	assert.Empty(t, before, "a peer whose hello said peerlist off is sent no add or drop")
	assert.Equal(t, []string{"alice", "bobby", "weather"}, framesToStrings(listing)[6:], "it can still ask for the list")
}

func TestPeerlist_ReplacementBroadcastsDropThenAdd(t *testing.T) {
	tp := startPlatform(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	isPeerlist := func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == "peerlist" }
	stale := tp.dial(t, tp.cast.weather)
	stale.mustHello("weather", weatherExports...)
	assert.Equal(t, []string{"add", "weather"}, framesToStrings(alice.expect(isPeerlist))[5:])

	fresh := tp.dial(t, tp.cast.weather)
	fresh.mustHello("weather", weatherExports...)
	assert.Equal(t, []string{"drop", "weather"}, framesToStrings(alice.expect(isPeerlist))[5:],
		"callers learn that calls in flight to the replaced connection get no reply")
	assert.Equal(t, []string{"add", "weather"}, framesToStrings(alice.expect(isPeerlist))[5:])
}
