package curve

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capbus/capbus/keys"
	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/go-zeromq/zmq4/transport"
	"github.com/stretchr/testify/require"
)

// BenchmarkEcho measures request/reply round trips (one message
// outstanding) between a DEALER and an echoing ROUTER over real TCP on
// 127.0.0.1: over this CURVE layer (ReadMsg and WriteMsg) and with zmq4's
// own NULL ROUTER and DEALER sockets (NULL; the comparison asked for), and,
// for reference, with zmq4.Open over plain TCP conns and NULL security
// (NULL-Open: the same zmq4 Conn loop as CURVE, without encryption). It reports msgs/s (messages delivered,
// two per round trip), and rw-calls/msg: the Read and Write calls made on
// the TCP conns of both ends per message, counted by a wrapping net.Conn
// (the CURVE layer's Dial/Listen hook; for zmq4 NULL, a zmq4 transport
// registered under a unique name). Each such call is one read(2)/write(2)
// unless it blocks, when the runtime adds one more for the retry; so the
// figure is a lower bound of the system calls, measured alike on both sides.
func BenchmarkEcho(b *testing.B) {
	vip := zmq4.NewMsgFrom([]byte("weather"), []byte("VIP1"), []byte(""), []byte("42"),
		[]byte("RPC"), make([]byte, 200-7-4-2-3)) // a VIP call, 200 bytes in 6 frames
	cases := []struct {
		name   string
		msg    zmq4.Msg
		window int // messages sent before their replies are read
	}{
		{"200B", zmq4.NewMsg(make([]byte, 200)), 1},
		{"64KiB", zmq4.NewMsg(make([]byte, 64<<10)), 1},
		{"VIP-6frames-200B", vip, 1},
		// 16 requests in flight, as a busy agent has: the CURVE side
		// writes them with one WriteMsgs (what the platform's and the
		// agent's writers do when messages queue up).
		{"200B-window16", zmq4.NewMsg(make([]byte, 200)), 16},
	}
	rates := map[string]float64{}
	for _, tc := range cases {
		name, msg, window := tc.name, tc.msg, tc.window
		b.Run("CURVE/"+name, func(b *testing.B) { rates["CURVE/"+name] = benchCurve(b, msg, window) })
		b.Run("NULL/"+name, func(b *testing.B) { rates["NULL/"+name] = benchNull(b, msg, window) })
		if window == 1 {
			b.Run("NULL-Open/"+name, func(b *testing.B) { benchNullOpen(b, msg) })
		}
		if c, n := rates["CURVE/"+name], rates["NULL/"+name]; c > 0 && n > 0 {
			b.Logf("%s: CURVE %.0f msgs/s, zmq4 NULL %.0f msgs/s, ratio CURVE/NULL %.2f", name, c, n, c/n)
		}
	}
}

// report reports msgs/s and rw-calls/msg and returns msgs/s.
func report(b *testing.B, elapsed time.Duration, reads, writes int64) float64 {
	msgs := float64(2 * b.N)
	rate := msgs / elapsed.Seconds()
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(float64(reads+writes)/msgs, "rw-calls/msg")
	b.ReportMetric(float64(reads)/msgs, "reads/msg")
	b.ReportMetric(float64(writes)/msgs, "writes/msg")
	return rate
}

func benchCurve(b *testing.B, msg zmq4.Msg, window int) float64 {
	var reads, writes atomic.Int64
	serverKP, clientKP := newKeyPair(b), newKeyPair(b)
	l, err := Listen(context.Background(), "tcp://127.0.0.1:0", serverKP,
		WithAuthenticator(allowKeys(map[keys.Key]string{clientKP.Public: "bench"})),
		withCounters(&reads, &writes))
	require.NoError(b, err)
	defer l.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		echo(c, nil)
	}()
	c, err := Dial(context.Background(), l.Addr().String(), clientKP, serverKP.Public, withCounters(&reads, &writes))
	require.NoError(b, err)
	batch := make([][][]byte, window)
	for i := range batch {
		batch[i] = msg.Frames
	}
	// roundTrips runs in the timed loop: no require.NoError there, it calls
	// b.Helper every time.
	roundTrips := func(k int) {
		if err := c.WriteMsgs(batch[:k]); err != nil {
			b.Fatal(err)
		}
		for range k {
			if _, err := c.ReadMsg(); err != nil {
				b.Fatal(err)
			}
		}
	}
	roundTrips(window) // warm up buffers
	reads.Store(0)
	writes.Store(0)
	b.SetBytes(int64(2 * msgSize(msg)))
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n += window {
		roundTrips(min(window, b.N-n))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	rate := report(b, elapsed, reads.Load(), writes.Load())
	c.Close()
	wg.Wait()
	return rate
}

// countedTCP is a zmq4 transport: TCP with counting conns.
type countedTCP struct{ reads, writes *atomic.Int64 }

func (t countedTCP) Dial(ctx context.Context, d transport.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return countingConn{c, t.reads, t.writes}, nil
}

func (t countedTCP) Listen(ctx context.Context, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return countingListener{l, t}, nil
}

func (t countedTCP) Addr(ep string) (string, error) { return ep, nil }

type countingListener struct {
	net.Listener
	t countedTCP
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.t.reads, l.t.writes}, nil
}

var (
	// zmq4 transports are registered for the life of the process, so the
	// counting transport is registered once per test binary.
	countedOnce  sync.Once
	countedTrans = countedTCP{reads: new(atomic.Int64), writes: new(atomic.Int64)}
	countedName  = fmt.Sprintf("capbus-counted-tcp-%d", time.Now().UnixNano())
)

func benchNull(b *testing.B, msg zmq4.Msg, window int) float64 {
	countedOnce.Do(func() {
		require.NoError(b, zmq4.RegisterTransport(countedName, countedTrans))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	router := zmq4.NewRouter(ctx, zmq4.WithID(zmq4.SocketIdentity("router")))
	defer router.Close()
	require.NoError(b, router.Listen(countedName+"://127.0.0.1:0"))
	addr := router.Addr().String()
	dealer := zmq4.NewDealer(ctx, zmq4.WithID(zmq4.SocketIdentity("dealer")))
	defer dealer.Close()
	require.NoError(b, dealer.Dial(countedName+"://"+strings.TrimPrefix(addr, "tcp://")))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := router.Recv()
			if err != nil {
				return
			}
			if err := router.Send(m); err != nil {
				return
			}
		}
	}()
	roundTrips := func(k int) {
		for range k {
			if err := dealer.Send(msg); err != nil {
				b.Fatal(err)
			}
		}
		for range k {
			if _, err := dealer.Recv(); err != nil {
				b.Fatal(err)
			}
		}
	}
	roundTrips(window)
	countedTrans.reads.Store(0)
	countedTrans.writes.Store(0)
	b.SetBytes(int64(2 * msgSize(msg)))
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n += window {
		roundTrips(min(window, b.N-n))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	rate := report(b, elapsed, countedTrans.reads.Load(), countedTrans.writes.Load())
	dealer.Close()
	router.Close()
	<-done
	return rate
}

func msgSize(m zmq4.Msg) (n int) {
	for _, f := range m.Frames {
		n += len(f)
	}
	return n
}

// benchNullOpen runs the CURVE benchmark's loop (zmq4.Open on both ends)
// over plain TCP with NULL security.
func benchNullOpen(b *testing.B, msg zmq4.Msg) float64 {
	var reads, writes atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		defer raw.Close()
		zc, err := zmq4.Open(countingConn{raw, &reads, &writes}, null.Security(), zmq4.Router, nil, true, nil)
		if err != nil {
			return
		}
		for {
			m, err := zc.RecvMsg()
			if err != nil {
				return
			}
			if err := zc.SendMsg(m); err != nil {
				return
			}
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(b, err)
	zc, err := zmq4.Open(countingConn{raw, &reads, &writes}, null.Security(), zmq4.Dealer, nil, false, nil)
	require.NoError(b, err)
	roundTrip := func() {
		if err := zc.SendMsg(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := zc.RecvMsg(); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip()
	reads.Store(0)
	writes.Store(0)
	b.SetBytes(int64(2 * msgSize(msg)))
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		roundTrip()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	rate := report(b, elapsed, reads.Load(), writes.Load())
	raw.Close()
	wg.Wait()
	return rate
}
