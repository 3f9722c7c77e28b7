package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

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
	fmt.Fprintln(tw, "in flight\tstack\tcalls/s\tvs nats\tvs nats-tls\tvs zmq4\tp50\tp99\tCPU/call caller\tbroker\tcallee\ttotal\tallocs/call broker\tall 3\tr+w syscalls/call broker\tall 3\t")
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
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", s.inflight, s.stack, s.rate, vs("nats"), vs("nats-tls"), vs("zmq4"),
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
		out = append(out, fmt.Sprintf("%-46s %6.2fx  (target >= %.1fx)  %s", what, r, want, verdict(r >= want)))
	}
	ratio("capbus vs NATS Request, 64 in flight", 64, "nats", 1.0)
	ratio("capbus vs raw zmq4 relay, 64 in flight", 64, "zmq4", 5.0)
	ratio("capbus vs NATS Request, 1 outstanding", 1, "nats", 1.0)
	info := func(what string, k int, other string) {
		a, b := find(ss, "capbus", k, 2), find(ss, other, k, 2)
		if a == nil || b == nil || b.rate == 0 {
			return
		}
		out = append(out, fmt.Sprintf("%-46s %6.2fx  (no target: an encrypted bus against an encrypted bus)", what, a.rate/b.rate))
	}
	info("capbus vs NATS Request with TLS, 64 in flight", 64, "nats-tls")
	info("capbus vs NATS Request with TLS, 1 outstanding", 1, "nats-tls")
	if p := brokerProfile(rep); p != nil {
		v, ok := fmt.Sprintf("%6.2f%%", p.PolicyPct), verdict(p.PolicyPct < 2)
		if p.PolicyPct == 0 { // not one sample: below the profile's resolution
			v = fmt.Sprintf("<%.2f%%", p.resolution())
			if p.resolution() >= 2 {
				ok = "UNRESOLVED (profile too short)"
			}
		}
		out = append(out, fmt.Sprintf("%-46s %7s  (target < 2%%)     %s  [profile of the platform; Decide alone %.2f%%]",
			"policy check share of platform CPU", v, ok, p.DecidePct))
	}
	if s := find(ss, "capbus", 64, 2); s != nil && s.cpuBroker > 0 {
		if ns, ok := benchNS(rep.GoBench, "BenchmarkDecide/users=1000"); ok {
			pct := 100 * ns / s.cpuBroker
			out = append(out, fmt.Sprintf("%-46s %6.3f%%  (target < 2%%)     %s  [BenchmarkDecide %.1f ns / platform CPU per call %s]",
				"policy check share, computed", pct, verdict(pct < 2), ns, fmtDur(int64(s.cpuBroker))))
		}
		if ns, ok := benchNS(rep.GoBench, "BenchmarkRouter_AuthorizeAndRouteCall/agents=1000"); ok {
			out = append(out, fmt.Sprintf("%-46s %6.3f%%  [BenchmarkRouter_AuthorizeAndRouteCall %.1f ns, 2 per round trip]",
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
				out = append(out, fmt.Sprintf("%-46s %6.2fx  (flat: >= 0.90x)  %s", fmt.Sprintf("routing, %d vs %d agents, %d in flight", hi, lo, s.inflight), r, verdict(r >= 0.9)))
			}
		}
		for _, s := range ss {
			if s.agents == hi && s.memPerAgent != 0 {
				out = append(out, fmt.Sprintf("%-46s %s  (target < 64 KiB)  %s", fmt.Sprintf("platform RSS per idle agent at %d agents", hi), fmtBytes(s.memPerAgent), verdict(s.memPerAgent < 64<<10)))
				break
			}
		}
	}
	if s := find(ss, "capbus", 64, 2); s != nil {
		out = append(out, fmt.Sprintf("%-46s %6.1f    (no target set; see go test -bench)", "allocations per call in the platform process", s.allocsBroker))
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
