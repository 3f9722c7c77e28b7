package platform

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func TestPlatform_SurvivesHostileInputWhileOthersKeepCalling(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{MaxFrames: 64}))
	w := tp.startWeather(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")

	// Alice keeps calling through everything below.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			reply, err := alice.tryCall("weather", "temperature")
			if err == nil && string(reply[vip.FrameSubsystem]) == "RPC" && string(reply[vip.FrameArgs]) == "result" {
				ok++
			} else {
				failed++
				t.Logf("alice's call failed: %v %q", err, reply)
				return
			}
		}
	}()

	rnd := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}

	// 1. Random frames, wrong signatures, short and empty messages: each is
	// answered with errno 71 until the 16th closes the connection.
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.send(rnd(3), rnd(10), rnd(1))
	code, _ := errnoOf(t, bobby.expect(func(f [][]byte) bool { return len(f) > vip.FrameSubsystem && string(f[vip.FrameSubsystem]) == "error" }))
	assert.Equal(t, rpc.CodeProtocol, code)
	bobby.sendStrings("", "VIP2", "", "x", "ping")
	code, _ = errnoOf(t, bobby.expect(byMsgID("x")))
	assert.Equal(t, rpc.CodeProtocol, code)
	bobby.send([]byte{})
	bobby.send([]byte{}, []byte{}, []byte{}, []byte{}, []byte{})
	for i := 0; i < 20; i++ {
		// The platform closes the connection after the 16th: later sends may fail.
		_ = bobby.trySend(rnd(40), rnd(4), rnd(20), rnd(8), rnd(5), rnd(100))
	}
	assert.True(t, bobby.waitClosed(testTimeout), "16 protocol errors close the connection")

	// 2. Messages before hello, unknown subsystems, malformed hello.
	b2 := tp.dial(t, tp.cast.bobby)
	b2.sendStrings("weather", "VIP1", "", "c1", "RPC", "call", "temperature")
	code, _ = errnoOf(t, b2.expect(byMsgID("c1")))
	assert.Equal(t, rpc.CodePermission, code, "a call before hello")
	b2.sendStrings("", "VIP1", "", "h1", "hello", "\xc1garbage")
	code, _ = errnoOf(t, b2.expect(byMsgID("h1")))
	assert.Equal(t, rpc.CodeInvalidArgs, code)
	assert.True(t, b2.waitClosed(testTimeout))

	// 3. A huge frame count in one message closes that connection.
	b3 := tp.dial(t, tp.cast.bobby)
	b3.mustHello("bobby")
	frames := make([][]byte, 10000)
	for i := range frames {
		frames[i] = []byte{}
	}
	frames[0], frames[1] = []byte("weather"), []byte("VIP1")
	b3.wmu.Lock()
	_ = b3.conn.WriteMsg(frames)
	b3.wmu.Unlock()
	assert.True(t, b3.waitClosed(testTimeout), "a message over the frame limit closes the connection")

	// 4. Malformed RPC from a welcomed peer: errors, not crashes.
	b4 := tp.dial(t, tp.cast.bobby)
	b4.mustHello("bobby")
	b4.sendStrings("weather", "VIP1", "", "r1", "RPC")
	code, _ = errnoOf(t, b4.expect(byMsgID("r1")))
	assert.Equal(t, rpc.CodeProtocol, code)
	b4.sendStrings("weather", "VIP1", "", "r2", "RPC", "call")
	code, _ = errnoOf(t, b4.expect(byMsgID("r2")))
	assert.Equal(t, rpc.CodeProtocol, code)
	b4.sendStrings("nobody", "VIP1", "", "r3", "RPC", "call", "x")
	code, _ = errnoOf(t, b4.expect(byMsgID("r3")))
	assert.Equal(t, rpc.CodeNoRoute, code)
	b4.sendStrings("weather", "VIP1", "", "r4", "RPC", "call", "nosuch")
	code, _ = errnoOf(t, b4.expect(byMsgID("r4")))
	assert.Equal(t, rpc.CodeNotFound, code)
	b4.sendStrings("", "VIP1", "", "r5", "RPC", "export", "\xc1")
	code, _ = errnoOf(t, b4.expect(byMsgID("r5")))
	assert.Equal(t, rpc.CodeInvalidArgs, code)
	b4.sendStrings("", "VIP1", "", "r6", "query", "nosuch")
	code, _ = errnoOf(t, b4.expect(byMsgID("r6")))
	assert.Equal(t, rpc.CodeInvalidArgs, code)
	b4.sendStrings("", "VIP1", "", "r7", "pubsub", "publish", "a/+/b")
	code, _ = errnoOf(t, b4.expect(byMsgID("r7")))
	assert.Equal(t, rpc.CodeInvalidArgs, code)
	h, _ := msgpack.Marshal(map[string]any{"identity": "bobby"})
	b4.sendStrings("", "VIP1", "", "r8", "hello", string(h))
	code, _ = errnoOf(t, b4.expect(byMsgID("r8")))
	assert.Equal(t, rpc.CodeProtocol, code, "a second hello")
	id := b4.nextID()
	b4.sendStrings("", "VIP1", "", id, "ping", "still", "here")
	pong := b4.expect(byMsgID(id))
	assert.Equal(t, []string{"", "VIP1", "", id, "pong", "still", "here"}, framesToStrings(pong))

	close(stop)
	wg.Wait()
	assert.Greater(t, ok, 0)
	assert.Equal(t, 0, failed, "Alice's calls must keep succeeding")
	assert.Greater(t, w.calls.Load(), int64(0))
}

func TestPlatform_OversizedFrameClosesOnlyThatConnection(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{MaxFrameSize: 4096}))
	tp.startWeather(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	bobby.wmu.Lock()
	_ = bobby.conn.WriteMsg([][]byte{[]byte("weather"), []byte("VIP1"), {}, []byte("x"), []byte("RPC"), []byte("call"), []byte("hello"), make([]byte, 8192)})
	bobby.wmu.Unlock()
	require.True(t, bobby.waitClosed(testTimeout))
	reply := alice.call("weather", "temperature")
	assert.Equal(t, "result", string(reply[vip.FrameArgs]))
}
