package platform

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

const testTimeout = 10 * time.Second

// keys of the test cast.
type cast struct {
	server, weather, alice, bobby, mallory, fl, gw, free1, free2 keys.Pair
}

func newCast(t testing.TB) cast {
	t.Helper()
	gen := func() keys.Pair {
		kp, err := keys.Generate()
		require.NoError(t, err)
		return kp
	}
	return cast{server: gen(), weather: gen(), alice: gen(), bobby: gen(), mallory: gen(), fl: gen(), gw: gen(), free1: gen(), free2: gen()}
}

// authTemplate is the test policy. BobbyCaps is Bobby's capability list.
const authTemplate = `{
  // capbus test policy
  "allow": [
    {"credentials": "{{.Weather}}", "user_id": "weather", "identity": "weather"},
    {"credentials": "{{.Alice}}", "user_id": "alice", "identities": ["alice", "/alice\\..*/"],
     "capabilities": ["can_read_temp", "can_read_devices", "can_publish_devices"]},
    {{if .WithBobby}}{"credentials": "{{.Bobby}}", "user_id": "bobby", "identities": ["bobby", "/bobby\\..*/"], "capabilities": {{.BobbyCaps}}},{{end}}
    {"credentials": "{{.FL}}", "user_id": "flare", "identities": ["/FL-Demo-Job[0-9]+/"]},
    {"credentials": "{{.GW}}", "user_id": "gateway", "identity": "gateway", "capabilities": {{if .GWCaps}}{{.GWCaps}}{{else}}["can_read_temp"]{{end}}},
    {"credentials": "{{.Free1}}", "user_id": "free1"},
    {"credentials": "{{.Free2}}", "user_id": "free2"{{if .Free2Identity}}, "identity": "{{.Free2Identity}}"{{end}}}
  ],
  "topics": {
    "devices/#": {"publish": ["can_publish_devices"], "subscribe": ["can_read_devices"]}
  }
}
`

type policyVars struct {
	Weather, Alice, Bobby, FL, GW, Free1, Free2 string
	WithBobby                                   bool
	BobbyCaps                                   string
	Free2Identity                               string
	GWCaps                                      string
}

func (c cast) policy(withBobby bool, bobbyCaps string) []byte {
	return c.policyWith(policyVars{WithBobby: withBobby, BobbyCaps: bobbyCaps})
}

// policyWith renders the test policy; the key fields of v are filled in.
func (c cast) policyWith(v policyVars) []byte {
	var b bytes.Buffer
	v.Weather, v.Alice, v.Bobby = c.weather.Public.Base64URL(), z85Cred(c.alice.Public), c.bobby.Public.Base64URL()
	v.FL, v.GW, v.Free1, v.Free2 = c.fl.Public.Base64URL(), z85Cred(c.gw.Public), z85Cred(c.free1.Public), z85Cred(c.free2.Public)
	err := template.Must(template.New("auth").Parse(authTemplate)).Execute(&b, v)
	if err != nil {
		panic(err)
	}
	return b.Bytes()
}

// z85Cred writes k in Z85 for auth.json, except a key whose Z85 form starts
// and ends with "/" (1 in 7,225): auth.json reads that as a /regex/, so it
// is written in base64url instead.
func z85Cred(k keys.Key) string {
	if z := k.Z85(); !(strings.HasPrefix(z, "/") && strings.HasSuffix(z, "/")) {
		return z
	}
	return k.Base64URL()
}

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testPlatform is a running platform.
type testPlatform struct {
	*Platform
	cast     cast
	authFile string
	audit    *syncBuffer
}

// startPlatform runs a platform on 127.0.0.1 with the test policy in a
// temporary auth.json. Cleanup cancels it and waits for Run to return.
func startPlatform(t testing.TB, opts ...Option) *testPlatform {
	t.Helper()
	c := newCast(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "auth.json")
	require.NoError(t, os.WriteFile(file, c.policy(true, `[]`), 0o600))
	audit := &syncBuffer{}
	all := append([]Option{
		WithAddress("tcp://127.0.0.1:0"),
		WithKeyPair(c.server),
		WithAuthFile(file),
		WithAuditWriter(audit),
		WithLimits(Limits{HandshakeTimeout: 5 * time.Second}),
		WithShutdownTimeout(time.Second),
	}, opts...)
	p, err := New(all...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case <-time.After(testTimeout):
		t.Fatal("platform not ready")
	}
	require.NotEmpty(t, p.Addr(), "platform failed to listen")
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(testTimeout):
			var stacks strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			t.Errorf("Run did not return; goroutines:\n%s", stacks.String())
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("audit log of the failed test:\n%s", audit.String())
		}
	})
	return &testPlatform{Platform: p, cast: c, authFile: file, audit: audit}
}

// writePolicy replaces auth.json atomically.
func (tp *testPlatform) writePolicy(t testing.TB, withBobby bool, bobbyCaps string) {
	t.Helper()
	require.NoError(t, atomicfile.Write(tp.authFile, tp.cast.policy(withBobby, bobbyCaps), 0o600))
}

// client is a minimal frame-level VIP client over curve.Dial.
type client struct {
	t     testing.TB
	conn  *curve.Conn
	in    chan [][]byte
	done  chan struct{}
	seq   atomic.Int64
	wmu   sync.Mutex
	err   atomic.Pointer[error]
	calls atomic.Int64 // handler runs, when serving
}

// dial connects kp to the platform; it fails the test on error.
func (tp *testPlatform) dial(t testing.TB, kp keys.Pair) *client {
	t.Helper()
	c, err := tp.tryDial(t, kp)
	if err != nil && tp.audit != nil {
		t.Logf("audit log:\n%s", tp.audit.String())
	}
	require.NoError(t, err)
	return c
}

func (tp *testPlatform) tryDial(t testing.TB, kp keys.Pair) (*client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := curve.Dial(ctx, tp.Addr(), kp, tp.ServerKey())
	if err != nil {
		return nil, err
	}
	c := &client{t: t, conn: conn, in: make(chan [][]byte, 4096), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(c.close)
	return c, nil
}

func (c *client) readLoop() {
	defer close(c.done)
	defer close(c.in)
	for {
		frames, err := c.conn.ReadMsg()
		if err != nil {
			c.err.Store(&err)
			return
		}
		c.in <- frames
	}
}

func (c *client) close() {
	c.conn.Close()
	<-c.done
}

func (c *client) send(frames ...[]byte) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	require.NoError(c.t, c.conn.WriteMsg(frames), "the connection ended: %v", c.lastErr())
}

func (c *client) sendStrings(frames ...string) {
	c.t.Helper()
	bs := make([][]byte, len(frames))
	for i, f := range frames {
		bs[i] = []byte(f)
	}
	c.send(bs...)
}

func (c *client) nextID() string { return fmt.Sprintf("m%d", c.seq.Add(1)) }

// expect returns the next message for which match is true, skipping others
// (peerlist broadcasts and the like).
func (c *client) expect(match func([][]byte) bool) [][]byte {
	c.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-c.in:
			require.True(c.t, ok, "connection closed while waiting: %v", c.lastErr())
			if match(f) {
				return f
			}
		case <-timer.C:
			c.t.Fatal("timed out waiting for a message")
		}
	}
}

func (c *client) lastErr() error {
	if e := c.err.Load(); e != nil {
		return *e
	}
	return nil
}

// byMsgID matches messages carrying msg-id id.
func byMsgID(id string) func([][]byte) bool {
	return func(f [][]byte) bool { return len(f) > vip.FrameMsgID && string(f[vip.FrameMsgID]) == id }
}

// waitClosed waits until the platform closed the connection.
func (c *client) waitClosed(within time.Duration) bool {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// hello claims identity with exports; it returns the reply (welcome or
// error).
func (c *client) hello(identity string, exports ...rpc.Export) [][]byte {
	c.t.Helper()
	return c.helloMeta(identity, map[string]string{"version": "test"}, exports...)
}

// helloMeta is hello with the given meta.
func (c *client) helloMeta(identity string, meta map[string]string, exports ...rpc.Export) [][]byte {
	c.t.Helper()
	wire := make([]vip.Export, len(exports))
	for i, e := range exports {
		wire[i] = vip.ExportOf(e)
	}
	h, err := msgpack.Marshal(map[string]any{"identity": identity, "exports": wire, "meta": meta})
	require.NoError(c.t, err)
	id := c.nextID()
	c.send([]byte(""), []byte("VIP1"), []byte(""), []byte(id), []byte("hello"), h)
	return c.expect(byMsgID(id))
}

// mustHello claims identity and requires a welcome.
func (c *client) mustHello(identity string, exports ...rpc.Export) {
	c.t.Helper()
	reply := c.hello(identity, exports...)
	require.Equal(c.t, "welcome", string(reply[vip.FrameSubsystem]), "hello refused: %q", reply)
}

// call sends a call and returns the reply (RPC result/error or platform
// error).
func (c *client) call(peer, method string, args ...any) [][]byte {
	c.t.Helper()
	var kw map[string]any
	if n := len(args); n > 0 {
		if k, ok := args[n-1].(rpc.Kwargs); ok {
			kw, args = k, args[:n-1]
		}
	}
	payload, err := codec.EncodeCall(args, kw)
	require.NoError(c.t, err)
	id := c.nextID()
	c.send([]byte(peer), []byte("VIP1"), []byte(""), []byte(id), []byte("RPC"), []byte("call"), []byte(method), payload)
	return c.expect(byMsgID(id))
}

// trySend sends without failing the test (for peers the platform may close).
func (c *client) trySend(frames ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.conn.WriteMsg(frames)
}

// tryCall is call for goroutines other than the test's: it reports failures
// instead of failing the test. Replies to other msg-ids are skipped.
func (c *client) tryCall(peer, method string) ([][]byte, error) {
	payload, _ := codec.EncodeCall(nil, nil)
	id := c.nextID()
	if err := c.trySend([]byte(peer), []byte("VIP1"), nil, []byte(id), []byte("RPC"), []byte("call"), []byte(method), payload); err != nil {
		return nil, err
	}
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-c.in:
			if !ok {
				return nil, fmt.Errorf("connection closed: %v", c.lastErr())
			}
			if len(f) > vip.FrameMsgID && string(f[vip.FrameMsgID]) == id {
				return f, nil
			}
		case <-timer.C:
			return nil, fmt.Errorf("timeout waiting for %s", id)
		}
	}
}

// serve answers every call with handler's result on a goroutine until the
// connection closes. Other messages are dropped.
func (c *client) serve(handler func(method string, caller, user string, payload []byte) any) {
	go func() {
		for f := range c.in {
			if len(f) < 7 || string(f[vip.FrameSubsystem]) != "RPC" || string(f[vip.FrameArgs]) != "call" {
				continue
			}
			c.calls.Add(1)
			var payload []byte
			if len(f) > 7 {
				payload = f[7]
			}
			res, _ := msgpack.Marshal(handler(string(f[fMethod]), string(f[0]), string(f[vip.FrameUser]), payload))
			c.wmu.Lock()
			_ = c.conn.WriteMsg([][]byte{f[0], []byte("VIP1"), []byte(""), f[vip.FrameMsgID], []byte("RPC"), []byte("result"), f[fMethod], res})
			c.wmu.Unlock()
		}
	}()
}

// errnoOf returns the errno and text of a platform error reply.
func errnoOf(t testing.TB, f [][]byte) (rpc.Code, string) {
	t.Helper()
	require.GreaterOrEqual(t, len(f), 7, "not an error reply: %q", f)
	require.Equal(t, "error", string(f[vip.FrameSubsystem]), "not an error reply: %q", f)
	n, err := strconv.Atoi(string(f[5]))
	require.NoError(t, err, "errno frame %q", f[5])
	return rpc.Code(n), string(f[6])
}

// errorData decodes the DATA frame of a platform error.
func errorData(t testing.TB, f [][]byte) map[string]any {
	t.Helper()
	if len(f) < 10 || len(f[9]) == 0 {
		return nil
	}
	var m map[string]any
	require.NoError(t, msgpack.Unmarshal(f[9], &m))
	return m
}

func strs(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}

// weatherExports is what the weather agent exports.
var weatherExports = []rpc.Export{
	rpc.NewExport("temperature", rpc.Allow("can_read_temp")),
	rpc.NewExport("hello"),
	rpc.NewExport("set_units", rpc.Allow("can_configure"), rpc.Params("units")),
}

// startWeather connects the weather agent, serving temperature = 21.5.
func (tp *testPlatform) startWeather(t testing.TB) *client {
	t.Helper()
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", weatherExports...)
	w.serve(func(method, caller, user string, payload []byte) any {
		if method == "temperature" {
			return 21.5
		}
		return map[string]string{"caller": caller, "user": user}
	})
	return w
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
