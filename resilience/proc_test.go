//go:build linux

package resilience

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/keys"
)

// buildTools builds cmd/capbus and the attacker program into dir, without
// -race (the platform's figures are those of the binary users run, and the
// attacks cost what they cost a real attacker), and returns their paths.
func buildTools(t *testing.T, dir string) (capbus, attacker string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", dir+string(filepath.Separator),
		"github.com/capbus/capbus/cmd/capbus", "github.com/capbus/capbus/resilience/attacker")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build:\n%s", out)
	return filepath.Join(dir, "capbus"), filepath.Join(dir, "attacker")
}

// platformProc is a capbus platform run as a child process: "capbus
// platform run" with its home in a temporary directory, on 127.0.0.1.
type platformProc struct {
	t      *testing.T
	bin    string
	home   string
	flags  []string // platform run flags of the suite
	server keys.Pair
	addr   string // tcp://127.0.0.1:port, fixed by the first start
	admin  string // host:port of --admin-address, "" when the binary has none
	// metrics scrapes /metrics on a new connection each time, closed by
	// the platform once answered: /proc/<pid>/fd is read before the
	// scrape, so it never counts the scrape's own connection.
	metrics *http.Client
	// started is called with the pid of each process started.
	started func(pid int) error

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
	logs *logCounter   // the processes' stderr, appended
}

// startPlatform writes the platform's keystore and auth.json into a new home
// and starts the platform with flags.
func startPlatform(t *testing.T, bin string, authJSON []byte, started func(pid int) error, flags ...string) *platformProc {
	t.Helper()
	home := t.TempDir()
	server, err := keys.Generate()
	require.NoError(t, err)
	require.NoError(t, keys.Save(filepath.Join(home, "keystore.json"), server))
	require.NoError(t, os.WriteFile(filepath.Join(home, "auth.json"), authJSON, 0o600))
	logFile, err := os.Create(filepath.Join(home, "platform.log"))
	require.NoError(t, err)
	t.Cleanup(func() { logFile.Close() })
	p := &platformProc{t: t, bin: bin, home: home, flags: flags, server: server,
		addr: "tcp://127.0.0.1:0", logs: &logCounter{w: logFile},
		metrics: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		started: started}
	if hasAdminAddress(t, bin) {
		p.admin = freeAddr(t)
	}
	t.Cleanup(p.stop)
	require.NoError(t, p.start())
	return p
}

// hasAdminAddress reports whether this capbus has "platform run
// --admin-address" (Prometheus metrics of the platform's heap and
// goroutines); without it only /proc is read.
func hasAdminAddress(t *testing.T, bin string) bool {
	out, err := exec.Command(bin, "platform", "run", "--help").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bytes.Contains(out, []byte("--admin-address"))
}

// freeAddr returns a 127.0.0.1 port free a moment ago.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// start runs the platform and waits until it listens. The first start
// picks a free port; later starts (after a kill) reuse it.
func (p *platformProc) start() error {
	args := []string{"--home", p.home, "--address", p.addr, "platform", "run"}
	if p.admin != "" {
		args = append(args, "--admin-address", p.admin)
	}
	args = append(args, p.flags...)
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		addr, err := p.startOnce(args)
		if err == nil {
			p.addr = addr
			if p.started != nil {
				return p.started(p.pid())
			}
			return nil
		}
		lastErr = err
		// A restart may race the kernel releasing the port: try again.
		timer := time.NewTimer(100 * time.Millisecond)
		<-timer.C
	}
	return lastErr
}

func (p *platformProc) startOnce(args []string) (string, error) {
	cmd := exec.Command(p.bin, args...)
	cmd.Stderr = p.logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan struct{})
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "capbus platform listening on "); ok {
				listening <- strings.TrimSpace(a)
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case a := <-listening:
		p.mu.Lock()
		p.cmd, p.done = cmd, done
		p.mu.Unlock()
		return a, nil
	case <-done:
		return "", fmt.Errorf("capbus platform run exited at start: %s; log tail:\n%s", cmd.ProcessState, p.logs.tail(2000))
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return "", errors.New("capbus platform run did not listen within 30 s")
	}
}

// pid returns the process id of the running platform.
func (p *platformProc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// kill9 sends SIGKILL to the platform and waits for it to die.
func (p *platformProc) kill9() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop ends the platform: SIGTERM, then SIGKILL after 10 s.
func (p *platformProc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// authFile is the platform's auth.json.
func (p *platformProc) authFile() string { return filepath.Join(p.home, "auth.json") }

// logCounter appends the platforms' stderr to a file and counts its lines
// and warnings.
type logCounter struct {
	mu    sync.Mutex
	w     io.Writer
	last  bytes.Buffer // the last few KiB, for failure messages
	lines atomic.Int64
	warns atomic.Int64 // lines at WARN or ERROR
	part  []byte
}

func (l *logCounter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		line := l.part[:i]
		l.lines.Add(1)
		if bytes.Contains(line, []byte("level=WARN")) || bytes.Contains(line, []byte("level=ERROR")) {
			l.warns.Add(1)
		}
		l.part = l.part[i+1:]
	}
	l.part = append([]byte(nil), l.part...)
	l.last.Write(b)
	if l.last.Len() > 64<<10 {
		keep := append([]byte(nil), l.last.Bytes()[l.last.Len()-16<<10:]...)
		l.last.Reset()
		l.last.Write(keep)
	}
	return l.w.Write(b)
}

func (l *logCounter) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.last.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// sample is the platform process's resources at one moment. HeapInuse and
// Goroutines are -1 when the platform serves no metrics.
type sample struct {
	PID        int
	At         time.Time
	RSS        int64 // bytes, VmRSS
	HWM        int64 // bytes, VmHWM: the peak RSS since the last resetPeak
	FDs        int
	CPU        time.Duration // user + system
	HeapInuse  int64
	Goroutines int
}

// sample reads /proc/<pid> and, when the platform serves them, its metrics.
func (p *platformProc) sample() (sample, error) {
	pid := p.pid()
	s := sample{PID: pid, At: time.Now(), HeapInuse: -1, Goroutines: -1}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch name {
		case "VmRSS":
			s.RSS = parseKB(v)
		case "VmHWM":
			s.HWM = parseKB(v)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(fds)
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command (which may hold spaces) in parentheses:
		// utime and stime are the 14th and 15th fields, in clock ticks
		// (100 per second on Linux).
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			f := strings.Fields(string(stat[i+1:]))
			if len(f) > 13 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				k, _ := strconv.ParseInt(f[12], 10, 64)
				s.CPU = time.Duration(u+k) * 10 * time.Millisecond
			}
		}
	}
	if p.admin != "" {
		m, err := scrapeMetrics(p.metrics, p.admin)
		if err != nil {
			return s, err
		}
		if v, ok := m["go_memstats_heap_inuse_bytes"]; ok {
			s.HeapInuse = int64(v)
		}
		if v, ok := m["go_goroutines"]; ok {
			s.Goroutines = int(v)
		}
	}
	return s, nil
}

// rss reads the platform's VmRSS alone.
func (p *platformProc) rss() (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return parseKB(v), nil
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

// resetPeak resets the process's VmHWM to its current RSS, so that the next
// samples' HWM is the peak since now.
func (p *platformProc) resetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid()), []byte("5"), 0)
}

func parseKB(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
	return n << 10
}

// scrapeMetrics reads the untyped samples of a Prometheus text exposition:
// "name value" lines without labels.
func scrapeMetrics(c *http.Client, hostport string) (map[string]float64, error) {
	resp, err := c.Get("http://" + hostport + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}
