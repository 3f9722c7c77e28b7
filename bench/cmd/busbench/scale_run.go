package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// busbench scale: new connections per second (capbus against NATS with TLS
// and NATS), the platform's memory per idle agent and the routing rate
// with few and many agents connected, and a platform restart under
// connected agents.

type scaleOptions struct {
	runOptions
	cells          []string
	parallel       []int    // connection cells: dialers
	stacks         []string // connection cells
	base, idle     int      // idle cells: agents connected in all, before and after
	inflight       []int    // idle cells: calls in flight of the routing windows
	fleet          int      // restart cells: agents
	maxPending     int      // restart cells: the platform's MaxPendingHandshakes (0: default)
	heap           bool
	connectTimeout time.Duration // idle cells: for all the idle agents to connect
	profileDir     string
}

func parseScaleOptions(args []string) (*scaleOptions, error) {
	o := &scaleOptions{}
	fs := flag.NewFlagSet("busbench scale", flag.ContinueOnError)
	o.register(fs, "the tables show", 3*time.Hour)
	cells := fs.String("cells", "conns,idle,restart", "which figures: conns, idle, restart")
	parallel := fs.String("parallel", "1,4", "connection cells: dialers connecting at once")
	stacks := fs.String("stacks", "capbus,nats-tls,nats", "connection cells: contenders")
	fs.IntVar(&o.base, "base", 10, "idle cells: agents connected in the baseline (callee and callers included)")
	fs.IntVar(&o.idle, "agents", 10000, "idle cells: agents connected in the large cell")
	inflight := fs.String("inflight", "1,64", "idle cells: calls in flight of the routing windows (one caller process each)")
	fs.IntVar(&o.fleet, "fleet", 1000, "restart cells: connected agents")
	fs.IntVar(&o.maxPending, "max-pending-handshakes", 0, "restart cells: the restarted platform's limit of handshakes in progress (0: its default, 256)")
	fs.BoolVar(&o.heap, "heap", true, "idle cells: a heap profile of the platform at the large cell (first run)")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", time.Hour, "idle cells: how long all the idle agents may take to connect (each arrival is broadcast to every agent connected)")
	fs.StringVar(&o.profileDir, "profile-dir", "", "write CPU profiles here: connection cells, broker and dialer over the window (<stack>-<role>-<dialers>-<run>.pprof); idle cells, the platform while the idle agents connect (idle-connect-broker-<run>.pprof); restart cells, the new platform until all are back (restart-broker-<run>.pprof)")
	quick := fs.Bool("quick", false, "smoke run: short cells, 100 idle agents, a fleet of 50")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *quick { // shorter defaults; flags given explicitly still win
		quickDefaults(fs, &o.duration, &o.warmup, map[string]func(){
			"agents": func() { o.idle = 100 },
			"fleet":  func() { o.fleet = 50 },
			"heap":   func() { o.heap = false },
		})
	}
	o.cells = splitList(*cells)
	for _, c := range o.cells {
		if c != "conns" && c != "idle" && c != "restart" {
			return nil, fmt.Errorf("unknown cell %q (conns, idle, restart)", c)
		}
	}
	var err error
	if o.parallel, err = intList(*parallel); err != nil {
		return nil, fmt.Errorf("-parallel: %w", err)
	}
	if o.inflight, err = intList(*inflight); err != nil {
		return nil, fmt.Errorf("-inflight: %w", err)
	}
	o.stacks = splitList(*stacks)
	for _, s := range o.stacks {
		if s != "capbus" && s != "nats" && s != "nats-tls" {
			return nil, fmt.Errorf("unknown stack %q (capbus, nats, nats-tls)", s)
		}
	}
	if o.base < 2+len(o.inflight) || o.idle <= o.base {
		return nil, fmt.Errorf("-base %d, -agents %d: need base >= 2 + callers (%d) and agents > base", o.base, o.idle, len(o.inflight))
	}
	o.runs = max(o.runs, 1)
	return o, nil
}

// connCell is one window of new connections.
type connCell struct {
	Stack    string `json:"stack"`
	Parallel int    `json:"parallel"`
	Run      int    `json:"run"`
	Dialer   result `json:"dialer"` // Calls: connections made
	Broker   usage  `json:"broker"`
}

func (c *connCell) rate() float64 {
	return float64(c.Dialer.Calls) / (float64(c.Dialer.WindowNS) / 1e9)
}

// idleStage is one routing window of an idle cell.
type idleStage struct {
	Agents   int    `json:"agents"` // connected in all
	Inflight int    `json:"inflight"`
	Order    int    `json:"order"` // 0: baseline, 1: large, 2: baseline again
	Caller   result `json:"caller"`
	Broker   usage  `json:"broker"`
	Idle     usage  `json:"idle"` // the large cell's idle agents' process
}

func (s *idleStage) rate() float64 {
	return float64(s.Caller.Calls) / (float64(s.Caller.WindowNS) / 1e9)
}

// idleCell is the platform's memory with base and with idle agents
// connected (after a collection: mark gc), and routing windows at each.
type idleCell struct {
	Run       int          `json:"run"`
	Base      int          `json:"base"`
	Agents    int          `json:"agents"`
	ConnectNS int64        `json:"connect_ns"` // to connect agents-base idle agents
	DrainNS   int64        `json:"drain_ns"`   // then until every idle agent's ping came back
	LeaveNS   int64        `json:"leave_ns"`   // from stopping the idle agents until the platform let go of them
	Mem       [3]mark      `json:"mem"`        // baseline, large, baseline again
	Stages    []*idleStage `json:"stages"`
}

func (c *idleCell) perAgent(f func(m mark) float64) float64 {
	return (f(c.Mem[1]) - f(c.Mem[0])) / float64(c.Agents-c.Base)
}

// restartCell is one SIGKILL and restart of the platform under a fleet of
// connected agents.
type restartCell struct {
	Run        int      `json:"run"`
	Agents     int      `json:"agents"`
	PlatformNS int64    `json:"platform_ns"` // from the kill until the new platform listens
	Back       backLine `json:"back"`
}

type scaleReport struct {
	Started  time.Time      `json:"started"`
	Machine  string         `json:"machine"`
	Options  string         `json:"options"`
	Conns    []*connCell    `json:"conns"`
	Idle     []*idleCell    `json:"idle"`
	Restarts []*restartCell `json:"restarts"`
	Heap     *heapRep       `json:"heap,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

func orchestrateScale(args []string) error {
	o, err := parseScaleOptions(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	home, ring, cleanup, err := newHome(map[string]int{idleGroup: o.idle, fleetGroup: o.fleet})
	if err != nil {
		return err
	}
	defer cleanup()
	rep := &scaleReport{Started: time.Now().UTC(), Machine: machine(), Options: strings.Join(args, " ")}
	fmt.Printf("busbench scale: %s; %v per window (+%v warm-up), %d run(s)\n", rep.Machine, o.duration, o.warmup, o.runs)
	common := []string{"-dir", home, "-seed", ring.String(), "-duration", o.duration.String(), "-warmup", o.warmup.String()}
	for run := range o.runs {
		if slices.Contains(o.cells, "conns") {
			for _, k := range o.parallel {
				for _, s := range o.stacks {
					c, err := runConns(ctx, o, home, common, s, k, run)
					if err != nil {
						return fmt.Errorf("connections, %s, %d at once: %w", s, k, err)
					}
					fmt.Fprintf(os.Stderr, "  run %d: %-8s %d dialer(s): %6.0f connections/s, p50 %s, p99 %s\n",
						run, s, k, c.rate(), fmtDur(c.Dialer.P50NS), fmtDur(c.Dialer.P99NS))
					rep.Conns = append(rep.Conns, c)
				}
			}
		}
		if slices.Contains(o.cells, "idle") {
			heap := ""
			if o.heap && run == 0 {
				heap = filepath.Join(home, "platform.heap.pprof")
			}
			c, err := runIdle(ctx, o, home, common, run, heap)
			if err != nil {
				return fmt.Errorf("idle agents: %w", err)
			}
			fmt.Fprintf(os.Stderr, "  run %d: %d idle agents connected in %v (+%v until all pinged), left in %v; platform RSS/agent %s, heap/agent %s\n", run, c.Agents-c.Base,
				time.Duration(c.ConnectNS).Round(time.Millisecond), time.Duration(c.DrainNS).Round(time.Millisecond), time.Duration(c.LeaveNS).Round(time.Millisecond),
				fmtBytes(c.perAgent(rssOf)), fmtBytes(c.perAgent(heapOf)))
			for _, s := range c.Stages {
				fmt.Fprintf(os.Stderr, "  run %d: %5d agents, %2d in flight: %6.0f calls/s, p50 %s\n", run, s.Agents, s.Inflight, s.rate(), fmtDur(s.Caller.P50NS))
			}
			rep.Idle = append(rep.Idle, c)
			if heap != "" {
				if rep.Heap, err = analyzeHeap(ctx, heap, c.Agents-c.Base); err != nil {
					rep.Warnings = append(rep.Warnings, "heap profile: "+err.Error())
				}
			}
		}
		if slices.Contains(o.cells, "restart") {
			c, err := runRestart(ctx, o, home, common, run)
			if err != nil {
				return fmt.Errorf("restart: %w", err)
			}
			fmt.Fprintf(os.Stderr, "  run %d: restart with %d agents: platform listening after %v, all back and serving after %v\n",
				run, c.Agents, time.Duration(c.PlatformNS).Round(time.Millisecond), time.Duration(slices.Max(c.Back.ServedNS)).Round(time.Millisecond))
			rep.Restarts = append(rep.Restarts, c)
		}
	}
	printScaleReport(os.Stdout, o, rep)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		return os.WriteFile(o.jsonOut, b, 0o644)
	}
	return nil
}

func rssOf(m mark) float64  { return float64(m.RSS) }
func heapOf(m mark) float64 { return float64(m.HeapInuse) }

// runConns measures one window of new connections of k dialers.
func runConns(ctx context.Context, o *scaleOptions, home string, common []string, stack string, k, run int) (*connCell, error) {
	g := &group{ctx: ctx, verbose: o.verbose}
	defer g.kill()
	prof := func(role string, args ...string) []string {
		if o.profileDir == "" {
			return args
		}
		return append(args, "-cpuprofile", filepath.Join(o.profileDir, fmt.Sprintf("%s-%s-%d-%d.pprof", stack, role, k, run)))
	}
	broker, kv, err := g.start("broker", time.Minute, prof("broker", "-stack", stack, "-dir", home)...)
	if err != nil {
		return nil, err
	}
	dialer, _, err := g.start("caller", time.Minute, prof("dialer", append(slices.Clip(common), "-stack", stack, "-addr", kv["addr"], "-key", kv["key"],
		"-op", "connect", "-inflight", strconv.Itoa(k))...)...)
	if err != nil {
		return nil, err
	}
	if _, err := dialer.expect("warm", time.Minute); err != nil {
		return nil, err
	}
	c := &connCell{Stack: stack, Parallel: k, Run: run}
	b0, err := broker.mark(false)
	if err != nil {
		return nil, err
	}
	if o.profileDir != "" {
		if _, err := broker.command("prof start", "prof started", time.Minute); err != nil {
			return nil, err
		}
	}
	if c.Dialer, err = window(dialer, o.duration); err != nil {
		return nil, err
	}
	if o.profileDir != "" {
		if _, err := broker.command("prof stop", "prof stopped", time.Minute); err != nil {
			return nil, err
		}
	}
	b1, err := broker.mark(false)
	if err != nil {
		return nil, err
	}
	c.Broker = diff(b0, b1)
	if c.Dialer.Errors > 0 {
		return nil, fmt.Errorf("%d connections failed, first: %s", c.Dialer.Errors, c.Dialer.FirstErr)
	}
	return c, g.stop(dialer, broker)
}

// runIdle measures the platform with o.base agents connected, with
// o.idle, and with o.base again: memory (after a collection) at each, and
// a routing window of each caller at each.
func runIdle(ctx context.Context, o *scaleOptions, home string, common []string, run int, heapprofile string) (*idleCell, error) {
	g := &group{ctx: ctx, verbose: o.verbose}
	defer g.kill()
	var prof []string
	if o.profileDir != "" {
		prof = []string{"-cpuprofile", filepath.Join(o.profileDir, fmt.Sprintf("idle-connect-broker-%d.pprof", run))}
	}
	broker, kv, err := g.start("broker", time.Minute, append([]string{"-stack", "capbus", "-dir", home}, prof...)...)
	if err != nil {
		return nil, err
	}
	common = append(slices.Clip(common), "-stack", "capbus", "-addr", kv["addr"], "-key", kv["key"])
	callee, _, err := g.start("callee", time.Minute, common...)
	if err != nil {
		return nil, err
	}
	var callers []*proc
	for i, k := range o.inflight {
		c, _, err := g.start("caller", time.Minute, append(slices.Clip(common), "-inflight", strconv.Itoa(k), "-caller-n", strconv.Itoa(i))...)
		if err != nil {
			return nil, err
		}
		if _, err := c.expect("warm", time.Minute); err != nil {
			return nil, err
		}
		callers = append(callers, c)
	}
	small := o.base - 1 - len(callers)
	few, _, err := g.start("idle", 2*time.Minute, append(slices.Clip(common), "-n", strconv.Itoa(small), "-first", "0")...)
	if err != nil {
		return nil, err
	}
	cell := &idleCell{Run: run, Base: o.base, Agents: o.idle}
	var many *proc
	stage := func(order, agents int) error {
		for i, k := range o.inflight {
			s := &idleStage{Agents: agents, Inflight: k, Order: order}
			b0, err := broker.mark(false)
			if err != nil {
				return err
			}
			var i0 mark
			if many != nil {
				if i0, err = many.mark(false); err != nil {
					return err
				}
			}
			if s.Caller, err = window(callers[i], o.duration); err != nil {
				return err
			}
			b1, err := broker.mark(false)
			if err != nil {
				return err
			}
			s.Broker = diff(b0, b1)
			if many != nil {
				i1, err := many.mark(false)
				if err != nil {
					return err
				}
				s.Idle = diff(i0, i1)
			}
			if s.Caller.Errors > 0 {
				return fmt.Errorf("%d agents, %d in flight: %d calls failed, first: %s", agents, k, s.Caller.Errors, s.Caller.FirstErr)
			}
			cell.Stages = append(cell.Stages, s)
		}
		return nil
	}
	if _, err := few.command("ping", "pinged", time.Minute); err != nil {
		return nil, err
	}
	if cell.Mem[0], err = broker.mark(true); err != nil {
		return nil, err
	}
	if err := stage(0, o.base); err != nil {
		return nil, err
	}
	if o.profileDir != "" { // the platform while the idle agents connect
		if _, err := broker.command("prof start", "prof started", time.Minute); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	// Each arrival is broadcast to every agent connected (peerlist "add"):
	// with thousands connected, a hello waits behind those broadcasts for
	// longer than the agent's default connect timeout (10 s), and an agent
	// that gives up and retries can lose its identity to its own stale
	// attempt; the idle agents wait as long as the cell does.
	many, _, err = g.start("idle", o.connectTimeout, append(slices.Clip(common), "-n", strconv.Itoa(o.idle-o.base), "-first", strconv.Itoa(small),
		"-connect-timeout", o.connectTimeout.String())...)
	if err != nil {
		return nil, err
	}
	cell.ConnectNS = int64(time.Since(t0))
	// What the platform queued to the agents while they arrived (one
	// peerlist "add" per arrival to every agent connected) is delivered
	// before the memory is read.
	for _, p := range []*proc{few, many} {
		if _, err := p.command("ping", "pinged", o.connectTimeout); err != nil {
			return nil, err
		}
	}
	cell.DrainNS = int64(time.Since(t0)) - cell.ConnectNS
	if o.profileDir != "" {
		if _, err := broker.command("prof stop", "prof stopped", time.Minute); err != nil {
			return nil, err
		}
	}
	if cell.Mem[1], err = broker.mark(true); err != nil {
		return nil, err
	}
	if heapprofile != "" {
		if _, err := broker.command("heap "+heapprofile, "heap written", time.Minute); err != nil {
			return nil, err
		}
	}
	if err := stage(1, o.idle); err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := g.stop(many); err != nil {
		return nil, err
	}
	many = nil
	// The agents are gone when their process is; the platform then closes
	// their connections. Measure the baseline again once it has: its
	// goroutines (two per connection) are back to the first baseline's.
	for {
		m, err := broker.mark(false)
		if err != nil {
			return nil, err
		}
		if m.Goroutines <= cell.Mem[0].Goroutines+4 {
			break
		}
		if time.Since(t1) > o.connectTimeout {
			return nil, fmt.Errorf("the platform still has %d goroutines (%d before the idle agents) %v after they left", m.Goroutines, cell.Mem[0].Goroutines, o.connectTimeout)
		}
		time.Sleep(50 * time.Millisecond) // polling the platform's counters: the honest way here
	}
	cell.LeaveNS = int64(time.Since(t1))
	if err := stage(2, o.base); err != nil {
		return nil, err
	}
	if cell.Mem[2], err = broker.mark(true); err != nil {
		return nil, err
	}
	if err := g.stop(append(callers, few, callee, broker)...); err != nil {
		return nil, err
	}
	return cell, nil
}

// runRestart connects a fleet, kills the platform with SIGKILL once every
// agent's session has lasted the SDK's longest backoff, starts it again
// on the same address with the same keystore and auth.json, and waits
// until every agent is back and serving.
func runRestart(ctx context.Context, o *scaleOptions, home string, common []string, run int) (*restartCell, error) {
	g := &group{ctx: ctx, verbose: o.verbose}
	defer g.kill()
	broker, kv, err := g.start("broker", time.Minute, "-stack", "capbus", "-dir", home)
	if err != nil {
		return nil, err
	}
	addr := kv["addr"]
	fleet, _, err := g.start("fleet", 5*time.Minute, append(slices.Clip(common), "-stack", "capbus", "-addr", addr, "-key", kv["key"],
		"-n", strconv.Itoa(o.fleet))...)
	if err != nil {
		return nil, err
	}
	if _, err := fleet.command("settle", "settled", time.Minute); err != nil {
		return nil, err
	}
	c := &restartCell{Run: run, Agents: o.fleet}
	kill := time.Now()
	broker.sigkill()
	args := []string{"-stack", "capbus", "-dir", home, "-listen", addr, "-max-pending-handshakes", strconv.Itoa(o.maxPending)}
	if o.profileDir != "" {
		args = append(args, "-cpuprofile", filepath.Join(o.profileDir, fmt.Sprintf("restart-broker-%d.pprof", run)))
	}
	if broker, _, err = g.start("broker", time.Minute, args...); err != nil {
		return nil, err
	}
	c.PlatformNS = int64(time.Since(kill))
	if o.profileDir != "" { // the new platform until every agent is back
		if _, err := broker.command("prof start", "prof started", time.Minute); err != nil {
			return nil, err
		}
	}
	line, err := fleet.command("back "+strconv.FormatInt(kill.UnixNano(), 10), "back ", 2*time.Minute)
	if err != nil {
		return nil, err
	}
	if o.profileDir != "" {
		if _, err := broker.command("prof stop", "prof stopped", time.Minute); err != nil {
			return nil, err
		}
	}
	if err := json.Unmarshal([]byte(line), &c.Back); err != nil {
		return nil, err
	}
	return c, g.stop(fleet, broker)
}

// pct returns the q-quantile of sorted v.
func pct(v []int64, q float64) int64 {
	if len(v) == 0 {
		return 0
	}
	return v[min(len(v)-1, int(q*float64(len(v))))]
}

func printScaleReport(w io.Writer, o *scaleOptions, rep *scaleReport) {
	if len(rep.Conns) > 0 {
		fmt.Fprintf(w, "\nNew connections: each one connects, says hello and is welcomed (capbus: CURVE handshake + VIP hello; NATS: TLS\n")
		fmt.Fprintf(w, "handshake if any + CONNECT/PING), makes one round trip to the broker, and closes. Medians of %d run(s), %v windows.\n\n", o.runs, o.duration)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "dialers\tstack\tconnections/s\tvs nats-tls\tvs nats\tp50\tp99\tCPU/connection broker\tdialer\t")
		for _, k := range o.parallel {
			for _, s := range o.stacks {
				var rate, p50, p99, cb, cd []float64
				for _, c := range rep.Conns {
					if c.Stack == s && c.Parallel == k {
						rate = append(rate, c.rate())
						p50 = append(p50, float64(c.Dialer.P50NS))
						p99 = append(p99, float64(c.Dialer.P99NS))
						n := float64(c.Dialer.Calls)
						cb = append(cb, float64(c.Broker.UserNS+c.Broker.SysNS)/n)
						cd = append(cd, float64(c.Dialer.UserNS+c.Dialer.SysNS)/n)
					}
				}
				if len(rate) == 0 {
					continue
				}
				vs := func(other string) string {
					rs := connRatios(rep.Conns, k, s, other)
					if len(rs) == 0 {
						return "-"
					}
					return fmt.Sprintf("%.2fx", median(rs))
				}
				fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", k, s, median(rate), vs("nats-tls"), vs("nats"),
					fmtDur(int64(median(p50))), fmtDur(int64(median(p99))), fmtDur(int64(median(cb))), fmtDur(int64(median(cd))))
			}
		}
		_ = tw.Flush()
	}
	if len(rep.Idle) > 0 {
		fmt.Fprintf(w, "\nIdle agents: the platform with %d agents connected, then %d, then %d again (same platform process); memory after a\n", o.base, o.idle, o.base)
		fmt.Fprintf(w, "collection, per idle agent = difference / %d. Medians of %d run(s).\n\n", o.idle-o.base, o.runs)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "platform RSS/agent\theap/agent\tgoroutines/agent\tRSS at base\tat large\tat base again\tconnect time\t")
		var rss, heap, gor, r0, r1, r2, ct []float64
		for _, c := range rep.Idle {
			rss = append(rss, c.perAgent(rssOf))
			heap = append(heap, c.perAgent(heapOf))
			gor = append(gor, c.perAgent(func(m mark) float64 { return float64(m.Goroutines) }))
			r0 = append(r0, float64(c.Mem[0].RSS))
			r1 = append(r1, float64(c.Mem[1].RSS))
			r2 = append(r2, float64(c.Mem[2].RSS))
			ct = append(ct, float64(c.ConnectNS))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%s\t%s\t%s\t%v\t\n", fmtBytes(median(rss)), fmtBytes(median(heap)), median(gor), fmtBytes(median(r0)),
			fmtBytes(median(r1)), fmtBytes(median(r2)), time.Duration(median(ct)).Round(time.Millisecond))
		_ = tw.Flush()
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "in flight\tagents\tcalls/s\tp50\tp99\tplatform CPU/call\tidle agents' process CPU\t")
		for _, k := range o.inflight {
			for order, n := range []int{o.base, o.idle, o.base} {
				var rate, p50, p99, cpu, icpu []float64
				for _, c := range rep.Idle {
					for _, s := range c.Stages {
						if s.Inflight == k && s.Order == order {
							rate = append(rate, s.rate())
							p50 = append(p50, float64(s.Caller.P50NS))
							p99 = append(p99, float64(s.Caller.P99NS))
							cpu = append(cpu, float64(s.Broker.UserNS+s.Broker.SysNS)/float64(s.Caller.Calls))
							icpu = append(icpu, float64(s.Idle.UserNS+s.Idle.SysNS)/float64(s.Caller.WindowNS))
						}
					}
				}
				if len(rate) > 0 {
					fmt.Fprintf(tw, "%d\t%d\t%.0f\t%s\t%s\t%s\t%.1f%%\t\n", k, n, median(rate), fmtDur(int64(median(p50))), fmtDur(int64(median(p99))),
						fmtDur(int64(median(cpu))), 100*median(icpu))
				}
			}
		}
		_ = tw.Flush()
	}
	if h := rep.Heap; h != nil {
		fmt.Fprintf(w, "\nlive heap of the platform with %d idle agents (heap profile, in-use space by allocation site, %s in all):\n", h.Idle, fmtBytes(float64(h.TotalB)))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "flat%\tper idle agent\tallocated in\t")
		for _, r := range h.Top {
			fmt.Fprintf(tw, "%.1f%%\t%s\t%s\t\n", r.FlatPct, fmtBytes(r.PerAgent), shortName(r.Name))
		}
		_ = tw.Flush()
	}
	if len(rep.Restarts) > 0 {
		fmt.Fprintf(w, "\nRestart: %d connected agents, the platform killed (SIGKILL) and started again on the same address; times from the kill.\n", o.fleet)
		fmt.Fprintf(w, "back = welcomed again; serving = its call to itself through the platform returned. One row per restart.\n\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "run\tplatform listening\tback p50\tp90\tp99\tall back\tserving p50\tp99\tall serving\tfailed attempts (refused/busy/other)\tmost by one agent\tflapped\t")
		for _, c := range rep.Restarts {
			b := c.Back
			d := func(ns int64) string { return time.Duration(ns).Round(time.Millisecond).String() }
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d (%d/%d/%d)\t%d\t%d\t\n", c.Run, d(c.PlatformNS), d(pct(b.WelcomeNS, .5)), d(pct(b.WelcomeNS, .9)),
				d(pct(b.WelcomeNS, .99)), d(slices.Max(b.WelcomeNS)), d(pct(b.ServedNS, .5)), d(pct(b.ServedNS, .99)), d(slices.Max(b.ServedNS)),
				b.Failed, b.Refused, b.Busy, b.Other, b.MaxFailed, b.Flapped)
		}
		_ = tw.Flush()
		for _, c := range rep.Restarts {
			for e, n := range c.Back.OtherErrors {
				fmt.Fprintf(w, "  run %d, other failures (the latest of %d agents): %s\n", c.Run, n, e)
			}
		}
	}

	fmt.Fprintf(w, "\ntargets:\n")
	for _, k := range o.parallel {
		if rs := connRatios(rep.Conns, k, "capbus", "nats-tls"); len(rs) > 0 {
			fmt.Fprintf(w, "  %-50s %6.2fx  (no number set)  [per run: %s]\n", fmt.Sprintf("new connections/s, capbus vs NATS-TLS, %d dialer(s)", k), median(rs), fmtRatios(rs))
		}
	}
	if len(rep.Idle) > 0 {
		var rss []float64
		for _, c := range rep.Idle {
			rss = append(rss, c.perAgent(rssOf))
		}
		m := median(rss)
		fmt.Fprintf(w, "  %-50s %s  (target < 48 KiB)  %s\n", fmt.Sprintf("platform RSS per idle agent at %d agents", o.idle), fmtBytes(m), verdict(m < 48<<10))
		for _, k := range o.inflight {
			var rs []float64
			for _, c := range rep.Idle {
				var r [3]float64
				for _, s := range c.Stages {
					if s.Inflight == k {
						r[s.Order] = s.rate()
					}
				}
				if r[0] > 0 && r[2] > 0 {
					rs = append(rs, r[1]/((r[0]+r[2])/2))
				}
			}
			if len(rs) > 0 {
				m := median(rs)
				fmt.Fprintf(w, "  %-50s %6.2fx  (flat: >= 0.90x) %s  [per run: %s]\n", fmt.Sprintf("routing, %d vs %d agents, %d in flight", o.idle, o.base, k), m, verdict(m >= 0.9), fmtRatios(rs))
			}
		}
	}
	if len(rep.Restarts) > 0 {
		var all []float64
		for _, c := range rep.Restarts {
			all = append(all, float64(slices.Max(c.Back.ServedNS)))
		}
		m := time.Duration(median(all))
		fmt.Fprintf(w, "  %-50s %8v  (target < 10s)   %s\n", fmt.Sprintf("restart: all %d agents back and serving", o.fleet), m.Round(time.Millisecond), verdict(m < 10*time.Second))
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintln(w, "warning: "+wn)
	}
}

// connRatios returns, per run, connections/s of stack a / of stack b with
// k dialers.
func connRatios(cells []*connCell, k int, a, b string) []float64 {
	var out []float64
	for _, x := range cells {
		if x.Stack != a || x.Parallel != k {
			continue
		}
		for _, y := range cells {
			if y.Stack == b && y.Parallel == k && y.Run == x.Run && y.rate() > 0 {
				out = append(out, x.rate()/y.rate())
			}
		}
	}
	return out
}
