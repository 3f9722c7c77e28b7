package platform

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// benchPlatform is a platform with n welcomed in-memory peers (no network):
// it measures the platform's own hot path, route + authorize + stamp +
// enqueue, without CURVE and TCP.
func benchPlatform(b *testing.B, n int) (p *Platform, caller, callee *peer) {
	b.Helper()
	c := newCast(b)
	pol, err := auth.Parse("auth.json", c.policy(true, `[]`))
	require.NoError(b, err)
	p, err = New(WithPolicy(pol), WithKeyPair(c.server))
	require.NoError(b, err)
	p.audit = &auditor{} // Run opens it
	mk := func(kp keys.Pair, user, identity string, exports ...rpc.Export) *peer {
		pe := &peer{p: p, key: kp.Public, userID: user, userBytes: []byte(user),
			wake: make(chan struct{}, 1), done: make(chan struct{}), flushed: make(chan struct{})}
		table := exportTable{}
		for _, e := range exports {
			table[e.Name] = p.newExport(identity, e)
		}
		pe.exports.Store(&table)
		pe.identity, pe.identityBytes = identity, []byte(identity)
		pe.welcomed.Store(true)
		pe.user = p.userOf(user)
		p.byIdentity[identity] = pe
		p.conns[pe] = struct{}{}
		return pe
	}
	callee = mk(c.weather, "weather", "weather", weatherExports...)
	caller = mk(c.alice, "alice", "alice")
	for i := 0; len(p.byIdentity) < n; i++ {
		mk(c.bobby, "bobby", fmt.Sprintf("bobby.%d", i), weatherExports...)
	}
	return p, caller, callee
}

// BenchmarkRouter_AuthorizeAndRouteCall is one allowed call through the
// platform: parse frames, look up the callee, check the export, decide,
// stamp, track, enqueue, and its reply: match the call, stamp, enqueue.
// Allocations per call are the platform's own.
func BenchmarkRouter_AuthorizeAndRouteCall(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			p, caller, callee := benchPlatform(b, n)
			payload, _ := codec.EncodeCall([]any{map[string]any{"units": "C"}}, nil)
			frames := [][]byte{nil, []byte("VIP1"), nil, []byte("m1"), []byte("RPC"), []byte("call"), []byte("temperature"), payload}
			reply := [][]byte{nil, []byte("VIP1"), nil, []byte("m1"), []byte("RPC"), []byte("result"), []byte("temperature"), payload}
			recipient, back := []byte("weather"), caller.identityBytes
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				frames[0], frames[2] = recipient, vip.Empty
				p.handle(caller, frames)
				take(b, callee)
				reply[0], reply[2] = back, vip.Empty
				p.handle(callee, reply)
				take(b, caller)
			}
		})
	}
}

// take removes the first message queued towards pe.
func take(b *testing.B, pe *peer) outMsg {
	pe.qmu.Lock()
	defer pe.qmu.Unlock()
	if len(pe.queue) == 0 {
		b.Fatal("nothing queued")
	}
	m := pe.queue[0]
	pe.queue = append(pe.queue[:0], pe.queue[1:]...)
	pe.qbytes -= m.size
	return m
}

// BenchmarkRouter_DenyCall is one call refused by the policy (errno 13,
// audit record to nowhere).
func BenchmarkRouter_DenyCall(b *testing.B) {
	p, _, _ := benchPlatform(b, 10)
	p.audit = &auditor{}
	var bobby *peer
	for id, pe := range p.byIdentity {
		if id != "weather" && id != "alice" {
			bobby = pe
			break
		}
	}
	frames := [][]byte{nil, []byte("VIP1"), nil, []byte("m1"), []byte("RPC"), []byte("call"), []byte("temperature")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		frames[0] = []byte("weather")
		p.handle(bobby, frames)
		take(b, bobby)
	}
}

// startBenchPair connects a weather agent answering every call with 21.5
// and a welcomed Alice.
func startBenchPair(b *testing.B) *client {
	tp := startPlatform(b)
	w := tp.dial(b, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	res, _ := msgpack.Marshal(21.5)
	go func() {
		for f := range w.in {
			if len(f) > fMethod && string(f[vip.FrameArgs]) == "call" {
				w.wmu.Lock()
				_ = w.conn.WriteMsg([][]byte{f[0], vip.SignatureFrame, vip.Empty, f[vip.FrameMsgID], []byte("RPC"), []byte("result"), f[fMethod], res})
				w.wmu.Unlock()
			}
		}
	}()
	alice := tp.dial(b, tp.cast.alice)
	alice.mustHello("alice")
	return alice
}

// BenchmarkPlatform_CallPipelined64 keeps 64 calls in flight over real
// CURVE and TCP (throughput shape of the cross-stack comparison).
func BenchmarkPlatform_CallPipelined64(b *testing.B) {
	alice := startBenchPair(b)
	payload := make([]byte, 200)
	frames := [][]byte{[]byte("weather"), vip.SignatureFrame, vip.Empty, []byte("m"), []byte("RPC"), []byte("call"), []byte("temperature"), payload}
	b.ReportAllocs()
	b.ResetTimer()
	// Each call its own msg-id: the platform refuses a msg-id that already
	// awaits a reply from the same callee.
	send := func(n int) {
		frames[vip.FrameMsgID] = strconv.AppendInt(make([]byte, 0, 8), int64(n), 10)
		if err := alice.conn.WriteMsg(frames); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := processCPU(b)
	sent, got := 0, 0
	for ; sent < 64 && sent < b.N; sent++ {
		send(sent)
	}
	defer func() { b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op") }()
	for got < b.N {
		f := <-alice.in
		if string(f[vip.FrameSubsystem]) != "RPC" {
			b.Fatalf("not a reply: %q", f)
		}
		got++
		if sent < b.N {
			send(sent)
			sent++
		}
	}
}

// BenchmarkPlatform_CallRoundTrip is a full call over real CURVE and TCP on
// 127.0.0.1: caller -> platform -> callee -> platform -> caller, one call
// outstanding (the 3-process shape of the cross-stack comparison, in one
// process).
func BenchmarkPlatform_CallRoundTrip(b *testing.B) {
	alice := startBenchPair(b)
	payload := make([]byte, 200)
	frames := [][]byte{[]byte("weather"), vip.SignatureFrame, vip.Empty, []byte("m"), []byte("RPC"), []byte("call"), []byte("temperature"), payload}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		require.NoError(b, alice.conn.WriteMsg(frames))
		for f := range alice.in {
			if string(f[vip.FrameSubsystem]) == "RPC" {
				break
			}
		}
	}
}

// processCPU returns the user and system CPU time of this process so far,
// in nanoseconds: a benchmark's CPU per operation moves less than its wall
// time on a machine shared with other work.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
