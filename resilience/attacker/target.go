package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
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

// ZMTP sizes of the CURVE handshake (RFC 23, RFC 26).
const (
	greetingSize = 64
	flagLong     = 0x02
	flagCommand  = 0x04
)

// target is what the attacks know of the platform, and the admitted keys
// they use.
type target struct {
	hostport string // 127.0.0.1:port
	server   keys.Key
	// hello is the greeting and HELLO command a real client sent, recorded
	// once, for the replay flood and for partial greetings.
	hello   []byte
	mallory keys.Pair   // an admitted key, identities mallory.*
	flood   []keys.Pair // the subscription flood's keys, identities flood1...
}

// tally counts outcomes by name.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[what]++
}

func (t *tally) get(what string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n[what]
}

// String lists the counts by decreasing count: "1,788 busy, 212 refused".
func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.n))
	for k := range t.n {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		if t.n[a] != t.n[b] {
			return t.n[b] - t.n[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = thousands(int64(t.n[k])) + " " + k
	}
	return strings.Join(parts, ", ")
}

// thousands writes n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// runN runs fn(i) for i in [0, n) on conc goroutines, until ctx ends.
func runN(ctx context.Context, n, conc int, fn func(ctx context.Context, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(ctx, i)
			}
		}()
	}
	wg.Wait()
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomInt(n int) int {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int(binary.LittleEndian.Uint64(b[:]) % uint64(n))
}

// dialTCP opens a plain TCP connection to the platform.
func (tg *target) dialTCP(ctx context.Context) (*net.TCPConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", tg.hostport)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// recordHello runs a real client handshake through a recording relay and
// returns the client's greeting and HELLO command as they were on the wire.
func recordHello(ctx context.Context, hostport string, kp keys.Pair, server keys.Key) ([]byte, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	recorded := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		defer func() { recorded <- buf.Bytes() }()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		up, err := net.Dial("tcp", hostport)
		if err != nil {
			return
		}
		defer up.Close()
		go func() { _, _ = io.Copy(c, up) }()
		_, _ = io.Copy(up, io.TeeReader(c, &buf))
	}()
	conn, err := curve.Dial(ctx, "tcp://"+ln.Addr().String(), kp, server)
	if err != nil {
		return nil, err
	}
	conn.Close()
	b := <-recorded
	if len(b) < greetingSize+2 {
		return nil, fmt.Errorf("recorded %d bytes: no HELLO", len(b))
	}
	size, hdr := int(b[greetingSize+1]), 2
	if b[greetingSize]&flagLong != 0 {
		size, hdr = int(binary.BigEndian.Uint64(b[greetingSize+1:])), 9
	}
	end := greetingSize + hdr + size
	if len(b) < end || !bytes.HasPrefix(b[greetingSize+hdr:], []byte("\x05HELLO")) {
		return nil, fmt.Errorf("recorded %d bytes: no HELLO after the greeting", len(b))
	}
	return b[:end:end], nil
}

// dialHello connects kp and says hello as identity. The conn may send
// frames up to 64 MiB: the platform, not the attacker, enforces its limits.
func (tg *target) dialHello(ctx context.Context, kp keys.Pair, identity string) (*curve.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := curve.Dial(ctx, "tcp://"+tg.hostport, kp, tg.server, curve.WithMaxFrameSize(64<<20))
	if err != nil {
		return nil, err
	}
	h, err := msgpack.Marshal(map[string]any{"identity": identity})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if err := conn.WriteMsg([][]byte{{}, vip.SignatureFrame, {}, []byte("h"), []byte(vip.SubHello), h}); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		f, err := conn.ReadMsg()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("hello as %s: %w", identity, err)
		}
		if len(f) > vip.FrameSubsystem && string(f[vip.FrameMsgID]) == "h" {
			if string(f[vip.FrameSubsystem]) != vip.SubWelcome {
				conn.Close()
				return nil, fmt.Errorf("hello as %s refused: %q", identity, f[vip.FrameArgs:])
			}
			_ = conn.SetDeadline(time.Time{})
			return conn, nil
		}
	}
}

// waitClosed reads from conn until the platform closes it (or resets it),
// and reports whether it did before deadline.
func waitClosed(conn net.Conn, deadline time.Time) bool {
	_ = conn.SetReadDeadline(deadline)
	buf := make([]byte, 64<<10)
	for {
		if _, err := conn.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// waitMsgClosed reads messages from conn until the platform closes it, and
// reports whether it did before deadline.
func waitMsgClosed(conn *curve.Conn, deadline time.Time) bool {
	_ = conn.SetDeadline(deadline)
	for {
		if _, err := conn.ReadMsg(); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// conns are the connections an attack opened, closed at its end.
type conns struct {
	mu sync.Mutex
	cs []io.Closer
}

func (c *conns) add(x io.Closer) {
	c.mu.Lock()
	c.cs = append(c.cs, x)
	c.mu.Unlock()
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.cs {
		_ = x.Close()
	}
	c.cs = nil
}

// pause waits d unless ctx ends first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// sizeText writes n bytes in the largest binary unit: "1 MiB", "62.3 MiB".
func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		if n%(1<<20) == 0 {
			return fmt.Sprintf("%d MiB", n>>20)
		}
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
