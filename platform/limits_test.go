package platform

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// dialSilent connects kp and says hello as identity, then never reads
// again: a consumer that never reads.
func (tp *testPlatform) dialSilent(t *testing.T, kp keys.Pair, identity string) *curve.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := curve.Dial(ctx, tp.Addr(), kp, tp.ServerKey())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h, err := msgpack.Marshal(map[string]any{"identity": identity})
	require.NoError(t, err)
	require.NoError(t, conn.WriteMsg([][]byte{{}, vip.SignatureFrame, {}, []byte("h"), []byte(vip.SubHello), h}))
	welcome, err := conn.ReadMsg()
	require.NoError(t, err)
	require.Equal(t, vip.SubWelcome, string(welcome[vip.FrameSubsystem]))
	return conn
}

func (tp *testPlatform) connections() int {
	tp.mu.RLock()
	defer tp.mu.RUnlock()
	return len(tp.conns)
}

// TestLimits_ConsumersThatNeverReadStayWithinTheirUsersBudget is the
// memory attack of issue 13 at a small scale: connections of one admitted
// key that never read send large pings. What the platform queues for them
// never exceeds their user's budget (plus one message), the replies it
// cannot queue are dropped and counted, the connections are closed as slow
// consumers, and another user's calls go on.
func TestLimits_ConsumersThatNeverReadStayWithinTheirUsersBudget(t *testing.T) {
	const ping = 256 << 10
	lim := Limits{MaxPing: ping, QueueBytes: 512 << 10, UserQueueBytes: 1 << 20, TotalQueueBytes: 4 << 20,
		SlowConsumer: 300 * time.Millisecond}
	tp := startPlatform(t, WithLimits(lim))
	tp.startWeather(t)
	gw := tp.dial(t, tp.cast.gw)
	gw.mustHello("gateway")

	silent := []*curve.Conn{tp.dialSilent(t, tp.cast.alice, "alice.1"), tp.dialSilent(t, tp.cast.alice, "alice.2")}
	payload := bytes.Repeat([]byte{'x'}, ping)
	var maxUser, maxAll int64
	sample := func() {
		tp.mu.RLock()
		if u := tp.users["alice"]; u != nil {
			maxUser = max(maxUser, u.queued.Load())
		}
		tp.mu.RUnlock()
		maxAll = max(maxAll, tp.queued.Load())
	}
	deadline := time.Now().Add(testTimeout)
	for i := 0; tp.stats.slowConsumers.Load() < 2 && time.Now().Before(deadline); i++ {
		for _, c := range silent {
			// A write fails once the platform closed the connection.
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_ = c.WriteMsg([][]byte{{}, vip.SignatureFrame, {}, []byte("p"), []byte(vip.SubPing), payload})
		}
		sample()
	}
	require.Equal(t, uint64(2), tp.stats.slowConsumers.Load(), "both silent connections closed as slow consumers")
	assert.LessOrEqual(t, maxUser, lim.UserQueueBytes+ping, "the user's budget, plus the one message a queue takes when empty")
	assert.LessOrEqual(t, maxAll, lim.UserQueueBytes+ping)
	assert.NotZero(t, tp.stats.dropped.Load(), "pongs that found the budget full were dropped and counted")
	require.Eventually(t, func() bool { return tp.queued.Load() == 0 }, testTimeout, time.Millisecond,
		"the closed connections gave their budget back")
	assert.Contains(t, tp.audit.String(), `"reason":"slow consumer: `)

	// Another user was never affected.
	reply := gw.call("weather", "temperature", "paris")
	assert.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)
}

// TestLimits_CallsToAUserOverItsBudgetAreOverloaded: a call for a
// connection whose user has used up its budget is refused with errno 105
// naming the budget.
func TestLimits_CallsToAUserOverItsBudgetAreOverloaded(t *testing.T) {
	lim := Limits{QueueBytes: 1 << 20, UserQueueBytes: 256 << 10, SlowConsumer: time.Minute}
	tp := startPlatform(t, WithLimits(lim))
	// A weather agent that never reads.
	w := tp.dialSilentWeather(t)
	defer w.Close()
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	big := bytes.Repeat([]byte{'x'}, 64<<10)
	for i := 0; i < 200; i++ {
		id := alice.nextID()
		alice.send([]byte("weather"), vip.SignatureFrame, nil, []byte(id), []byte("RPC"), []byte("call"), []byte("temperature"), big)
		select {
		case f := <-alice.in:
			if string(f[vip.FrameSubsystem]) == vip.SubError {
				code, text := errnoOf(t, f)
				require.Equal(t, rpc.CodeOverloaded, code, text)
				assert.Contains(t, text, `"weather" cannot take more now: the memory budget of the recipient's user is exhausted`)
				return
			}
		default:
		}
	}
	f := alice.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == vip.SubError })
	code, text := errnoOf(t, f)
	require.Equal(t, rpc.CodeOverloaded, code, text)
	assert.Contains(t, text, "memory budget of the recipient's user is exhausted")
}

// dialSilentWeather says hello as weather with its exports and never reads.
func (tp *testPlatform) dialSilentWeather(t *testing.T) *curve.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := curve.Dial(ctx, tp.Addr(), tp.cast.weather, tp.ServerKey())
	require.NoError(t, err)
	wire := make([]vip.Export, len(weatherExports))
	for i, e := range weatherExports {
		wire[i] = vip.ExportOf(e)
	}
	h, _ := msgpack.Marshal(map[string]any{"identity": "weather", "exports": wire})
	require.NoError(t, conn.WriteMsg([][]byte{{}, vip.SignatureFrame, {}, []byte("h"), []byte(vip.SubHello), h}))
	welcome, err := conn.ReadMsg()
	require.NoError(t, err)
	require.Equal(t, vip.SubWelcome, string(welcome[vip.FrameSubsystem]))
	return conn
}

// TestLimits_ConnectionBoundsRefuseTheHandshakeForNow: over the bound of
// connections per key, in all, or not welcomed yet, the handshake is
// refused as busy (ERROR "300"), audited, and accepted again once a
// connection is gone.
func TestLimits_ConnectionBoundsRefuseTheHandshakeForNow(t *testing.T) {
	dial := func(tp *testPlatform, kp keys.Pair) (*curve.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		c, err := curve.Dial(ctx, tp.Addr(), kp, tp.ServerKey())
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	t.Run("per key", func(t *testing.T) {
		tp := startPlatform(t, WithLimits(Limits{MaxConnectionsPerKey: 2}))
		a1 := tp.dial(t, tp.cast.alice)
		tp.dial(t, tp.cast.alice)
		_, err := dial(tp, tp.cast.alice)
		require.ErrorIs(t, err, curve.ErrBusy)
		require.ErrorIs(t, err, curve.ErrRefused)
		tp.dial(t, tp.cast.bobby) // another key is not concerned
		assert.Contains(t, tp.audit.String(), `"reason":"connection limit: this key has its maximum of 2 connections"`)
		a1.close()
		require.Eventually(t, func() bool { _, err := dial(tp, tp.cast.alice); return err == nil }, testTimeout, 10*time.Millisecond)
	})
	t.Run("in all", func(t *testing.T) {
		tp := startPlatform(t, WithLimits(Limits{MaxConnections: 2}))
		tp.dial(t, tp.cast.alice)
		tp.dial(t, tp.cast.bobby)
		_, err := dial(tp, tp.cast.weather)
		require.ErrorIs(t, err, curve.ErrBusy)
		assert.Equal(t, uint64(1), tp.stats.refusedConns.Load())
	})
	t.Run("not welcomed yet", func(t *testing.T) {
		tp := startPlatform(t, WithLimits(Limits{MaxPreHello: 1}))
		a := tp.dial(t, tp.cast.alice) // no hello yet
		_, err := dial(tp, tp.cast.bobby)
		require.ErrorIs(t, err, curve.ErrBusy)
		a.mustHello("alice")
		tp.dial(t, tp.cast.bobby).mustHello("bobby")
	})
}

// TestLimits_AConnectionThatNeverSaysHelloIsClosed.
func TestLimits_AConnectionThatNeverSaysHelloIsClosed(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{HelloTimeout: 200 * time.Millisecond}))
	c := tp.dial(t, tp.cast.alice)
	require.True(t, c.waitClosed(testTimeout))
	require.Eventually(t, func() bool { return strings.Contains(tp.audit.String(), `"reason":"no hello within 200ms"`) },
		testTimeout, time.Millisecond)
	// A peer that says hello in time stays.
	a := tp.dial(t, tp.cast.alice)
	a.mustHello("alice")
	assert.False(t, a.waitClosed(400*time.Millisecond))
}

// TestLimits_PingArgumentsAreCappedMoreTightlyBeforeHello.
func TestLimits_PingArgumentsAreCappedMoreTightlyBeforeHello(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{MaxPingBeforeHello: 100, MaxPing: 1000}))
	c := tp.dial(t, tp.cast.alice)
	ping := func(n int) [][]byte {
		id := c.nextID()
		c.send(nil, vip.SignatureFrame, nil, []byte(id), []byte(vip.SubPing), bytes.Repeat([]byte{'p'}, n))
		return c.expect(byMsgID(id))
	}
	assert.Equal(t, vip.SubPong, string(ping(100)[vip.FrameSubsystem]))
	code, text := errnoOf(t, ping(101))
	assert.Equal(t, rpc.CodeProtocol, code)
	assert.Equal(t, "ping arguments of 101 bytes are over the limit of 100 before hello", text)
	c.mustHello("alice")
	assert.Equal(t, vip.SubPong, string(ping(1000)[vip.FrameSubsystem]))
	_, text = errnoOf(t, ping(1001))
	assert.Equal(t, "ping arguments of 1001 bytes are over the limit of 1000", text)
}

// TestLimits_SubscriptionsAreBoundedPerConnectionAndPerUser.
func TestLimits_SubscriptionsAreBoundedPerConnectionAndPerUser(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{MaxSubscriptions: 3, MaxUserSubscriptions: 5}))
	subscribe := func(c *client, topic string) (rpc.Code, string) {
		id := c.nextID()
		c.send(nil, vip.SignatureFrame, nil, []byte(id), []byte(vip.SubPubsub), []byte(vip.OpSubscribe), []byte(topic))
		f := c.expect(byMsgID(id))
		if string(f[vip.FrameSubsystem]) != vip.SubError {
			return 0, ""
		}
		return errnoOf(t, f)
	}
	a1 := tp.dial(t, tp.cast.alice)
	a1.mustHello("alice")
	for _, topic := range []string{"devices/a", "devices/b", "devices/c"} {
		code, text := subscribe(a1, topic)
		require.Zero(t, code, text)
	}
	code, _ := subscribe(a1, "devices/a") // again: not a new subscription
	require.Zero(t, code)
	code, text := subscribe(a1, "devices/d")
	assert.Equal(t, rpc.CodeOverloaded, code)
	assert.Equal(t, "too many subscriptions: this connection has 3 (the limit is 3); unsubscribe from some first", text)

	a2 := tp.dial(t, tp.cast.alice)
	a2.mustHello("alice.2")
	for _, topic := range []string{"devices/e", "devices/f"} {
		code, text := subscribe(a2, topic)
		require.Zero(t, code, text)
	}
	code, text = subscribe(a2, "devices/g")
	assert.Equal(t, rpc.CodeOverloaded, code)
	assert.Equal(t, `too many subscriptions: the connections of user "alice" have 5 (the limit is 5)`, text)

	// Unsubscribing, or a connection leaving, gives its subscriptions back.
	a2.send(nil, vip.SignatureFrame, nil, []byte("u"), []byte(vip.SubPubsub), []byte(vip.OpUnsubscribe), []byte("devices/e"))
	a2.expect(byMsgID("u"))
	code, _ = subscribe(a2, "devices/g")
	require.Zero(t, code)
	a1.close()
	require.Eventually(t, func() bool {
		tp.mu.RLock()
		defer tp.mu.RUnlock()
		return tp.users["alice"] != nil && tp.users["alice"].subs.Load() == 2
	}, testTimeout, time.Millisecond)
	code, _ = subscribe(a2, "devices/h")
	require.Zero(t, code, "the user has 2 now")
	code, text = subscribe(a2, "devices/i")
	assert.Equal(t, rpc.CodeOverloaded, code)
	assert.Contains(t, text, "this connection has 3")
	assert.Equal(t, 3, tp.subs.Len())
}

// TestLimits_ASlowConsumerIsCountedOnce: goroutines that find the same
// queue full past the limit at the same time close it once and count one
// slow consumer, as the audit records one disconnect.
func TestLimits_ASlowConsumerIsCountedOnce(t *testing.T) {
	tp := startPlatform(t, WithLimits(Limits{SlowConsumer: time.Millisecond}))
	tp.dialSilent(t, tp.cast.alice, "alice.1")
	tp.mu.RLock()
	pe := tp.byIdentity["alice.1"]
	tp.mu.RUnlock()
	require.NotNil(t, pe)
	pe.fullSince.Store(time.Now().Add(-time.Hour).UnixNano())
	start := make(chan struct{})
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			<-start
			pe.stillFull()
		}()
	}
	close(start)
	for range 8 {
		<-done
	}
	assert.Equal(t, uint64(1), tp.stats.slowConsumers.Load())
}
