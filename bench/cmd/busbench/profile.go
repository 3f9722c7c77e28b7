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

// profileRep is what the CPU profile of the platform process says.
type profileRep struct {
	Role      string       `json:"role"`
	File      string       `json:"file,omitempty"`
	Calls     int64        `json:"calls"`
	Inflight  int          `json:"inflight"`
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
	rep := &profileRep{Calls: c.Caller.Calls, Rate: c.rate(), TotalNS: total, Inflight: c.Inflight}
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
	fmt.Fprintf(w, "\nCPU profile of %s, capbus %d in flight (extra cell, %.0f calls/s, %d calls, %s sampled at %d Hz = %s/call)\n",
		what, p.Inflight, p.Rate, p.Calls, time.Duration(p.TotalNS).Round(time.Millisecond), profileHz, fmtDur(int64(float64(p.TotalNS)/float64(max(p.Calls, 1)))))
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
