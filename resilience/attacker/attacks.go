package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
)

// attackRandomBytes opens n connections that send random bytes (from the
// start, or after a valid greeting), then half-close; the platform must
// close each.
func (tg *target) attackRandomBytes(ctx context.Context, n, conc int) (string, []string) {
	var out tally
	runN(ctx, n, conc, func(ctx context.Context, i int) {
		c, err := tg.dialTCP(ctx)
		if err != nil {
			out.add("dial failed")
			return
		}
		defer c.Close()
		var data []byte
		if i%2 == 1 {
			data = append(data, tg.hello[:greetingSize]...)
		}
		data = append(data, randomBytes(1+randomInt(2048))...)
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(data)
		_ = c.CloseWrite()
		if waitClosed(c, time.Now().Add(15*time.Second)) {
			out.add("closed by the platform")
		} else {
			out.add("left open")
		}
	})
	var problems []string
	if k := out.get("left open"); k > 0 {
		problems = append(problems, fmt.Sprintf("%d connections of random bytes still open 15 s after they half-closed", k))
	}
	return fmt.Sprintf("%s connections of random bytes: %s", thousands(int64(n)), out.String()), problems
}

// stallSizes are the counts of the stalled-connections scenario.
type stallSizes struct {
	PartialGreeting int `json:"partial_greeting"` // half a greeting, then nothing
	GreetingOnly    int `json:"greeting_only"`    // a greeting, no HELLO
	HalfClosed      int `json:"half_closed"`      // half a greeting, then a half-close
	NoHello         int `json:"no_hello"`         // a handshake, no hello
	Silent          int `json:"silent"`           // a hello, then silence
}

// attackStalled opens connections that stall at every step: half a
// greeting, a greeting and no HELLO, half a greeting then a half-close, a
// handshake and no hello, a hello and then silence. The platform must
// close all but the last within its handshake and hello timeouts (timeout);
// the silent ones are welcomed peers, closed by the attacker at the end.
func (tg *target) attackStalled(ctx context.Context, sz stallSizes, timeout time.Duration) (string, []string) {
	var open conns
	defer open.closeAll()
	var problems []string
	type stalled struct {
		class string
		since time.Time
		wait  func(deadline time.Time) bool
	}
	var all []stalled
	// Admitted connections first: the partial greetings may fill the
	// platform's handshakes in progress.
	for range sz.NoHello {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := curve.Dial(dctx, "tcp://"+tg.hostport, tg.mallory, tg.server)
		cancel()
		if err != nil {
			problems = append(problems, "handshake for a no-hello connection: "+err.Error())
			break
		}
		open.add(conn)
		all = append(all, stalled{"handshake, no hello", time.Now(), func(d time.Time) bool { return waitMsgClosed(conn, d) }})
	}
	silent := 0
	for i := range sz.Silent {
		conn, err := tg.dialHello(ctx, tg.mallory, fmt.Sprintf("mallory.silent%d", i))
		if err != nil {
			problems = append(problems, "a silent connection: "+err.Error())
			break
		}
		open.add(conn)
		silent++
	}
	raw := func(n int, class string, data []byte, halfClose bool) {
		for range n {
			conn, err := tg.dialTCP(ctx)
			if err != nil {
				problems = append(problems, class+": "+err.Error())
				return
			}
			open.add(conn)
			_, _ = conn.Write(data)
			if halfClose {
				_ = conn.CloseWrite()
			}
			all = append(all, stalled{class, time.Now(), func(d time.Time) bool { return waitClosed(conn, d) }})
		}
	}
	raw(sz.PartialGreeting, "half a greeting", tg.hello[:30], false)
	raw(sz.GreetingOnly, "greeting, no HELLO", tg.hello[:greetingSize], false)
	raw(sz.HalfClosed, "half a greeting, half-closed", tg.hello[:30], true)

	// Each must be closed by the platform within its timeout.
	type closed struct {
		class string
		after time.Duration
		ok    bool
	}
	results := make(chan closed, len(all))
	for _, s := range all {
		go func() {
			ok := s.wait(s.since.Add(timeout + 5*time.Second))
			results <- closed{s.class, time.Since(s.since), ok}
		}()
	}
	type span struct {
		n, atOnce   int
		first, last time.Duration
	}
	byClass := map[string]*span{}
	for range all {
		r := <-results
		if !r.ok {
			problems = append(problems, fmt.Sprintf("%s: still open %v after it stalled", r.class, timeout+5*time.Second))
			continue
		}
		sp := byClass[r.class]
		if sp == nil {
			sp = &span{first: r.after}
			byClass[r.class] = sp
		}
		sp.n++
		sp.first, sp.last = min(sp.first, r.after), max(sp.last, r.after)
		if r.after < time.Second {
			sp.atOnce++
		}
	}
	var parts []string
	for _, class := range []string{"half a greeting", "greeting, no HELLO", "half a greeting, half-closed", "handshake, no hello"} {
		sp := byClass[class]
		if sp == nil {
			continue
		}
		part := fmt.Sprintf("%d %s closed by the platform after %v to %v", sp.n, class,
			sp.first.Round(100*time.Millisecond), sp.last.Round(100*time.Millisecond))
		if sp.atOnce > 0 && sp.atOnce < sp.n {
			part += fmt.Sprintf(" (%d within a second)", sp.atOnce)
		}
		parts = append(parts, part)
	}
	what := strings.Join(parts, "; ")
	if silent > 0 {
		what += fmt.Sprintf("; %d welcomed and silent, closed by the attacker", silent)
	}
	return what, problems
}

// malformedMessages are sent by a welcomed peer: each is answered with an
// error (or dropped: the unsolicited reply), none reaches another peer.
func malformedMessages() [][][]byte {
	s := func(f ...string) [][]byte {
		out := make([][]byte, len(f))
		for i, x := range f {
			out[i] = []byte(x)
		}
		return out
	}
	hello, _ := msgpack.Marshal(map[string]any{"identity": "mallory.again"})
	return [][][]byte{
		{randomBytes(3), randomBytes(10), randomBytes(1)},
		s("", "VIP2", "", "m1", "ping"),
		s(""),
		s("", "", "", "", ""),
		s("", "VIP1", "", strings.Repeat("m", 100), "ping"),
		s("", "VIP1", "", "m2", "nosuch"),
		s("echo", "VIP1", "", "m3", "RPC"),
		s("echo", "VIP1", "", "m4", "RPC", "call"),
		s("nobody", "VIP1", "", "m5", "RPC", "call", "x"),
		s("echo", "VIP1", "", "m6", "RPC", "call", "nosuch"),
		s("echo", "VIP1", "", "m7", "RPC", "call", "echo", "\xc1"),
		s("echo", "VIP1", "", "m8", "RPC", "result", "echo", "\xa1x"),
		s("", "VIP1", "", "m9", "query", "nosuch"),
		s("", "VIP1", "", "m10", "pubsub", "publish", "a/+/b"),
		s("", "VIP1", "", "m11", "pubsub", "subscribe", "a/#/b"),
		s("", "VIP1", "", "m12", "config", "nosuch"),
		{{}, vip.SignatureFrame, {}, []byte("m13"), []byte(vip.SubHello), hello},
		s("", "VIP1", "", "m14", "hello", "\xc1garbage"),
	}
}

// attackMalformed opens n connections of an admitted key; each says hello
// (or, one in four, does not), sends every malformed message, then random
// frames until the platform closes it (the 16th protocol error does).
func (tg *target) attackMalformed(ctx context.Context, n, conc int) (string, []string) {
	var out, errnos tally
	var problems []string
	var pmu sync.Mutex
	runN(ctx, n, conc, func(ctx context.Context, i int) {
		var conn *curve.Conn
		var err error
		if i%4 == 3 {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			conn, err = curve.Dial(dctx, "tcp://"+tg.hostport, tg.mallory, tg.server)
			cancel()
		} else {
			conn, err = tg.dialHello(ctx, tg.mallory, fmt.Sprintf("mallory.m%d", i))
		}
		if err != nil {
			out.add("could not connect")
			pmu.Lock()
			problems = append(problems, "malformed: "+err.Error())
			pmu.Unlock()
			return
		}
		defer conn.Close()
		replies := make(chan struct{})
		go func() {
			defer close(replies)
			for {
				f, err := conn.ReadMsg()
				if err != nil {
					return
				}
				if len(f) > vip.FrameArgs && string(f[vip.FrameSubsystem]) == vip.SubError {
					errnos.add("errno " + string(f[vip.FrameArgs]))
				}
			}
		}()
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for _, m := range malformedMessages() {
			if conn.WriteMsg(m) != nil {
				break
			}
		}
		for range 20 {
			if conn.WriteMsg([][]byte{randomBytes(40), randomBytes(4), randomBytes(20), randomBytes(8), randomBytes(5)}) != nil {
				break
			}
		}
		select {
		case <-replies:
			out.add("closed by the platform")
		case <-time.After(10 * time.Second):
			out.add("left open")
			pmu.Lock()
			problems = append(problems, "a connection of malformed messages was still open 10 s later")
			pmu.Unlock()
		}
	})
	return fmt.Sprintf("%s connections: %s; answers: %s", thousands(int64(n)), out.String(), errnos.String()), problems
}

// oversizeSizes are the counts of the oversized-frames scenario.
type oversizeSizes struct {
	BigFrame   int `json:"big_frame"`   // a 17 MiB frame
	ManyFrames int `json:"many_frames"` // a message of 65 frames
	BigMessage int `json:"big_message"` // a message of five 4 MiB frames
	Declared   int `json:"declared"`    // a command declaring 2^62 bytes, before the handshake
}

// attackOversized sends frames and messages beyond the platform's bounds
// (16 MiB a frame or message, 64 frames): a real 17 MiB frame, a message of
// 65 frames, a message of five 4 MiB frames, and, before any handshake, a
// command frame declaring 2^62 bytes. The platform must close each.
func (tg *target) attackOversized(ctx context.Context, sz oversizeSizes) (string, []string) {
	var out tally
	var problems []string
	send := func(class string, n int, msg [][]byte) {
		for i := range n {
			conn, err := tg.dialHello(ctx, tg.mallory, fmt.Sprintf("mallory.o%d", i))
			if err != nil {
				problems = append(problems, class+": "+err.Error())
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_ = conn.WriteMsg(msg)
			if waitMsgClosed(conn, time.Now().Add(10*time.Second)) {
				out.add(class)
			} else {
				problems = append(problems, class+": still open 10 s later")
			}
			conn.Close()
		}
	}
	send("17 MiB frame", sz.BigFrame, [][]byte{[]byte("echo"), vip.SignatureFrame, {}, []byte("x"), []byte("RPC"), []byte("call"), []byte("echo"), make([]byte, 17<<20)})
	many := make([][]byte, 65)
	for i := range many {
		many[i] = []byte{}
	}
	many[0], many[1] = []byte("echo"), vip.SignatureFrame
	send("65 frames", sz.ManyFrames, many)
	big := [][]byte{[]byte("echo"), vip.SignatureFrame, {}, []byte("x"), []byte("RPC"), []byte("call"), []byte("echo")}
	for range 5 {
		big = append(big, make([]byte, 4<<20))
	}
	send("five 4 MiB frames", sz.BigMessage, big)

	huge := append(slices.Clone(tg.hello[:greetingSize]), flagCommand|flagLong, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint64(huge[greetingSize+1:], 1<<62)
	runN(ctx, sz.Declared, 8, func(ctx context.Context, i int) {
		conn, err := tg.dialTCP(ctx)
		if err != nil {
			out.add("dial failed")
			return
		}
		defer conn.Close()
		_, _ = conn.Write(huge)
		if waitClosed(conn, time.Now().Add(15*time.Second)) {
			out.add("2^62-byte command declared")
		} else {
			out.add("left open")
		}
	})
	if k := out.get("left open"); k > 0 {
		problems = append(problems, fmt.Sprintf("%d connections that declared a 2^62-byte command still open after 15 s", k))
	}
	return "closed by the platform: " + out.String(), problems
}

// attackUnknownKeys makes n CURVE handshakes with keys auth.json does not
// know (made before the flood), conc at a time.
func (tg *target) attackUnknownKeys(ctx context.Context, ks []keys.Pair, conc int) (string, []string) {
	var out tally
	runN(ctx, len(ks), conc, func(ctx context.Context, i int) {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := curve.Dial(dctx, "tcp://"+tg.hostport, ks[i], tg.server)
		switch {
		case err == nil:
			conn.Close()
			out.add("admitted")
		case errors.Is(err, curve.ErrBusy):
			out.add(`busy (ERROR "300")`)
		case errors.Is(err, curve.ErrRefused):
			out.add(`refused (ERROR "400")`)
		default:
			out.add("closed")
		}
	})
	var problems []string
	if k := out.get("admitted"); k > 0 {
		problems = append(problems, fmt.Sprintf("%d unknown keys admitted", k))
	}
	return fmt.Sprintf("%s handshakes: %s", thousands(int64(len(ks))), out.String()), problems
}

// attackReplay sends the recorded greeting and HELLO again on n new TCP
// connections, conc at a time, and reads what the platform answers: it must
// never be a WELCOME (which would have cost the platform a key agreement).
func (tg *target) attackReplay(ctx context.Context, n, conc int) (string, []string) {
	var out tally
	runN(ctx, n, conc, func(ctx context.Context, i int) {
		conn, err := tg.dialTCP(ctx)
		if err != nil {
			out.add("dial failed")
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(tg.hello); err != nil {
			out.add("closed before the HELLO was written")
			return
		}
		got, _ := io.ReadAll(conn)
		switch {
		case len(got) <= greetingSize:
			out.add("closed after the greeting")
		case bytes.Contains(got[greetingSize:], []byte("\x07WELCOME")):
			out.add("WELCOME")
		case bytes.Contains(got[greetingSize:], []byte("\x05ERROR\x03300")):
			out.add(`busy (ERROR "300")`)
		default:
			out.add("other answer")
		}
	})
	var problems []string
	if k := out.get("WELCOME"); k > 0 {
		problems = append(problems, fmt.Sprintf("%d replayed HELLOs were answered WELCOME (a key agreement each)", k))
	}
	return fmt.Sprintf("%s replayed HELLOs: %s", thousands(int64(n)), out.String()), problems
}

// floodPattern is the j-th subscription of flooder conn: exact topics,
// "+" at every depth and "#" trees, none matching the legitimate topic.
func floodPattern(conn, j int) string {
	switch j % 4 {
	case 0:
		return fmt.Sprintf("flood/%d/%d/+", conn, j)
	case 1:
		return fmt.Sprintf("+/%d/x", j)
	case 2:
		return fmt.Sprintf("legit/%d/%d", conn, j)
	}
	return fmt.Sprintf("devices/%d/#", j)
}

// attackSubscriptions connects one peer per flood key, each subscribing
// subs patterns (pipelined), holds them for hold while legitimate traffic
// publishes, then disconnects.
func (tg *target) attackSubscriptions(ctx context.Context, subs int, hold time.Duration) (string, []string) {
	var open conns
	defer open.closeAll()
	var out tally
	var mu sync.Mutex
	var problems []string
	problem := func(p string) {
		mu.Lock()
		problems = append(problems, p)
		mu.Unlock()
	}
	var readers, answered sync.WaitGroup // readers: each connection's reader and writer
	for ci, kp := range tg.flood {
		conn, err := tg.dialHello(ctx, kp, fmt.Sprintf("flood%d", ci+1))
		if err != nil {
			problem("subscription flood: " + err.Error())
			continue
		}
		open.add(conn)
		readers.Add(2)
		answered.Add(1)
		go func() { // counts the answers, then reads whatever comes until the connection closes
			defer readers.Done()
			n := 0
			for {
				f, err := conn.ReadMsg()
				if err != nil {
					if n < subs {
						answered.Done()
					}
					return
				}
				if len(f) <= vip.FrameArgs || !strings.HasPrefix(string(f[vip.FrameMsgID]), "s") {
					continue
				}
				switch {
				case string(f[vip.FrameSubsystem]) == vip.SubPubsub && string(f[vip.FrameArgs]) == "ok":
					out.add("accepted")
				case string(f[vip.FrameSubsystem]) == vip.SubError:
					out.add("refused, errno " + string(f[vip.FrameArgs]))
				default:
					out.add("other answer")
				}
				if n++; n == subs {
					answered.Done()
				}
			}
		}()
		go func() {
			defer readers.Done()
			_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			for j := range subs {
				m := [][]byte{{}, vip.SignatureFrame, {}, []byte("s" + strconv.Itoa(j)), []byte(vip.SubPubsub), []byte("subscribe"), []byte(floodPattern(ci, j))}
				if err := conn.WriteMsg(m); err != nil {
					problem("subscribe: " + err.Error())
					return
				}
			}
		}()
	}
	all := make(chan struct{})
	go func() { answered.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		problem("the subscriptions were not all answered within 60 s")
	}
	held := time.Now()
	pause(ctx, hold)
	open.closeAll()
	readers.Wait()
	if n := out.get("accepted"); n != subs*len(tg.flood) {
		problem(fmt.Sprintf("%d subscriptions accepted of %d (one user each, within the per-connection bound)", n, subs*len(tg.flood)))
	}
	return fmt.Sprintf("%d connections x %s subscriptions, held %v: %s", len(tg.flood), thousands(int64(subs)),
		time.Since(held).Round(100*time.Millisecond), out.String()), problems
}

// attackNonReading connects n peers of one admitted key that never read,
// each sending pings of size bytes (the platform answers each with a pong
// of the same size, queued towards a peer that does not read). It holds
// the connections, unread, for hold after the last ping, then reads what is
// left: a connection the platform closed (as a slow consumer) ends after
// its buffered pongs; one it did not is still open when the reads time out.
func (tg *target) attackNonReading(ctx context.Context, n, pings, size int, hold time.Duration) (string, []string) {
	var open conns
	defer open.closeAll()
	var problems []string
	var sent atomic.Int64
	payload := bytes.Repeat([]byte{'p'}, size)
	var cs []*curve.Conn
	for i := range n {
		conn, err := tg.dialHello(ctx, tg.mallory, fmt.Sprintf("mallory.nr%d", i))
		if err != nil {
			problems = append(problems, "non-reading consumer: "+err.Error())
			continue
		}
		open.add(conn)
		cs = append(cs, conn)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, conn := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range pings {
				_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				id := []byte(fmt.Sprintf("p%d.%d", i, j))
				if conn.WriteMsg([][]byte{{}, vip.SignatureFrame, {}, id, []byte(vip.SubPing), payload}) != nil {
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	wrote := time.Since(start)
	pause(ctx, hold)
	var closed atomic.Int64
	for _, conn := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if waitMsgClosed(conn, time.Now().Add(10*time.Second)) {
				closed.Add(1)
			}
		}()
	}
	wg.Wait()
	if int(closed.Load()) != len(cs) {
		problems = append(problems, fmt.Sprintf("only %d of %d non-reading consumers were closed by the platform within %v", closed.Load(), len(cs), hold))
	}
	return fmt.Sprintf("%d connections sent %s pings of %s in %v and read nothing for %v; %d were closed by the platform",
		len(cs), thousands(sent.Load()), sizeText(int64(size)), wrote.Round(100*time.Millisecond), hold, closed.Load()), problems
}

// pingRefused sends one ping of size bytes after hello and returns the
// platform's answer: "pong", or "errno N".
func (tg *target) pingRefused(ctx context.Context, kp keys.Pair, size int) (string, error) {
	conn, err := tg.dialHello(ctx, kp, "mallory.ping")
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteMsg([][]byte{{}, vip.SignatureFrame, {}, []byte("big"), []byte(vip.SubPing), make([]byte, size)}); err != nil {
		return "", err
	}
	for {
		f, err := conn.ReadMsg()
		if err != nil {
			return "", err
		}
		if len(f) > vip.FrameArgs && string(f[vip.FrameMsgID]) == "big" {
			if string(f[vip.FrameSubsystem]) == vip.SubError {
				return "errno " + string(f[vip.FrameArgs]), nil
			}
			return string(f[vip.FrameSubsystem]), nil
		}
	}
}
