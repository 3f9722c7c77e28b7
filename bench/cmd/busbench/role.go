package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// roleConfig is what the orchestrator tells a child process.
type roleConfig struct {
	stack      string        // capbus, zmq4, nats, nats-tls
	addr       string        // the broker's address (callee, caller, idle)
	serverKey  string        // the capbus platform's public key, Z85
	dir        string        // temp dir with keystores and auth.json (capbus)
	inflight   int           // caller: calls in flight
	op         string        // caller: call, publish or connect
	callerN    int           // caller: its identity is caller.<n> (0: caller)
	topic      string        // publisher, subscribers: the topic of the fan-out
	subs       int           // subscribers: connections subscribed to topic
	loadConns  int           // subscribers: connections holding the other subscriptions
	listen     string        // broker: the address to listen on
	maxPending int           // broker: the platform's MaxPendingHandshakes (0: default)
	duration   time.Duration // caller: measurement window
	warmup     time.Duration // caller: warm-up before the window
	idle       int           // idle: number of agents to connect
	first      int           // idle: index of the first agent (identity idle.<first>)
	ring       keyring       // the agents' keys (-seed)
	heartbeat  time.Duration // idle: the agents' heartbeat (0: default, <0: off)
	connectTO  time.Duration // idle: the agents' connect timeout (0: default)
	ballast    int           // broker: MiB of live pointer-free heap to hold
	cpuprofile string        // CPU profile of the measurement window (servers: between "prof start" and "prof stop")
}

func parseRoleFlags(role string, args []string) (*roleConfig, error) {
	c := &roleConfig{}
	fs := flag.NewFlagSet("busbench role="+role, flag.ContinueOnError)
	fs.StringVar(&c.stack, "stack", "", "capbus, zmq4, nats or nats-tls")
	fs.StringVar(&c.addr, "addr", "", "broker address")
	fs.StringVar(&c.serverKey, "key", "", "platform public key (capbus)")
	fs.StringVar(&c.dir, "dir", "", "directory of keystores and auth.json (capbus)")
	fs.IntVar(&c.inflight, "inflight", 1, "calls in flight")
	fs.StringVar(&c.op, "op", "call", "caller: call, publish or connect")
	fs.IntVar(&c.callerN, "caller-n", 0, "caller: identity caller.<n> (0: caller)")
	fs.StringVar(&c.topic, "topic", fanTopic, "publisher and subscribers: the topic")
	fs.IntVar(&c.subs, "subs", 0, "subscribers: connections subscribed to -topic")
	fs.IntVar(&c.loadConns, "load-conns", 0, "subscribers: connections holding the other subscriptions")
	fs.StringVar(&c.listen, "listen", "tcp://127.0.0.1:0", "broker: address to listen on (capbus)")
	fs.IntVar(&c.maxPending, "max-pending-handshakes", 0, "broker: the platform's limit of handshakes in progress (capbus; 0: default)")
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "measurement window")
	fs.DurationVar(&c.warmup, "warmup", 500*time.Millisecond, "warm-up")
	fs.IntVar(&c.idle, "n", 0, "idle agents")
	fs.IntVar(&c.first, "first", 0, "index of the first idle agent")
	seed := fs.String("seed", "", "the keyring's seed (64 hex digits)")
	fs.DurationVar(&c.heartbeat, "heartbeat", 0, "idle agents' heartbeat (0: default, negative: off)")
	fs.DurationVar(&c.connectTO, "connect-timeout", 0, "idle agents' connect timeout (0: the agent default)")
	fs.IntVar(&c.ballast, "ballast", 0, "MiB of live heap the broker holds")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "CPU profile of the measurement window")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *seed != "" {
		var err error
		if c.ring, err = parseKeyring(*seed); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// A server is a long-lived role (broker, callee, idle): it is started, then
// serves until its standard input ends.
type server interface {
	// readyLine is what follows "ready" on the ready line.
	readyLine() string
	// close shuts the role down.
	close()
}

// A commander is a server with commands of its own (the subscribers'
// "count", the fleet's "back"): command answers line, or reports false
// when it does not know it. It runs on the role's command loop, one
// command at a time.
type commander interface {
	command(line string, out *lineWriter) (known bool, err error)
}

// runRole runs one child process. Line protocol on stdout:
//
//	ready [k=v...]      the role is serving
//	warm total=N        (caller) warm-up done (N operations), waiting for "go"
//	stopped             (caller) measurement window over, no call in flight
//	result {json}       (caller) the measurement; another "go" measures again
//	mark {json}         answer to "mark" / "mark gc" on stdin
//	prof started|stopped answer to "prof start" / "prof stop"
//	heap written        answer to "heap <file>" (heap profile of live memory)
//	...                 the answers of a commander's own commands (subs,
//	                    fleet, idle: see their command methods)
//
// The process exits when its standard input ends (the orchestrator closed it
// or died).
func runRole(role string, args []string) error {
	cfg, err := parseRoleFlags(role, args)
	if err != nil {
		return err
	}
	out := newLineWriter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			in <- sc.Text()
		}
		close(in)
	}()

	if c := cfg.ballast; c > 0 && role == "broker" {
		ballast = make([]byte, c<<20)
		for i := 0; i < len(ballast); i += 4096 {
			ballast[i] = 1
		}
	}
	if role == "caller" {
		return runCaller(ctx, cfg, in, out)
	}
	var srv server
	switch role {
	case "broker":
		srv, err = startBroker(ctx, cfg)
	case "callee":
		srv, err = startCallee(ctx, cfg)
	case "idle":
		srv, err = startIdle(ctx, cfg)
	case "subs":
		srv, err = startSubscribers(ctx, cfg)
	case "fleet":
		srv, err = startFleet(ctx, cfg)
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		return err
	}
	out.printf("ready %s", srv.readyLine())
	var prof *os.File
	for line := range in {
		switch {
		case line == "mark" || line == "mark gc":
			out.printf("mark %s", takeMark(line == "mark gc").json())
		case strings.HasPrefix(line, "heap "):
			if err := writeHeapProfile(strings.TrimPrefix(line, "heap ")); err != nil {
				return err
			}
			out.printf("heap written")
		case line == "prof start" && cfg.cpuprofile != "":
			if prof, err = startProfile(cfg.cpuprofile); err != nil {
				return err
			}
			out.printf("prof started")
		case line == "prof stop" && prof != nil:
			if err := stopProfile(prof); err != nil {
				return err
			}
			prof = nil
			out.printf("prof stopped")
		default:
			known := false
			if c, ok := srv.(commander); ok {
				if known, err = c.command(line, out); err != nil {
					return err
				}
			}
			if !known {
				out.printf("error unknown command %q", line)
			}
		}
	}
	srv.close()
	return nil
}

// writeHeapProfile writes the live heap (after a collection) to path.
func writeHeapProfile(path string) error {
	runtime.GC()
	return writeProfile("heap", path)
}

// profileHz is the CPU profile's sampling rate, Go's default. (Raising it
// with runtime.SetCPUProfileRate was tried: at 1000 Hz the samples covered a
// quarter of the CPU time getrusage reported, so the profiled cell runs
// longer instead.)
const profileHz = 100

// startProfile starts a CPU profile to path and writes the allocation
// profile so far to path+".allocs0"; stopProfile writes path+".allocs1", so
// that the allocations of the window are the difference.
func startProfile(path string) (*os.File, error) {
	if err := writeProfile("allocs", path+".allocs0"); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func stopProfile(f *os.File) error {
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return err
	}
	return writeProfile("allocs", f.Name()+".allocs1")
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// lineWriter writes whole lines to stdout, one at a time.
type lineWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func newLineWriter() *lineWriter { return &lineWriter{w: bufio.NewWriter(os.Stdout)} }

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
	_ = l.w.Flush()
}

// mark is a process's resource counters at one instant.
type mark struct {
	UserNS     int64  `json:"user_ns"`
	SysNS      int64  `json:"sys_ns"`
	Mallocs    uint64 `json:"mallocs"`
	RSS        int64  `json:"rss"`
	HeapInuse  uint64 `json:"heap_inuse"`
	Goroutines int    `json:"goroutines"`
	// Read and write system calls so far (/proc/self/io syscr, syscw).
	Syscr int64 `json:"syscr"`
	Syscw int64 `json:"syscw"`
}

// takeMark reads getrusage(RUSAGE_SELF), the runtime's allocation counter and
// the resident set size. With gc, it first collects garbage and returns freed
// memory to the OS, so that RSS reflects live memory.
func takeMark(gc bool) mark {
	if gc {
		runtime.GC()
		debug.FreeOSMemory()
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	syscr, syscw := syscalls()
	return mark{
		Syscr:      syscr,
		Syscw:      syscw,
		UserNS:     ru.Utime.Nano(),
		SysNS:      ru.Stime.Nano(),
		Mallocs:    ms.Mallocs,
		RSS:        rss(),
		HeapInuse:  ms.HeapInuse,
		Goroutines: runtime.NumGoroutine(),
	}
}

func (m mark) json() string { b, _ := json.Marshal(m); return string(b) }

// syscalls returns the read and write system calls of the process so far:
// syscr and syscw of /proc/self/io (read, readv, recvfrom... and write,
// writev, sendto...).
func syscalls() (r, w int64) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			r = n
		case "syscw":
			w = n
		}
	}
	return r, w
}

// rss returns the resident set size from /proc/self/status, in bytes.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// ballast is live heap held by the broker with -ballast.
var ballast []byte

// errStdinClosed is returned by a caller whose orchestrator went away.
var errStdinClosed = errors.New("standard input closed")

// waitFor reads commands until want arrives.
func waitFor(in <-chan string, want string) error {
	for line := range in {
		if line == want {
			return nil
		}
	}
	return errStdinClosed
}

func startBroker(ctx context.Context, cfg *roleConfig) (server, error) {
	switch cfg.stack {
	case "capbus":
		return startCapbusBroker(ctx, cfg)
	case "zmq4":
		return startZmqBroker(ctx)
	case "nats", "nats-tls":
		return startNATSBroker(cfg.stack == "nats-tls")
	}
	return nil, fmt.Errorf("unknown stack %q", cfg.stack)
}

func startCallee(ctx context.Context, cfg *roleConfig) (server, error) {
	switch cfg.stack {
	case "capbus":
		return startCapbusCallee(ctx, cfg)
	case "zmq4":
		return startZmqCallee(ctx, cfg)
	case "nats", "nats-tls":
		return startNATSCallee(cfg)
	}
	return nil, fmt.Errorf("unknown stack %q", cfg.stack)
}
