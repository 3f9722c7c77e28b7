package platform

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func TestPlatform_AliceCallsWeatherTemperature(t *testing.T) {
	tp := startPlatform(t)
	w := tp.startWeather(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")

	reply := alice.call("weather", "temperature")
	require.Equal(t, "RPC", string(reply[vip.FrameSubsystem]), "%q", reply)
	require.Equal(t, "result", string(reply[vip.FrameArgs]))
	assert.Equal(t, "weather", string(reply[0]), "sender stamped")
	assert.Equal(t, "weather", string(reply[vip.FrameUser]), "callee user stamped")
	var v float64
	require.NoError(t, msgpack.Unmarshal(reply[7], &v))
	assert.Equal(t, 21.5, v)
	assert.EqualValues(t, 1, w.calls.Load())
}

func TestPlatform_RefusesBobbyWithoutCanReadTemp(t *testing.T) {
	tp := startPlatform(t)
	w := tp.startWeather(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	reply := bobby.call("weather", "temperature")
	code, text := errnoOf(t, reply)
	assert.Equal(t, rpc.CodeUnauthorized, code)
	assert.Equal(t, `method "temperature" of "weather" requires capabilities [can_read_temp], but capabilities [] were provided; missing [can_read_temp]`, text)
	assert.Equal(t, "weather", string(reply[7]), "original recipient")
	assert.Equal(t, "RPC", string(reply[8]), "original subsystem")
	data := errorData(t, reply)
	assert.Equal(t, "temperature", data["method"])
	assert.Equal(t, []string{"can_read_temp"}, strs(data["missing"]))
	assert.Equal(t, []string{"can_read_temp"}, strs(data["required"]))

	// An open method still works for Bobby, and proves ordering: the
	// weather agent saw that call and never the refused one.
	reply = bobby.call("weather", "hello")
	require.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)
	assert.EqualValues(t, 1, w.calls.Load(), "the weather handler must never see the refused call")
	assert.Contains(t, tp.audit.String(), `"action":"call","decision":"deny","user_id":"bobby"`)
}

func TestPlatform_StampsRealUserOverForgedUserFrame(t *testing.T) {
	tp := startPlatform(t)
	tp.startWeather(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	id := bobby.nextID()
	payload, _ := codec.EncodeCall(nil, nil)
	bobby.sendStrings("weather", "VIP1", "alice", id, "RPC", "call", "hello", string(payload))
	reply := bobby.expect(byMsgID(id))
	require.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)
	var seen map[string]string
	require.NoError(t, msgpack.Unmarshal(reply[7], &seen))
	assert.Equal(t, "bobby", seen["user"], "the callee must see the authenticated user, not the forged one")
	assert.Equal(t, "bobby", seen["caller"])

	// Forging the user frame does not grant Alice's capabilities either.
	id = bobby.nextID()
	bobby.sendStrings("weather", "VIP1", "alice", id, "RPC", "call", "temperature", string(payload))
	code, _ := errnoOf(t, bobby.expect(byMsgID(id)))
	assert.Equal(t, rpc.CodeUnauthorized, code)
}

func TestPlatform_UnknownKeyFailsHandshake(t *testing.T) {
	tp := startPlatform(t)
	_, err := tp.tryDial(t, tp.cast.mallory)
	require.Error(t, err)
	assert.True(t, errors.Is(err, curve.ErrRefused), "want a refused handshake, got %v", err)
	require.Eventually(t, func() bool {
		return strings.Contains(tp.audit.String(), `"action":"handshake","decision":"deny","key":"`+tp.cast.mallory.Public.Z85())
	}, testTimeout, 10*time.Millisecond, tp.audit.String())
}

func TestPlatform_RefusesIdentityOutsideTheKeysEntry(t *testing.T) {
	tp := startPlatform(t)
	bobby := tp.dial(t, tp.cast.bobby)
	reply := bobby.hello("weather")
	code, text := errnoOf(t, reply)
	assert.Equal(t, rpc.CodePermission, code)
	assert.Contains(t, text, `"weather"`)
	assert.True(t, bobby.waitClosed(testTimeout), "a refused hello closes the connection")

	// The weather identity is still free for its owner.
	tp.startWeather(t)
}

func TestPlatform_RemovingBobbyClosesHisConnectionWithinOneSecond(t *testing.T) {
	tp := startPlatform(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")

	tp.writePolicy(t, false, "")
	start := time.Now()
	closed := bobby.waitClosed(3 * time.Second)
	require.True(t, closed)
	assert.Less(t, time.Since(start), time.Second, "revocation must take effect within one second")

	// Alice is untouched.
	id := alice.nextID()
	alice.sendStrings("", "VIP1", "", id, "ping")
	assert.Equal(t, "pong", string(alice.expect(byMsgID(id))[vip.FrameSubsystem]))
	assert.Contains(t, tp.audit.String(), `"action":"revoke","decision":"deny","user_id":"bobby"`)

	// And Bobby cannot come back.
	_, err := tp.tryDial(t, tp.cast.bobby)
	assert.Error(t, err)
}

func TestPlatform_GrantingBobbyTheCapabilityLetsHisNextCallThrough(t *testing.T) {
	tp := startPlatform(t)
	w := tp.startWeather(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	code, _ := errnoOf(t, bobby.call("weather", "temperature"))
	require.Equal(t, rpc.CodeUnauthorized, code)

	tp.writePolicy(t, true, `["can_read_temp"]`)
	require.Eventually(t, func() bool {
		reply := bobby.call("weather", "temperature")
		return string(reply[vip.FrameSubsystem]) == "RPC" && string(reply[vip.FrameArgs]) == "result"
	}, 3*time.Second, 20*time.Millisecond)
	assert.EqualValues(t, 1, w.calls.Load())
}

func TestPlatform_RefusesProtectedPublishAndSubscribeWithoutCapability(t *testing.T) {
	tp := startPlatform(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	// Bobby may not subscribe to the protected tree...
	id := bobby.nextID()
	bobby.sendStrings("", "VIP1", "", id, "pubsub", "subscribe", "devices/#")
	code, text := errnoOf(t, bobby.expect(byMsgID(id)))
	assert.Equal(t, rpc.CodeUnauthorized, code)
	assert.Contains(t, text, "can_read_devices")
	// ...nor with a wildcard that reaches into it.
	id = bobby.nextID()
	bobby.sendStrings("", "VIP1", "", id, "pubsub", "subscribe", "#")
	code, _ = errnoOf(t, bobby.expect(byMsgID(id)))
	assert.Equal(t, rpc.CodeUnauthorized, code)
	// ...nor publish into it.
	id = bobby.nextID()
	bobby.sendStrings("", "VIP1", "", id, "pubsub", "publish", "devices/boiler/temp", "\x01")
	code, text = errnoOf(t, bobby.expect(byMsgID(id)))
	assert.Equal(t, rpc.CodeUnauthorized, code)
	assert.Contains(t, text, "can_publish_devices")
	// Outside protected trees Bobby may do both; a per-segment rule does
	// not protect "devicesX".
	id = bobby.nextID()
	bobby.sendStrings("", "VIP1", "", id, "pubsub", "subscribe", "devicesX/#")
	assert.Equal(t, "ok", string(bobby.expect(byMsgID(id))[vip.FrameArgs]))

	// Alice may subscribe and publish; she gets her message once.
	id = alice.nextID()
	alice.sendStrings("", "VIP1", "", id, "pubsub", "subscribe", "devices/+/temp")
	assert.Equal(t, "ok", string(alice.expect(byMsgID(id))[vip.FrameArgs]))
	id = alice.nextID()
	alice.sendStrings("", "VIP1", "", id, "pubsub", "subscribe", "devices/#")
	assert.Equal(t, "ok", string(alice.expect(byMsgID(id))[vip.FrameArgs]))
	alice.sendStrings("", "VIP1", "", "", "pubsub", "publish", "devices/boiler/temp", "\x07")
	msg := alice.expect(func(f [][]byte) bool {
		return string(f[vip.FrameSubsystem]) == "pubsub" && string(f[vip.FrameArgs]) == "message"
	})
	assert.Equal(t, "alice", string(msg[0]))
	assert.Equal(t, "alice", string(msg[vip.FrameUser]))
	assert.Equal(t, "devices/boiler/temp", string(msg[6]))
	assert.Equal(t, "\x07", string(msg[7]))
	// Bobby's publish to devicesX reaches Bobby's subscription.
	bobby.sendStrings("", "VIP1", "", "", "pubsub", "publish", "devicesX/a", "\x02")
	msg = bobby.expect(func(f [][]byte) bool {
		return string(f[vip.FrameSubsystem]) == "pubsub" && string(f[vip.FrameArgs]) == "message"
	})
	assert.Equal(t, "devicesX/a", string(msg[6]))

	audit := tp.audit.String()
	assert.Contains(t, audit, `"action":"subscribe","decision":"deny","user_id":"bobby"`)
	assert.Contains(t, audit, `"action":"publish","decision":"deny","user_id":"bobby"`)
}

func TestPlatform_ParameterRestrictionDecodesOnlyRestrictedCalls(t *testing.T) {
	tp := startPlatform(t)
	require.NoError(t, atomicfile.Write(tp.authFile, tp.cast.policyWith(policyVars{WithBobby: true, BobbyCaps: "[]",
		GWCaps: `{"can_read_temp": null, "can_configure": {"units": "/C|K/"}}`}), 0o600))
	w := tp.startWeather(t)
	gw := tp.dial(t, tp.cast.gw)
	gw.mustHello("gateway")
	require.Eventually(t, func() bool {
		reply := gw.call("weather", "set_units", "C")
		return string(reply[vip.FrameSubsystem]) == "RPC"
	}, 3*time.Second, 20*time.Millisecond)
	reply := gw.call("weather", "set_units", rpc.Kwargs{"units": "K"})
	assert.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)

	code, text := errnoOf(t, gw.call("weather", "set_units", "F"))
	assert.Equal(t, rpc.CodeUnauthorized, code)
	assert.Contains(t, text, "set_units")

	id := gw.nextID()
	gw.sendStrings("weather", "VIP1", "", id, "RPC", "call", "set_units", "\xc1")
	code, _ = errnoOf(t, gw.expect(byMsgID(id)))
	assert.Equal(t, rpc.CodeInvalidArgs, code)
	assert.EqualValues(t, 2, w.calls.Load())
}
