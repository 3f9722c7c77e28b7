package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ---- profile of the platform ----

// profileRep is what the CPU profile of the platform process says.
type profileRep struct {
	Role      string       `json:"role"`
	File      string       `json:"file,omitempty"`
	Calls     int64        `json:"calls"`
	Rate      float64      `json:"rate"`
	TotalNS   int64        `json:"total_ns"` // sampled CPU time of the platform over the window
	Top       []profileRow `json:"top"`      // top 10 by cumulative time
	TopFlat   []profileRow `json:"top_flat"` // top 10 by own time
	Policy    []profileRow `json:"policy"`   // the policy check's functions
	PolicyPct float64      `json:"policy_pct"`
	// Allocation sites of the window (sampled allocs profile, difference
	// of the profiles at the window's start and end), objects per call.
	Allocs    []profileRow `json:"allocs,omitempty"`
	DecidePct float64      `json:"decide_pct"`
}

type profileRow struct {
	Name    string  `json:"name"`
	FlatNS  int64   `json:"flat_ns"`
	CumNS   int64   `json:"cum_ns"`
	CumPct  float64 `json:"cum_pct"`
	PerCall float64 `json:"per_call_ns"`
}

// The platform's policy check per call: the caller's compiled subject, the
// method's compiled requirement, and the decision (platform/rpc.go, call).
var policyFuncs = []string{
	"auth.(*Policy).Decide",
	"platform.(*peer).subject",
	"platform.(*export).requirement",
}

// analyzeProfile reads the profile with `go tool pprof -top -cum`.
func analyzeProfile(ctx context.Context, file string, c *cell) (*profileRep, error) {
	goBin, err := goTool()
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, goBin, "tool", "pprof", "-top", "-cum",
		"-nodefraction=0", "-edgefraction=0", "-nodecount=100000", file).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %v: %s", err, out)
	}
	rows, total, err := parsePprofTop(string(out))
	if err != nil {
		return nil, err
	}
	rep := &profileRep{Calls: c.Caller.Calls, Rate: c.rate(), TotalNS: total}
	per := func(r profileRow) profileRow {
		r.PerCall = c.perCall(float64(r.CumNS))
		return r
	}
	for _, r := range rows {
		if len(rep.Top) == 10 {
			break
		}
		rep.Top = append(rep.Top, per(r))
	}
	flat := slices.Clone(rows)
	slices.SortStableFunc(flat, func(a, b profileRow) int { return int(b.FlatNS - a.FlatNS) })
	for _, r := range flat[:min(10, len(flat))] {
		rep.TopFlat = append(rep.TopFlat, per(r))
	}
	rep.Allocs = allocSites(ctx, goBin, file, c)
	for _, want := range policyFuncs {
		row := profileRow{Name: want}
		for _, r := range rows {
			if strings.HasSuffix(r.Name, "/"+want) || r.Name == want {
				row = r
				break
			}
		}
		rep.Policy = append(rep.Policy, per(row))
		rep.PolicyPct += row.CumPct
		if want == policyFuncs[0] {
			rep.DecidePct = row.CumPct
		}
	}
	return rep, nil
}

// allocSites reads the objects allocated over the window by allocation site
// (top 8, flat). Errors leave it empty.
func allocSites(ctx context.Context, goBin, file string, c *cell) []profileRow {
	out, err := exec.CommandContext(ctx, goBin, "tool", "pprof", "-top", "-sample_index=alloc_objects",
		"-nodecount=8", "-diff_base", file+".allocs0", file+".allocs1").CombinedOutput()
	if err != nil {
		return nil
	}
	var rows []profileRow
	table := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && f[0] == "flat" && f[1] == "flat%":
			table = true
		case table && len(f) >= 6:
			n, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				continue
			}
			rows = append(rows, profileRow{Name: strings.Join(f[5:], " "), PerCall: c.perCall(n)})
		}
	}
	return rows
}

// parsePprofTop parses the rows of `go tool pprof -top` and the total
// sampled time.
func parsePprofTop(s string) ([]profileRow, int64, error) {
	var (
		rows  []profileRow
		total int64
		table bool
	)
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "Showing nodes accounting for"):
			// "... for 4.20s, 100% of 4.20s total"
			if i := slices.Index(f, "of"); i >= 0 && i+1 < len(f) {
				d, err := time.ParseDuration(f[i+1])
				if err == nil {
					total = int64(d)
				}
			}
		case len(f) >= 5 && f[0] == "flat" && f[1] == "flat%":
			table = true
		case table && len(f) >= 6:
			flat, err1 := time.ParseDuration(f[0])
			cum, err2 := time.ParseDuration(f[3])
			pct, err3 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			name := strings.TrimSuffix(strings.Join(f[5:], " "), " (inline)")
			rows = append(rows, profileRow{Name: name, FlatNS: int64(flat), CumNS: int64(cum), CumPct: pct})
		}
	}
	if total == 0 || len(rows) == 0 {
		return nil, 0, fmt.Errorf("no samples in the profile")
	}
	return rows, total, nil
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no go command on PATH")
}

// ---- go test benchmarks ----

// goBenches are the in-package benchmarks that tell allocations per call.
var goBenches = []struct{ pkg, pattern string }{
	{"./platform", "^BenchmarkRouter_AuthorizeAndRouteCall$|^BenchmarkPlatform_CallRoundTrip$"},
	{"./auth", "^BenchmarkDecide$"},
	{"./agent", "^BenchmarkCall_SDKOverhead$"},
}

func goBench(ctx context.Context, repo string) ([]string, error) {
	goBin, err := goTool()
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, b := range goBenches {
		cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-bench", b.pattern, "-benchmem", "-count", "1", b.pkg)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			return lines, fmt.Errorf("%s: %v: %s", b.pkg, err, lastLines(out, 10))
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "Benchmark") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return lines, nil
}

func lastLines(b []byte, n int) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// ---- the table ----

// summary is the median over runs of one (stack, inflight, agents) cell.
type summary struct {
	stack                   string
	inflight, agents, runs  int
	rate, p50, p99          float64
	cpuCaller, cpuBroker    float64 // ns per call
	cpuCallee               float64
	allocsBroker, allocsAll float64 // per call
	sysBroker, sysAll       float64 // read+write system calls per call
	memPerAgent, heapPerAg  float64 // bytes per idle agent (scaling cells)
	goroutinesPerAgent      float64
	idleCPU                 float64 // the idle agents' process, share of one core over the window
}

func summarize(cells []*cell) []*summary {
	type key struct {
		s    string
		k, n int
	}
	groups := map[key][]*cell{}
	var order []key
	for _, c := range cells {
		k := key{c.Stack, c.Inflight, c.Agents}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], c)
	}
	var out []*summary
	for _, k := range order {
		cs := groups[k]
		med := func(f func(c *cell) float64) float64 {
			v := make([]float64, len(cs))
			for i, c := range cs {
				v[i] = f(c)
			}
			slices.Sort(v)
			if len(v)%2 == 1 {
				return v[len(v)/2]
			}
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		s := &summary{stack: k.s, inflight: k.k, agents: k.n, runs: len(cs)}
		s.rate = med(func(c *cell) float64 { return c.rate() })
		s.p50 = med(func(c *cell) float64 { return float64(c.Caller.P50NS) })
		s.p99 = med(func(c *cell) float64 { return float64(c.Caller.P99NS) })
		s.cpuCaller = med(func(c *cell) float64 { return c.perCall(float64(c.Caller.UserNS + c.Caller.SysNS)) })
		s.cpuBroker = med(func(c *cell) float64 { return c.perCall(float64(c.Broker.UserNS + c.Broker.SysNS)) })
		s.cpuCallee = med(func(c *cell) float64 { return c.perCall(float64(c.Callee.UserNS + c.Callee.SysNS)) })
		s.allocsBroker = med(func(c *cell) float64 { return c.perCall(float64(c.Broker.Mallocs)) })
		s.allocsAll = med(func(c *cell) float64 {
			return c.perCall(float64(c.Broker.Mallocs + c.Callee.Mallocs + c.Caller.Mallocs))
		})
		s.sysBroker = med(func(c *cell) float64 { return c.perCall(float64(c.Broker.Syscr + c.Broker.Syscw)) })
		s.sysAll = med(func(c *cell) float64 {
			return c.perCall(float64(c.Broker.Syscr + c.Broker.Syscw + c.Callee.Syscr + c.Callee.Syscw + c.Caller.Syscr + c.Caller.Syscw))
		})
		if cs[0].MemBefore != nil {
			idle := float64(k.n - 2)
			s.memPerAgent = med(func(c *cell) float64 { return float64(c.MemAfter.RSS-c.MemBefore.RSS) / idle })
			s.heapPerAg = med(func(c *cell) float64 {
				return (float64(c.MemAfter.HeapInuse) - float64(c.MemBefore.HeapInuse)) / idle
			})
			s.idleCPU = med(func(c *cell) float64 {
				if c.Idle == nil || c.Caller.WindowNS == 0 {
					return 0
				}
				return float64(c.Idle.UserNS+c.Idle.SysNS) / float64(c.Caller.WindowNS)
			})
			s.goroutinesPerAgent = med(func(c *cell) float64 {
				return float64(c.MemAfter.Goroutines-c.MemBefore.Goroutines) / idle
			})
		}
		out = append(out, s)
	}
	return out
}

func find(ss []*summary, stack string, inflight, agents int) *summary {
	for _, s := range ss {
		if s.stack == stack && s.inflight == inflight && s.agents == agents {
			return s
		}
	}
	return nil
}

func printReport(w io.Writer, o *options, rep *report) {
	ss := summarize(rep.Cells)
	fmt.Fprintf(w, "\nRPC round trips, %d-byte payload, caller -> broker -> callee -> broker -> caller, 3 processes on 127.0.0.1\n", payloadSize)
	fmt.Fprintf(w, "(%v per cell, medians of %d run(s); CPU = user+sys of each process over the window / calls)\n\n", o.duration, o.runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if find(ss, "capbus", 0, 0) == nil && !slices.ContainsFunc(ss, func(s *summary) bool { return s.agents == 2 }) {
		tw = tabwriter.NewWriter(io.Discard, 0, 0, 2, ' ', 0)
	}
	fmt.Fprintln(tw, "in flight\tstack\tcalls/s\tvs nats\tvs zmq4\tp50\tp99\tCPU/call caller\tbroker\tcallee\ttotal\tallocs/call broker\tall 3\tr+w syscalls/call broker\tall 3\t")
	for _, s := range ss {
		if s.agents != 2 {
			continue
		}
		vs := func(other string) string {
			if o := find(ss, other, s.inflight, 2); o != nil && o.rate > 0 {
				return fmt.Sprintf("%.2fx", s.rate/o.rate)
			}
			return "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", s.inflight, s.stack, s.rate, vs("nats"), vs("zmq4"),
			fmtDur(int64(s.p50)), fmtDur(int64(s.p99)), fmtDur(int64(s.cpuCaller)), fmtDur(int64(s.cpuBroker)), fmtDur(int64(s.cpuCallee)),
			fmtDur(int64(s.cpuCaller+s.cpuBroker+s.cpuCallee)), s.allocsBroker, s.allocsAll, s.sysBroker, s.sysAll)
	}
	_ = tw.Flush()

	var scaling []*summary
	for _, s := range ss {
		if s.agents != 2 {
			scaling = append(scaling, s)
		}
	}
	if len(scaling) > 0 {
		fmt.Fprintf(w, "\ncapbus with idle agents connected (agents = all connected agents, caller and callee included)\n\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "agents\tin flight\tcalls/s\tp50\tp99\tCPU/call broker\tplatform RSS/idle agent\theap/idle agent\tgoroutines/idle agent\tidle agents' process CPU\t")
		for _, s := range scaling {
			fmt.Fprintf(tw, "%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f%%\t\n", s.agents, s.inflight, s.rate, fmtDur(int64(s.p50)), fmtDur(int64(s.p99)),
				fmtDur(int64(s.cpuBroker)), fmtBytes(s.memPerAgent), fmtBytes(s.heapPerAg), s.goroutinesPerAgent, 100*s.idleCPU)
		}
		_ = tw.Flush()
	}

	for _, p := range rep.Profiles {
		printProfile(w, p)
	}
	if h := rep.Heap; h != nil {
		fmt.Fprintf(w, "\nlive heap of the platform with %d idle agents (heap profile, in-use space by allocation site, %s in all):\n", h.Idle, fmtBytes(float64(h.TotalB)))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "flat%\tper idle agent\tallocated in\t")
		for _, r := range h.Top {
			fmt.Fprintf(tw, "%.1f%%\t%s\t%s\t\n", r.FlatPct, fmtBytes(r.PerAgent), shortName(r.Name))
		}
		_ = tw.Flush()
	}
	if len(rep.GoBench) > 0 {
		fmt.Fprintf(w, "\ngo test -bench (in-process; allocations per call at the platform):\n")
		for _, l := range rep.GoBench {
			fmt.Fprintln(w, "  "+l)
		}
	}

	fmt.Fprintf(w, "\ntargets:\n")
	for _, t := range targets(ss, rep) {
		fmt.Fprintln(w, "  "+t)
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintln(w, "warning: "+wn)
	}
}

// targets checks the targets against the medians.
func targets(ss []*summary, rep *report) []string {
	var out []string
	verdict := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "NOT MET"
	}
	ratio := func(what string, k int, other string, want float64) {
		a, b := find(ss, "capbus", k, 2), find(ss, other, k, 2)
		if a == nil || b == nil || b.rate == 0 {
			return
		}
		r := a.rate / b.rate
		out = append(out, fmt.Sprintf("%-44s %6.2fx  (target >= %.1fx)  %s", what, r, want, verdict(r >= want)))
	}
	ratio("capbus vs NATS Request, 64 in flight", 64, "nats", 1.0)
	ratio("capbus vs raw zmq4 relay, 64 in flight", 64, "zmq4", 5.0)
	ratio("capbus vs NATS Request, 1 outstanding", 1, "nats", 1.0)
	if p := brokerProfile(rep); p != nil {
		v := fmt.Sprintf("%6.2f%%", p.PolicyPct)
		if p.PolicyPct == 0 {
			v = fmt.Sprintf("<%.2f%%", p.resolution())
		}
		out = append(out, fmt.Sprintf("%-44s %7s  (target < 2%%)     %s  [profile of the platform; Decide alone %.2f%%]",
			"policy check share of platform CPU", v, verdict(p.PolicyPct < 2), p.DecidePct))
	}
	if s := find(ss, "capbus", 64, 2); s != nil && s.cpuBroker > 0 {
		if ns, ok := benchNS(rep.GoBench, "BenchmarkDecide/users=1000"); ok {
			pct := 100 * ns / s.cpuBroker
			out = append(out, fmt.Sprintf("%-44s %6.3f%%  (target < 2%%)     %s  [BenchmarkDecide %.1f ns / platform CPU per call %s]",
				"policy check share, computed", pct, verdict(pct < 2), ns, fmtDur(int64(s.cpuBroker))))
		}
		if ns, ok := benchNS(rep.GoBench, "BenchmarkRouter_AuthorizeAndRouteCall/agents=1000"); ok {
			out = append(out, fmt.Sprintf("%-44s %6.3f%%  [BenchmarkRouter_AuthorizeAndRouteCall %.1f ns, 2 per round trip]",
				"route+authorize+stamp+enqueue share", 100*2*ns/s.cpuBroker, ns))
		}
	}
	var agents []int
	for _, s := range ss {
		if s.agents != 2 && !slices.Contains(agents, s.agents) {
			agents = append(agents, s.agents)
		}
	}
	if len(agents) >= 2 {
		lo, hi := slices.Min(agents), slices.Max(agents)
		for _, s := range ss {
			if s.agents != lo {
				continue
			}
			if h := find(ss, "capbus", s.inflight, hi); h != nil && s.rate > 0 {
				r := h.rate / s.rate
				out = append(out, fmt.Sprintf("%-44s %6.2fx  (flat: >= 0.90x)  %s", fmt.Sprintf("routing, %d vs %d agents, %d in flight", hi, lo, s.inflight), r, verdict(r >= 0.9)))
			}
		}
		for _, s := range ss {
			if s.agents == hi && s.memPerAgent != 0 {
				out = append(out, fmt.Sprintf("%-44s %s  (target < 64 KiB)  %s", fmt.Sprintf("platform RSS per idle agent at %d agents", hi), fmtBytes(s.memPerAgent), verdict(s.memPerAgent < 64<<10)))
				break
			}
		}
	}
	if s := find(ss, "capbus", 64, 2); s != nil {
		out = append(out, fmt.Sprintf("%-44s %6.1f    (no target set; see go test -bench)", "allocations per call in the platform process", s.allocsBroker))
	}
	return out
}

func shortName(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

func fmtDur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d == 0:
		return "0"
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.2fus", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fus", float64(d)/1e3)
	default:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
}

func fmtBytes(b float64) string {
	switch {
	case b >= 1<<20 || b <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10 || b <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

// ---- heap of the platform with idle agents ----

// heapRep is where the platform's live memory is with idle agents connected.
type heapRep struct {
	Idle    int       `json:"idle"`
	TotalB  int64     `json:"total_bytes"`
	Top     []heapRow `json:"top"`
	Profile string    `json:"profile,omitempty"`
}

type heapRow struct {
	Name     string  `json:"name"`
	FlatB    int64   `json:"flat_bytes"`
	FlatPct  float64 `json:"flat_pct"`
	PerAgent float64 `json:"per_agent_bytes"`
}

// analyzeHeap reads the in-use space of the heap profile by allocation site.
func analyzeHeap(ctx context.Context, file string, idle int) (*heapRep, error) {
	goBin, err := goTool()
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, goBin, "tool", "pprof", "-top", "-sample_index=inuse_space",
		"-nodefraction=0", "-nodecount=12", file).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %v: %s", err, out)
	}
	rep := &heapRep{Idle: idle}
	table := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "Showing nodes accounting for"):
			if i := slices.Index(f, "of"); i >= 0 && i+1 < len(f) {
				rep.TotalB = parseSize(f[i+1])
			}
		case len(f) >= 5 && f[0] == "flat" && f[1] == "flat%":
			table = true
		case table && len(f) >= 6:
			pct, err := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
			if err != nil {
				continue
			}
			b := parseSize(f[0])
			rep.Top = append(rep.Top, heapRow{Name: strings.Join(f[5:], " "), FlatB: b, FlatPct: pct, PerAgent: float64(b) / float64(max(idle, 1))})
		}
	}
	if len(rep.Top) == 0 {
		return nil, fmt.Errorf("no rows in the heap profile")
	}
	return rep, nil
}

// parseSize parses pprof's sizes: "512B", "1.50kB", "3MB", "1GB".
func parseSize(s string) int64 {
	units := []struct {
		suffix string
		mult   float64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return int64(f * u.mult)
		}
	}
	return 0
}

func brokerProfile(rep *report) *profileRep {
	for _, p := range rep.Profiles {
		if p.Role == "broker" {
			return p
		}
	}
	return nil
}

// resolution is the share of one sample in the profile, in percent.
func (p *profileRep) resolution() float64 {
	return 100 * float64(time.Second/profileHz) / float64(p.TotalNS)
}

func printProfile(w io.Writer, p *profileRep) {
	what := map[string]string{"broker": "the platform process", "callee": "the callee agent", "caller": "the caller agent"}[p.Role]
	fmt.Fprintf(w, "\nCPU profile of %s, capbus 64 in flight (extra cell, %.0f calls/s, %d calls, %s sampled at %d Hz = %s/call)\n",
		what, p.Rate, p.Calls, time.Duration(p.TotalNS).Round(time.Millisecond), profileHz, fmtDur(int64(float64(p.TotalNS)/float64(max(p.Calls, 1)))))
	if p.File != "" {
		fmt.Fprintf(w, "(kept in %s)\n", p.File)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cum%\tcum/call\ttop 10 by cumulative time\t\tflat%\tflat/call\ttop 10 by own time\t")
	for i := range max(len(p.Top), len(p.TopFlat)) {
		var a, b profileRow
		if i < len(p.Top) {
			a = p.Top[i]
		}
		if i < len(p.TopFlat) {
			b = p.TopFlat[i]
		}
		fmt.Fprintf(tw, "%.1f%%\t%s\t%s\t\t%.1f%%\t%s\t%s\t\n", a.CumPct, fmtDur(int64(a.PerCall)), shortName(a.Name),
			100*float64(b.FlatNS)/float64(p.TotalNS), fmtDur(int64(float64(b.FlatNS)/float64(max(p.Calls, 1)))), shortName(b.Name))
	}
	_ = tw.Flush()
	if len(p.Allocs) > 0 {
		fmt.Fprintf(w, "allocations by site (sampled):")
		for _, r := range p.Allocs {
			fmt.Fprintf(w, " %s %.1f/call;", shortName(r.Name), r.PerCall)
		}
		fmt.Fprintln(w)
	}
	if p.Role != "broker" {
		return
	}
	fmt.Fprintf(w, "policy check in the platform (one sample = %.2f%%):\n", p.resolution())
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, r := range p.Policy {
		fmt.Fprintf(tw, "%.2f%%\t%s\t%s\t\n", r.CumPct, fmtDur(int64(r.PerCall)), shortName(r.Name))
	}
	_ = tw.Flush()
}

// benchNS finds the ns/op of a go test benchmark line whose name starts with
// name.
func benchNS(lines []string, name string) (float64, bool) {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		for i := 1; i+1 < len(f); i++ {
			if f[i+1] == "ns/op" {
				v, err := strconv.ParseFloat(f[i], 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}
