package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runOptions are the options of every suite.
type runOptions struct {
	duration, warmup time.Duration
	runs             int
	jsonOut          string
	verbose          bool
	timeout          time.Duration
}

// register adds the run options' flags to fs; tables says how the results
// show the runs, timeout is the default of -timeout.
func (r *runOptions) register(fs *flag.FlagSet, tables string, timeout time.Duration) {
	fs.DurationVar(&r.duration, "duration", 3*time.Second, "measurement window of each cell")
	fs.DurationVar(&r.warmup, "warmup", 500*time.Millisecond, "warm-up of each cell, not measured")
	fs.IntVar(&r.runs, "runs", 1, "runs of every cell; "+tables+" medians")
	fs.StringVar(&r.jsonOut, "json", "", "also write every measurement to this JSON file")
	fs.BoolVar(&r.verbose, "v", false, "show the children's stderr")
	fs.DurationVar(&r.timeout, "timeout", timeout, "stop everything after this long")
}

// options of the orchestrator.
type options struct {
	runOptions
	stacks   []string
	inflight []int
	agents   []int // connected agents of the capbus routing/memory cells
	profile  bool
	// profileAgents: connected agents of the profiled cell (0: caller and
	// callee only).
	profileAgents int
	// profileInflight: calls in flight of the profiled cell.
	profileInflight int
	// Diagnostics of the scaling cells.
	idleHeartbeat time.Duration // heartbeat of the idle agents (0: agent default)
	ballast       int           // MiB of live heap the platform holds (isolates the heap's effect)
	gobench       bool
	repo          string
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("busbench", flag.ContinueOnError)
	o.register(fs, "the table shows", 20*time.Minute)
	stacks := fs.String("stacks", "capbus,zmq4,nats,nats-tls", "contenders (empty: only the capbus scaling cells)")
	inflight := fs.String("inflight", "1,64", "calls in flight (one goroutine per call)")
	agents := fs.String("agents", "10,1000", "capbus routing and memory cells: connected agents, caller and callee included (empty: skip)")
	fs.BoolVar(&o.profile, "profile", true, "one extra capbus cell (not in the table) with CPU profiles of the platform and both agents")
	fs.IntVar(&o.profileInflight, "profile-inflight", 64, "calls in flight of the profiled cell")
	fs.IntVar(&o.profileAgents, "profile-agents", 0, "connected agents during the profiled cell (0: caller and callee only)")
	fs.DurationVar(&o.idleHeartbeat, "idle-heartbeat", 0, "diagnostic: heartbeat interval of the idle agents (0: the agent default; negative: off)")
	fs.IntVar(&o.ballast, "ballast", 0, "diagnostic: MiB of pointer-free live heap the platform holds, to separate the heap's effect from the connections'")
	fs.BoolVar(&o.gobench, "gobench", true, "also run the platform's and auth's go test benchmarks (allocations per call)")
	fs.StringVar(&o.repo, "repo", "..", "the capbus repository (for -gobench)")
	quick := fs.Bool("quick", false, "smoke run: short cells, 10 and 50 agents, no profile, no go test benchmarks")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *quick { // shorter defaults; flags given explicitly still win
		quickDefaults(fs, &o.duration, &o.warmup, map[string]func(){
			"agents":  func() { *agents = "10,50" },
			"profile": func() { o.profile = false },
			"gobench": func() { o.gobench = false },
		})
	}
	o.stacks = splitList(*stacks)
	for _, s := range o.stacks {
		if s != "capbus" && s != "zmq4" && s != "nats" && s != "nats-tls" { // -stacks "" runs only the scaling cells
			return nil, fmt.Errorf("unknown stack %q (capbus, zmq4, nats, nats-tls)", s)
		}
	}
	var err error
	if o.inflight, err = intList(*inflight); err != nil {
		return nil, fmt.Errorf("-inflight: %w", err)
	}
	if o.agents, err = intList(*agents); err != nil {
		return nil, fmt.Errorf("-agents: %w", err)
	}
	for _, n := range o.agents {
		if n < 2 {
			return nil, errors.New("-agents: at least 2 (the caller and the callee)")
		}
	}
	if o.runs < 1 {
		o.runs = 1
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// cell is one measurement: a stack, a number of calls in flight, and for the
// capbus scaling cells a number of connected agents.
type cell struct {
	Stack    string `json:"stack"`
	Inflight int    `json:"inflight"`
	Agents   int    `json:"agents"` // connected agents incl. caller and callee; 2 for the plain cells
	Run      int    `json:"run"`
	Caller   result `json:"caller"`
	// Broker and callee over the measurement window (differences of marks).
	Broker usage  `json:"broker"`
	Callee usage  `json:"callee"`
	Idle   *usage `json:"idle,omitempty"` // the idle agents' process (scaling cells)
	// Whole-life CPU of each process (ProcessState), setup included.
	LifeCPUNS [3]int64 `json:"life_cpu_ns"` // caller, broker, callee
	// Memory of the platform before and after the idle agents connected
	// (scaling cells only).
	MemBefore *mark `json:"mem_before,omitempty"`
	MemAfter  *mark `json:"mem_after,omitempty"`
}

// usage is a process's consumption over the window.
type usage struct {
	UserNS  int64  `json:"user_ns"`
	SysNS   int64  `json:"sys_ns"`
	Mallocs uint64 `json:"mallocs"`
	Syscr   int64  `json:"syscr"`
	Syscw   int64  `json:"syscw"`
}

func diff(a, b mark) usage {
	return usage{UserNS: b.UserNS - a.UserNS, SysNS: b.SysNS - a.SysNS, Mallocs: b.Mallocs - a.Mallocs,
		Syscr: b.Syscr - a.Syscr, Syscw: b.Syscw - a.Syscw}
}

func (c *cell) rate() float64 {
	if c.Caller.WindowNS == 0 {
		return 0
	}
	return float64(c.Caller.Calls) / (float64(c.Caller.WindowNS) / 1e9)
}

// perCall divides by the calls of the window.
func (c *cell) perCall(v float64) float64 {
	if c.Caller.Calls == 0 {
		return 0
	}
	return v / float64(c.Caller.Calls)
}

// report is everything one invocation measured.
type report struct {
	Started  time.Time     `json:"started"`
	Machine  string        `json:"machine"`
	Options  string        `json:"options"`
	Cells    []*cell       `json:"cells"`
	Profiles []*profileRep `json:"profiles,omitempty"` // capbus broker, callee, caller
	Heap     *heapRep      `json:"heap,omitempty"`
	GoBench  []string      `json:"go_bench,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
}

func orchestrate(args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	idle := 0
	if len(o.agents) > 0 {
		idle = slices.Max(o.agents) - 2
	}
	if o.profileAgents > 2 {
		idle = max(idle, o.profileAgents-2)
	}
	home, ring, cleanup, err := newHome(map[string]int{idleGroup: idle})
	if err != nil {
		return err
	}
	defer cleanup()
	rep := &report{Started: time.Now().UTC(), Machine: machine(), Options: strings.Join(args, " ")}
	fmt.Printf("busbench: %s; %v per cell (+%v warm-up), %d run(s)\n", rep.Machine, o.duration, o.warmup, o.runs)

	total := o.runs * (len(o.stacks)*len(o.inflight) + len(o.agents)*len(o.inflight))
	done := 0
	progress := func(c *cell) {
		done++
		extra := ""
		if c.Agents > 2 {
			extra = fmt.Sprintf(", %d agents", c.Agents)
		}
		fmt.Fprintf(os.Stderr, "  [%d/%d] %-6s %2d in flight%s: %8.0f calls/s, p50 %s, p99 %s\n",
			done, total, c.Stack, c.Inflight, extra, c.rate(), fmtDur(c.Caller.P50NS), fmtDur(c.Caller.P99NS))
	}
	for run := range o.runs {
		// Interleave the stacks so that drift on a shared machine hits all.
		for _, k := range o.inflight {
			for _, s := range o.stacks {
				c, err := runCell(ctx, o, home, ring, s, k, 0, run, "", "")
				if err != nil {
					return fmt.Errorf("%s, %d in flight: %w", s, k, err)
				}
				rep.Cells = append(rep.Cells, c)
				progress(c)
			}
		}
		for _, n := range o.agents {
			for i, k := range o.inflight {
				heap := ""
				if o.profile && run == 0 && i == 0 && n == slices.Max(o.agents) {
					heap = filepath.Join(home, "platform.heap.pprof")
				}
				c, err := runCell(ctx, o, home, ring, "capbus", k, n, run, "", heap)
				if err != nil {
					return fmt.Errorf("capbus, %d agents, %d in flight: %w", n, k, err)
				}
				rep.Cells = append(rep.Cells, c)
				progress(c)
				if heap != "" {
					if rep.Heap, err = analyzeHeap(ctx, heap, n-2); err != nil {
						rep.Warnings = append(rep.Warnings, "heap profile: "+err.Error())
					}
				}
			}
		}
	}
	if o.profile {
		// Twice the window: at 100 Hz a 3 s window holds about 120 samples
		// of the platform.
		po := *o
		po.duration = 2 * o.duration
		c, err := runCell(ctx, &po, home, ring, "capbus", o.profileInflight, o.profileAgents, 0, home, "")
		if err != nil {
			return fmt.Errorf("profiled capbus cell: %w", err)
		}
		for _, role := range []string{"broker", "callee", "caller"} {
			pf := filepath.Join(home, role+".pprof")
			pr, err := analyzeProfile(ctx, pf, c)
			if err != nil {
				rep.Warnings = append(rep.Warnings, role+" profile: "+err.Error())
				continue
			}
			pr.Role = role
			keep := filepath.Join(os.TempDir(), "busbench-capbus-"+role+".cpu.pprof")
			if b, err := os.ReadFile(pf); err == nil && os.WriteFile(keep, b, 0o644) == nil {
				pr.File = keep
			}
			rep.Profiles = append(rep.Profiles, pr)
		}
	}
	if o.gobench {
		lines, err := goBench(ctx, o.repo)
		if err != nil {
			rep.Warnings = append(rep.Warnings, "go test -bench: "+err.Error())
		}
		rep.GoBench = lines
	}
	printReport(os.Stdout, o, rep)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runCell starts broker and callee (and for agents > 2 the idle agents),
// then the caller, and measures one window.
//
// With profDir, each process writes a CPU profile of the window to
// profDir/<role>.pprof; with heapprofile (scaling cells), the broker writes a
// heap profile once the idle agents are connected.
func runCell(ctx context.Context, o *options, home string, ring keyring, stack string, inflight, agents, run int, profDir, heapprofile string) (c *cell, err error) {
	const startTimeout = 2 * time.Minute
	var procs []*proc
	defer func() {
		if err != nil {
			for _, p := range procs {
				p.kill()
			}
		}
	}()
	start := func(role string, args ...string) (*proc, string, error) {
		p, err := spawn(ctx, o.verbose, role, args...)
		if err != nil {
			return nil, "", err
		}
		procs = append(procs, p)
		line, err := p.expect("ready", startTimeout)
		return p, line, err
	}
	common := []string{"-stack", stack, "-dir", home, "-seed", ring.String()}
	prof := func(role string, args []string) []string {
		if profDir == "" {
			return args
		}
		return append(slices.Clip(args), "-cpuprofile", filepath.Join(profDir, role+".pprof"))
	}
	broker, line, err := start("broker", prof("broker", append(slices.Clip(common), "-ballast", strconv.Itoa(o.ballast)))...)
	if err != nil {
		return nil, err
	}
	kv := parseKV(line)
	common = append(common, "-addr", kv["addr"], "-key", kv["key"])
	callee, _, err := start("callee", prof("callee", common)...)
	if err != nil {
		return nil, err
	}
	c = &cell{Stack: stack, Inflight: inflight, Agents: 2, Run: run}
	var idle *proc
	if agents > 2 {
		c.Agents = agents
		before, err := broker.mark(true)
		if err != nil {
			return nil, err
		}
		if idle, _, err = start("idle", append(slices.Clip(common), "-n", strconv.Itoa(agents-2), "-heartbeat", o.idleHeartbeat.String())...); err != nil {
			return nil, err
		}
		after, err := broker.mark(true)
		if err != nil {
			return nil, err
		}
		c.MemBefore, c.MemAfter = &before, &after
		if heapprofile != "" {
			if err := broker.send("heap " + heapprofile); err != nil {
				return nil, err
			}
			if _, err := broker.expect("heap written", time.Minute); err != nil {
				return nil, err
			}
		}
	}
	caller, _, err := start("caller", prof("caller", append(slices.Clip(common), "-inflight", strconv.Itoa(inflight),
		"-duration", o.duration.String(), "-warmup", o.warmup.String()))...)
	if err != nil {
		return nil, err
	}
	if _, err := caller.expect("warm", startTimeout); err != nil {
		return nil, err
	}
	b0, err := broker.mark(false)
	if err != nil {
		return nil, err
	}
	e0, err := callee.mark(false)
	if err != nil {
		return nil, err
	}
	var i0 mark
	if idle != nil {
		if i0, err = idle.mark(false); err != nil {
			return nil, err
		}
	}
	if profDir != "" {
		for _, p := range []*proc{broker, callee} {
			if err := p.send("prof start"); err != nil {
				return nil, err
			}
			if _, err := p.expect("prof started", time.Minute); err != nil {
				return nil, err
			}
		}
	}
	if err := caller.send("go"); err != nil {
		return nil, err
	}
	if _, err := caller.expect("stopped", o.duration+time.Minute); err != nil {
		return nil, err
	}
	if profDir != "" {
		for _, p := range []*proc{broker, callee} {
			if err := p.send("prof stop"); err != nil {
				return nil, err
			}
			if _, err := p.expect("prof stopped", time.Minute); err != nil {
				return nil, err
			}
		}
	}
	b1, err := broker.mark(false)
	if err != nil {
		return nil, err
	}
	e1, err := callee.mark(false)
	if err != nil {
		return nil, err
	}
	if idle != nil {
		i1, err := idle.mark(false)
		if err != nil {
			return nil, err
		}
		u := diff(i0, i1)
		c.Idle = &u
	}
	res, err := caller.expect("result ", time.Minute)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(res), &c.Caller); err != nil {
		return nil, err
	}
	c.Broker, c.Callee = diff(b0, b1), diff(e0, e1)
	// Stop in dependency order: the caller, the idle agents, the callee, the
	// broker last.
	order := []*proc{caller, idle, callee, broker}
	for _, p := range order {
		if p == nil {
			continue
		}
		if err := p.stop(30 * time.Second); err != nil {
			return nil, err
		}
	}
	c.LifeCPUNS = [3]int64{int64(caller.cpu()), int64(broker.cpu()), int64(callee.cpu())}
	if c.Caller.Errors > 0 {
		return c, fmt.Errorf("%d calls failed, first: %s", c.Caller.Errors, c.Caller.FirstErr)
	}
	if c.Caller.Calls == 0 {
		return c, errors.New("no call completed")
	}
	return c, nil
}

func parseKV(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

// quickDefaults applies the quick mode's shorter defaults to the flags of
// fs that were not given: the window and warm-up, and those of more.
func quickDefaults(fs *flag.FlagSet, duration, warmup *time.Duration, more map[string]func()) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["duration"] {
		*duration = 300 * time.Millisecond
	}
	if !set["warmup"] {
		*warmup = 100 * time.Millisecond
	}
	for name, apply := range more {
		if !set[name] {
			apply()
		}
	}
}

// newHome prepares a run: it raises the limit of open files and writes a
// capbus home (server key, auth.json) with the key groups of the keyring,
// in a temporary directory that cleanup removes.
func newHome(groups map[string]int) (home string, ring keyring, cleanup func(), err error) {
	raiseNoFile()
	home, err = os.MkdirTemp("", "busbench-")
	if err != nil {
		return "", keyring{}, nil, err
	}
	cleanup = func() { os.RemoveAll(home) }
	if ring, err = newKeyring(); err == nil {
		err = writeCapbusHome(home, ring, groups)
	}
	if err != nil {
		cleanup()
		return "", keyring{}, nil, err
	}
	return home, ring, cleanup, nil
}

// raiseNoFile raises the soft limit of open files to the hard limit, for
// the children too: 1,000 agents need 1,000 descriptors on each side.
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s/%s, %d CPUs (%s), GOMAXPROCS=%d, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model, runtime.GOMAXPROCS(0), runtime.Version())
}
