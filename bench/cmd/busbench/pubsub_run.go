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

// busbench pubsub: publish latency with few and many subscriptions on the
// platform (capbus against itself), and fan-out from one publisher to many
// subscribers (capbus against NATS and NATS with TLS).

type pubsubOptions struct {
	runOptions
	sizes       []int // subscriptions on the platform in the latency cells
	loadConns   int
	fanout      int
	fanInflight int
	stacks      []string // fan-out contenders
	profileDir  string
}

func parsePubsubOptions(args []string) (*pubsubOptions, error) {
	o := &pubsubOptions{}
	fs := flag.NewFlagSet("busbench pubsub", flag.ContinueOnError)
	o.register(fs, "the tables show", 20*time.Minute)
	sizes := fs.String("subs", "10,32000", "latency cells: subscriptions on the platform (empty: skip)")
	fs.IntVar(&o.loadConns, "load-conns", 8, "latency cells: connections (each its own user) holding the subscriptions")
	fs.IntVar(&o.fanout, "fanout", 100, "fan-out cells: subscribers, one connection each (0: skip)")
	fs.IntVar(&o.fanInflight, "fan-inflight", 64, "fan-out cells: publishes in flight (one goroutine each)")
	stacks := fs.String("stacks", "capbus,nats,nats-tls", "fan-out contenders")
	fs.StringVar(&o.profileDir, "profile-dir", "", "fan-out cells: write CPU profiles of the window of broker, subscribers and publisher here (<stack>-<role>-<run>.pprof)")
	quick := fs.Bool("quick", false, "smoke run: short cells, 10 and 1,000 subscriptions, 10 subscribers")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *quick { // shorter defaults; flags given explicitly still win
		quickDefaults(fs, &o.duration, &o.warmup, map[string]func(){
			"subs":   func() { *sizes = "10,1000" },
			"fanout": func() { o.fanout = 10 },
		})
	}
	var err error
	if o.sizes, err = intList(*sizes); err != nil {
		return nil, fmt.Errorf("-subs: %w", err)
	}
	for _, n := range o.sizes {
		if n < 1 || o.loadConns < 1 || n-1 > 4096*o.loadConns {
			return nil, fmt.Errorf("-subs %d: between 1 and 1 + 4,096 per load connection (the platform's default limit)", n)
		}
	}
	o.stacks = splitList(*stacks)
	for _, s := range o.stacks {
		if s != "capbus" && s != "nats" && s != "nats-tls" {
			return nil, fmt.Errorf("unknown stack %q (capbus, nats, nats-tls)", s)
		}
	}
	o.runs = max(o.runs, 1)
	return o, nil
}

// latCell is one window of publishes, one at a time, with subs
// subscriptions on the platform, one of which matches.
type latCell struct {
	Run         int    `json:"run"`
	Subs        int    `json:"subs"`
	SubscribeMS int64  `json:"subscribe_ms"` // to reach Subs from the previous size
	Pub         result `json:"pub"`
	Broker      usage  `json:"broker"`
	// Delivered: messages the matching subscriber had when all publishes
	// so far were delivered (should be Pub.Total).
	Delivered int64 `json:"delivered"`
}

// fanCell is one window of fan-out: one publisher, Subscribers
// subscribers of its topic.
type fanCell struct {
	Stack       string `json:"stack"`
	Run         int    `json:"run"`
	Subscribers int    `json:"subscribers"`
	Inflight    int    `json:"inflight"`
	Pub         result `json:"pub"`
	Broker      usage  `json:"broker"`
	Subs        usage  `json:"subs"`
	// Messages the subscribers received over the window, by their clock.
	WindowN  int64 `json:"window_n"`
	WindowNS int64 `json:"window_ns"`
	// After the publisher stopped: messages expected (publishes x
	// subscribers) and received in all, and the subscribers' client
	// errors (capbus: each a message the agent read and dropped; NATS:
	// asynchronous errors such as slow consumer).
	Expected int64 `json:"expected"`
	Received int64 `json:"received"`
	Errors   int64 `json:"errors"`
}

func (c *fanCell) rate() float64 {
	if c.WindowNS == 0 {
		return 0
	}
	return float64(c.WindowN) / (float64(c.WindowNS) / 1e9)
}

type pubsubReport struct {
	Started time.Time  `json:"started"`
	Machine string     `json:"machine"`
	Options string     `json:"options"`
	Latency []*latCell `json:"latency"`
	Fanout  []*fanCell `json:"fanout"`
}

func orchestratePubsub(args []string) error {
	o, err := parsePubsubOptions(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	home, ring, cleanup, err := newHome(map[string]int{subGroup: max(o.fanout, 1+o.loadConns), pubGroup: 1})
	if err != nil {
		return err
	}
	defer cleanup()
	rep := &pubsubReport{Started: time.Now().UTC(), Machine: machine(), Options: strings.Join(args, " ")}
	fmt.Printf("busbench pubsub: %s; %v per cell (+%v warm-up), %d run(s)\n", rep.Machine, o.duration, o.warmup, o.runs)
	common := []string{"-dir", home, "-seed", ring.String(), "-duration", o.duration.String(), "-warmup", o.warmup.String()}
	for run := range o.runs {
		if len(o.sizes) > 0 {
			sizes := slices.Clone(o.sizes)
			if run%2 == 1 { // alternate the order: drift hits both sizes
				slices.Reverse(sizes)
			}
			cells, err := runLatency(ctx, o, home, common, sizes, run)
			if err != nil {
				return fmt.Errorf("publish latency: %w", err)
			}
			for _, c := range cells {
				fmt.Fprintf(os.Stderr, "  run %d: %6d subscriptions: %6.0f publishes/s, p50 %s, p99 %s\n",
					run, c.Subs, float64(c.Pub.Calls)/(float64(c.Pub.WindowNS)/1e9), fmtDur(c.Pub.P50NS), fmtDur(c.Pub.P99NS))
			}
			rep.Latency = append(rep.Latency, cells...)
		}
		if o.fanout > 0 {
			for _, s := range o.stacks {
				c, err := runFanout(ctx, o, home, common, s, run)
				if err != nil {
					return fmt.Errorf("fan-out, %s: %w", s, err)
				}
				fmt.Fprintf(os.Stderr, "  run %d: fan-out %-8s 1 -> %d: %9.0f delivered/s (%d of %d received)\n",
					run, s, c.Subscribers, c.rate(), c.Received, c.Expected)
				rep.Fanout = append(rep.Fanout, c)
			}
		}
	}
	printPubsubReport(os.Stdout, o, rep)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		return os.WriteFile(o.jsonOut, b, 0o644)
	}
	return nil
}

// runLatency measures, on one platform, a window of publishes for each
// number of subscriptions in sizes, in that order.
func runLatency(ctx context.Context, o *pubsubOptions, home string, common []string, sizes []int, run int) (cells []*latCell, err error) {
	g := &group{ctx: ctx, verbose: o.verbose}
	defer g.kill()
	broker, kv, err := g.start("broker", time.Minute, "-stack", "capbus", "-dir", home)
	if err != nil {
		return nil, err
	}
	common = append(slices.Clip(common), "-stack", "capbus", "-addr", kv["addr"], "-key", kv["key"])
	subs, _, err := g.start("subs", 2*time.Minute, append(slices.Clip(common), "-subs", "1", "-load-conns", strconv.Itoa(o.loadConns))...)
	if err != nil {
		return nil, err
	}
	pub, _, err := g.start("caller", time.Minute, append(slices.Clip(common), "-op", "publish", "-inflight", "1")...)
	if err != nil {
		return nil, err
	}
	if _, err := pub.expect("warm", time.Minute); err != nil {
		return nil, err
	}
	for _, n := range sizes {
		c := &latCell{Run: run, Subs: n}
		line, err := subs.command("subs "+strconv.Itoa(n), "subs ", 5*time.Minute)
		if err != nil {
			return nil, err
		}
		if f := strings.Fields(line); len(f) == 2 {
			c.SubscribeMS, _ = strconv.ParseInt(f[1], 10, 64)
		}
		b0, err := broker.mark(true)
		if err != nil {
			return nil, err
		}
		res, err := window(pub, o.duration)
		if err != nil {
			return nil, err
		}
		c.Pub = res
		b1, err := broker.mark(false)
		if err != nil {
			return nil, err
		}
		c.Broker = diff(b0, b1)
		cl, err := subsCount(subs, "wait "+strconv.FormatInt(res.Total, 10))
		if err != nil {
			return nil, err
		}
		c.Delivered = cl.N
		if res.Errors > 0 {
			return nil, fmt.Errorf("%d subscriptions: %d publishes failed, first: %s", n, res.Errors, res.FirstErr)
		}
		cells = append(cells, c)
	}
	return cells, g.stop(pub, subs, broker)
}

// window runs one measurement window of a caller and returns its result.
func window(caller *proc, d time.Duration) (result, error) {
	var r result
	if err := caller.send("go"); err != nil {
		return r, err
	}
	if _, err := caller.expect("stopped", d+time.Minute); err != nil {
		return r, err
	}
	line, err := caller.expect("result ", time.Minute)
	if err != nil {
		return r, err
	}
	err = json.Unmarshal([]byte(line), &r)
	if err == nil && r.Calls == 0 {
		err = fmt.Errorf("no operation completed (%d errors, first: %s)", r.Errors, r.FirstErr)
	}
	return r, err
}

func subsCount(subs *proc, cmd string) (countLine, error) {
	var c countLine
	line, err := subs.command(cmd, "count ", 2*time.Minute)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal([]byte(line), &c)
}

// runFanout measures one window of one publisher publishing to o.fanout
// subscribers of stack.
func runFanout(ctx context.Context, o *pubsubOptions, home string, common []string, stack string, run int) (*fanCell, error) {
	g := &group{ctx: ctx, verbose: o.verbose}
	defer g.kill()
	prof := func(role string, args ...string) []string {
		if o.profileDir == "" {
			return args
		}
		return append(args, "-cpuprofile", filepath.Join(o.profileDir, fmt.Sprintf("%s-%s-%d.pprof", stack, role, run)))
	}
	broker, kv, err := g.start("broker", time.Minute, prof("broker", "-stack", stack, "-dir", home)...)
	if err != nil {
		return nil, err
	}
	common = append(slices.Clip(common), "-stack", stack, "-addr", kv["addr"], "-key", kv["key"])
	subs, _, err := g.start("subs", 2*time.Minute, prof("subs", append(slices.Clip(common), "-subs", strconv.Itoa(o.fanout))...)...)
	if err != nil {
		return nil, err
	}
	pub, _, err := g.start("caller", time.Minute, prof("publisher", append(slices.Clip(common), "-op", "publish", "-inflight", strconv.Itoa(o.fanInflight))...)...)
	if err != nil {
		return nil, err
	}
	warm, err := pub.expect("warm", time.Minute)
	if err != nil {
		return nil, err
	}
	// Let the warm-up's deliveries arrive, so that the window counts only
	// its own.
	warmTotal, _ := strconv.ParseInt(parseKV(warm)["total"], 10, 64)
	if _, err := subsCount(subs, "wait "+strconv.FormatInt(warmTotal*int64(o.fanout), 10)); err != nil {
		return nil, err
	}
	c := &fanCell{Stack: stack, Run: run, Subscribers: o.fanout, Inflight: o.fanInflight}
	b0, err := broker.mark(false)
	if err != nil {
		return nil, err
	}
	s0, err := subs.mark(false)
	if err != nil {
		return nil, err
	}
	if o.profileDir != "" {
		for _, p := range []*proc{broker, subs} {
			if _, err := p.command("prof start", "prof started", time.Minute); err != nil {
				return nil, err
			}
		}
	}
	c0, err := subsCount(subs, "count")
	if err != nil {
		return nil, err
	}
	if c.Pub, err = window(pub, o.duration); err != nil {
		return nil, err
	}
	if o.profileDir != "" {
		for _, p := range []*proc{broker, subs} {
			if _, err := p.command("prof stop", "prof stopped", time.Minute); err != nil {
				return nil, err
			}
		}
	}
	c1, err := subsCount(subs, "count")
	if err != nil {
		return nil, err
	}
	b1, err := broker.mark(false)
	if err != nil {
		return nil, err
	}
	s1, err := subs.mark(false)
	if err != nil {
		return nil, err
	}
	c.Broker, c.Subs = diff(b0, b1), diff(s0, s1)
	c.WindowN, c.WindowNS = c1.N-c0.N, c1.TimeNS-c0.TimeNS
	c.Expected = c.Pub.Total * int64(o.fanout)
	end, err := subsCount(subs, "wait "+strconv.FormatInt(c.Expected, 10))
	if err != nil {
		return nil, err
	}
	c.Received, c.Errors = end.N, end.Errors
	if c.Pub.Errors > 0 {
		return nil, fmt.Errorf("%d publishes failed, first: %s", c.Pub.Errors, c.Pub.FirstErr)
	}
	return c, g.stop(pub, subs, broker)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func fmtRatios(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ")
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

func printPubsubReport(w io.Writer, o *pubsubOptions, rep *pubsubReport) {
	if len(rep.Latency) > 0 {
		fmt.Fprintf(w, "\nPublish latency: one publisher, one publish at a time (each waits for the platform's acceptance), %d-byte value;\n", payloadSize)
		fmt.Fprintf(w, "one subscription matches (its own connection), the others (on %d connections) do not. Medians of %d run(s), %v windows.\n\n", o.loadConns, o.runs, o.duration)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "subscriptions\tpublishes/s\tp50\tp99\tplatform CPU/publish\tdelivered/published\tsubscribe time\t")
		for _, n := range o.sizes {
			var rate, p50, p99, cpu, deliv, subms []float64
			for _, c := range rep.Latency {
				if c.Subs != n {
					continue
				}
				rate = append(rate, float64(c.Pub.Calls)/(float64(c.Pub.WindowNS)/1e9))
				p50 = append(p50, float64(c.Pub.P50NS))
				p99 = append(p99, float64(c.Pub.P99NS))
				cpu = append(cpu, float64(c.Broker.UserNS+c.Broker.SysNS)/float64(c.Pub.Calls))
				deliv = append(deliv, float64(c.Delivered)/float64(max(c.Pub.Total, 1)))
				subms = append(subms, float64(c.SubscribeMS))
			}
			fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t%.3f\t%.0f ms\t\n", n, median(rate), fmtDur(int64(median(p50))), fmtDur(int64(median(p99))),
				fmtDur(int64(median(cpu))), median(deliv), median(subms))
		}
		_ = tw.Flush()
	}
	if len(rep.Fanout) > 0 {
		fmt.Fprintf(w, "\nFan-out: 1 publisher -> %d subscribers (one connection each), %d publishes in flight, %d-byte value; each process separate.\n", o.fanout, o.fanInflight, payloadSize)
		fmt.Fprintf(w, "delivered/s = messages received by all subscribers' handlers over the window (their clock). Medians of %d run(s).\n", o.runs)
		fmt.Fprintf(w, "After the window: received/expected = messages handled / (publishes x subscribers); dropped by the subscribers' client = capbus:\n")
		fmt.Fprintf(w, "messages the agents read and dropped for a full subscription mailbox (Subscription.Dropped), NATS: asynchronous errors (slow consumer).\n\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "stack\tdelivered/s\tvs nats\tvs nats-tls\tpublishes/s\tpublish p50\tp99\tCPU/delivery broker\tsubscribers\tpublisher\ttotal\treceived/expected\tdropped by the subscribers' client\t")
		for _, s := range o.stacks {
			row := fanMedians(rep.Fanout, s)
			if row == nil {
				continue
			}
			vs := func(other string) string {
				rs := fanRatios(rep.Fanout, s, other)
				if len(rs) == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2fx", median(rs))
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.4f\t%.0f\t\n", s, row.rate, vs("nats"), vs("nats-tls"), row.pubRate,
				fmtDur(int64(row.p50)), fmtDur(int64(row.p99)), fmtDur(int64(row.cpuBroker)), fmtDur(int64(row.cpuSubs)), fmtDur(int64(row.cpuPub)),
				fmtDur(int64(row.cpuBroker+row.cpuSubs+row.cpuPub)), row.received, row.errors)
		}
		_ = tw.Flush()
	}
	fmt.Fprintf(w, "\ntargets:\n")
	if len(o.sizes) >= 2 {
		lo, hi := slices.Min(o.sizes), slices.Max(o.sizes)
		rs := latRatios(rep.Latency, lo, hi)
		if len(rs) > 0 {
			r := median(rs)
			fmt.Fprintf(w, "  %-52s %6.2fx  (target <= 2x)  %s  [per run: %s]\n", fmt.Sprintf("publish p50, %d vs %d subscriptions", hi, lo), r, verdict(r <= 2), fmtRatios(rs))
		}
	}
	if rs := fanRatios(rep.Fanout, "capbus", "nats"); len(rs) > 0 {
		r := median(rs)
		fmt.Fprintf(w, "  %-52s %6.2fx  (target >= 1.0x) %s  [per run: %s]\n", fmt.Sprintf("fan-out 1 -> %d, delivered/s, capbus vs NATS", o.fanout), r, verdict(r >= 1), fmtRatios(rs))
	}
	if rs := fanRatios(rep.Fanout, "capbus", "nats-tls"); len(rs) > 0 {
		fmt.Fprintf(w, "  %-52s %6.2fx  (no target: encrypted against encrypted)  [per run: %s]\n", "fan-out, capbus vs NATS with TLS", median(rs), fmtRatios(rs))
	}
	for _, c := range rep.Fanout {
		if c.Received < c.Expected {
			fmt.Fprintf(w, "  note: %s run %d lost %d of %d deliveries (%d dropped by the subscribers' client)\n", c.Stack, c.Run, c.Expected-c.Received, c.Expected, c.Errors)
		}
	}
}

// latRatios returns, per run, p50 at hi subscriptions / p50 at lo.
func latRatios(cells []*latCell, lo, hi int) []float64 {
	var out []float64
	for _, a := range cells {
		if a.Subs != hi {
			continue
		}
		for _, b := range cells {
			if b.Subs == lo && b.Run == a.Run && b.Pub.P50NS > 0 {
				out = append(out, float64(a.Pub.P50NS)/float64(b.Pub.P50NS))
			}
		}
	}
	return out
}

// fanRatios returns, per run, delivered/s of stack a / of stack b.
func fanRatios(cells []*fanCell, a, b string) []float64 {
	var out []float64
	for _, x := range cells {
		if x.Stack != a {
			continue
		}
		for _, y := range cells {
			if y.Stack == b && y.Run == x.Run && y.rate() > 0 {
				out = append(out, x.rate()/y.rate())
			}
		}
	}
	return out
}

type fanRow struct {
	rate, pubRate, p50, p99    float64
	cpuBroker, cpuSubs, cpuPub float64 // per delivered message
	received, errors           float64
}

func fanMedians(cells []*fanCell, stack string) *fanRow {
	var cs []*fanCell
	for _, c := range cells {
		if c.Stack == stack {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil
	}
	med := func(f func(c *fanCell) float64) float64 {
		v := make([]float64, len(cs))
		for i, c := range cs {
			v[i] = f(c)
		}
		return median(v)
	}
	per := func(c *fanCell, ns int64) float64 { return float64(ns) / float64(max(c.WindowN, 1)) }
	return &fanRow{
		rate:      med(func(c *fanCell) float64 { return c.rate() }),
		pubRate:   med(func(c *fanCell) float64 { return float64(c.Pub.Calls) / (float64(c.Pub.WindowNS) / 1e9) }),
		p50:       med(func(c *fanCell) float64 { return float64(c.Pub.P50NS) }),
		p99:       med(func(c *fanCell) float64 { return float64(c.Pub.P99NS) }),
		cpuBroker: med(func(c *fanCell) float64 { return per(c, c.Broker.UserNS+c.Broker.SysNS) }),
		cpuSubs:   med(func(c *fanCell) float64 { return per(c, c.Subs.UserNS+c.Subs.SysNS) }),
		cpuPub:    med(func(c *fanCell) float64 { return per(c, c.Pub.UserNS+c.Pub.SysNS) }),
		received:  med(func(c *fanCell) float64 { return float64(c.Received) / float64(max(c.Expected, 1)) }),
		errors:    med(func(c *fanCell) float64 { return float64(c.Errors) }),
	}
}
