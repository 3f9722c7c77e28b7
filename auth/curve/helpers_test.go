package curve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capbus/capbus/keys"
	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testTimeout bounds every wait in the tests.
const testTimeout = 20 * time.Second

func newKeyPair(t testing.TB) keys.Pair {
	t.Helper()
	kp, err := keys.Generate()
	require.NoError(t, err)
	return kp
}

// allowKeys admits exactly the given keys, with the given user ids.
func allowKeys(users map[keys.Key]string) Authenticator {
	return AuthenticatorFunc(func(_ context.Context, req AuthRequest) (string, error) {
		if u, ok := users[req.PublicKey]; ok {
			return u, nil
		}
		return "", fmt.Errorf("unknown key %s", req.PublicKey.Z85())
	})
}

// logRecorder is a slog destination the tests can wait on.
type logRecorder struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogRecorder() (*logRecorder, *slog.Logger) {
	r := &logRecorder{changed: make(chan struct{})}
	return r, slog.New(slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	close(r.changed)
	r.changed = make(chan struct{})
	return len(p), nil
}

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// attr renders key=value as the slog text handler writes it.
func attr(key, value string) string {
	var b bytes.Buffer
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey {
			return slog.Attr{}
		}
		return a
	}})
	slog.New(h).Info("", key, value)
	return strings.TrimSpace(b.String())
}

// waitFor waits until a log line contains every one of parts, and returns it.
func (r *logRecorder) waitFor(t testing.TB, parts ...string) string {
	t.Helper()
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		text, changed := r.buf.String(), r.changed
		r.mu.Unlock()
	lines:
		for _, line := range strings.Split(text, "\n") {
			for _, p := range parts {
				if !strings.Contains(line, p) {
					continue lines
				}
			}
			return line
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("no log line with %q; log:\n%s", parts, text)
		}
	}
}

// server is a Listener whose accepted conns run an echo.
type server struct {
	l     *Listener
	kp    keys.Pair
	conns chan *Conn // every accepted conn
	recv  chan [][]byte
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []*Conn
}

// startEchoServer listens on 127.0.0.1 and echoes every message on every
// accepted conn with ReadMsg and WriteMsg; the first messages received are
// also sent to s.recv.
func startEchoServer(t testing.TB, opts ...Option) *server {
	t.Helper()
	return startServer(t, echo, opts...)
}

// startZMQ4EchoServer is startEchoServer with the echo done by a zmq4
// ROUTER conn over the adapter (NewZMQ4Conn).
func startZMQ4EchoServer(t testing.TB, opts ...Option) *server {
	t.Helper()
	return startServer(t, zmq4Echo, opts...)
}

func startServer(t testing.TB, serve func(*Conn, chan<- [][]byte), opts ...Option) *server {
	t.Helper()
	s := &server{kp: newKeyPair(t), conns: make(chan *Conn, 16), recv: make(chan [][]byte, 16)}
	l, err := Listen(context.Background(), "tcp://127.0.0.1:0", s.kp, opts...)
	require.NoError(t, err)
	s.l = l
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open = append(s.open, c)
			s.mu.Unlock()
			select {
			case s.conns <- c:
			default:
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				serve(c, s.recv)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		for _, c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *server) endpoint() string { return "tcp://" + s.l.Addr().String() }

// echo sends every message back with ReadMsg and WriteMsg.
func echo(c *Conn, seen chan<- [][]byte) {
	defer c.Close()
	for {
		frames, err := c.ReadMsg()
		if err != nil {
			return
		}
		select {
		case seen <- frames:
		default:
		}
		if err := c.WriteMsg(frames); err != nil {
			return
		}
	}
}

// zmq4Echo runs a zmq4 ROUTER conn over c that sends every message back.
func zmq4Echo(c *Conn, seen chan<- [][]byte) {
	defer c.Close()
	zc, err := zmq4.Open(NewZMQ4Conn(c), null.Security(), zmq4.Router, nil, true, nil)
	if err != nil {
		return
	}
	for {
		msg, err := zc.RecvMsg()
		if err != nil {
			return
		}
		select {
		case seen <- msg.Frames:
		default:
		}
		if err := zc.SendMsg(msg); err != nil {
			return
		}
	}
}

func (s *server) nextConn(t testing.TB) *Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(testTimeout):
		t.Fatal("no connection accepted")
		return nil
	}
}

// dealer dials the server as a DEALER.
func dealer(t testing.TB, endpoint string, kp keys.Pair, serverKey keys.Key, opts ...Option) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, endpoint, kp, serverKey, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// zmq4Dealer dials the server and opens a zmq4 DEALER conn over the
// adapter.
func zmq4Dealer(t testing.TB, endpoint string, kp keys.Pair, serverKey keys.Key, opts ...Option) (*Conn, *zmq4.Conn) {
	t.Helper()
	c := dealer(t, endpoint, kp, serverKey, opts...)
	zc, err := zmq4.Open(NewZMQ4Conn(c), null.Security(), zmq4.Dealer, nil, false, nil)
	require.NoError(t, err)
	return c, zc
}

// requirePythonZMQ skips the test when /usr/bin/python3 cannot import zmq,
// except when CI=true: then the missing interop peer fails the test.
func requirePythonZMQ(t *testing.T) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import zmq, zmq.auth.thread").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("libzmq interop needs /usr/bin/python3 with python3-zmq: %v: %s", err, bytes.TrimSpace(out))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// pyPeer is a Python (pyzmq + libzmq) script from testdata.
type pyPeer struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *lockedBuffer
	done   chan error
	cancel context.CancelFunc
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startPython runs testdata/script with env (KEY=value) and returns once it
// started; its stdout lines arrive on p.lines.
func startPython(t *testing.T, script string, env ...string) *pyPeer {
	t.Helper()
	requirePythonZMQ(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	p := &pyPeer{lines: make(chan string, 64), stderr: &lockedBuffer{}, done: make(chan error, 1), cancel: cancel}
	p.cmd = exec.CommandContext(ctx, "/usr/bin/python3", "testdata/"+script)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// expect waits for a stdout line starting with prefix and returns the rest.
func (p *pyPeer) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			require.True(t, ok, "python exited before printing %q; stderr:\n%s", prefix, p.stderr.String())
			t.Logf("python: %s", line)
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return strings.TrimSpace(rest)
			}
			require.False(t, strings.HasPrefix(line, "FAIL"), "python: %s; stderr:\n%s", line, p.stderr.String())
		case <-timeout.C:
			t.Fatalf("timed out waiting for python to print %q; stderr:\n%s", prefix, p.stderr.String())
		}
	}
}

// wait waits for the script to exit successfully.
func (p *pyPeer) wait(t *testing.T) {
	t.Helper()
	for line := range p.lines {
		t.Logf("python: %s", line)
		assert.False(t, strings.HasPrefix(line, "FAIL"), "python: %s", line)
	}
	select {
	case err := <-p.done:
		p.done <- err // for Cleanup
		require.NoError(t, err, "python stderr:\n%s", p.stderr.String())
	case <-time.After(testTimeout):
		t.Fatalf("python did not exit; stderr:\n%s", p.stderr.String())
	}
}

// countingConn counts the Read and Write calls on a net.Conn, each of which
// is one system call on a TCP conn (when it does not block).
type countingConn struct {
	net.Conn
	reads, writes *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// withCounters wraps the raw TCP conns of Listen or Dial in countingConns.
func withCounters(reads, writes *atomic.Int64) Option {
	return func(o *options) {
		o.wrapConn = func(c net.Conn) net.Conn { return countingConn{c, reads, writes} }
	}
}

// expectClosed asserts that the peer closes raw promptly.
func expectClosed(t *testing.T, raw net.Conn) {
	t.Helper()
	require.NoError(t, raw.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.Copy(io.Discard, raw)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "connection not closed by the server: %v", err)
	}
}

func msgOf(s string, i int) [][]byte {
	return [][]byte{[]byte(fmt.Sprintf("%s %d", s, i))}
}

// nextMsg returns the next message the echo server received.
func (s *server) nextMsg(t testing.TB) [][]byte {
	t.Helper()
	select {
	case m := <-s.recv:
		return m
	case <-time.After(testTimeout):
		t.Fatal("no message received by the server")
		return nil
	}
}
