//go:build linux

package resilience

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/internal/atomicfile"
)

// checkedMethods are the methods the checked callers call, and the
// capability each requires.
var checkedMethods = map[string]string{"guarded_a": capA, "guarded_b": capB}

// version is one write of auth.json during the rewrite storm.
type version struct {
	n     int    // 0 is the policy in force before the storm
	kind  string // grant, revoke, syntax error, unknown key, in place
	valid bool   // the final content is a valid policy
	g     grants
	// start and end bound the write: the content may be read from start
	// on (partly, for an in-place write), and is whole from end on.
	start, end time.Time
}

// allows reports whether the version lets caller call method.
func (v *version) allows(caller, method string) bool {
	return slices.Contains(v.g[caller], checkedMethods[method])
}

// outcome is what a checked call came back with.
type outcome int

const (
	allowed outcome = iota
	denied          // errno 13, with the generation that decided
	failed          // anything else: not a decision
)

// decision is one checked call.
type decision struct {
	caller, method string
	sent, answered time.Time
	outcome        outcome
	gen            uint64 // of a denial
	err            string // of a failure
}

// observation is one answer to the probe: the policy version (by its
// marker capability) and generation in force at some moment between sent
// and answered.
type observation struct {
	sent, answered time.Time
	gen            uint64
	version        int
}

// checkReport is what the checker found.
type checkReport struct {
	decisions, allowed, denied, failed int
	exact, interval                    int // denials checked by their generation's known version, or by an interval
	violations                         []string
	lags                               []time.Duration // per valid version seen: first seen in force minus the start of its write
	unseen                             []int           // valid versions never seen in force
}

// verify checks every decision against the policy versions that could have
// been in force while the call was under way.
//
// Soundness: the platform installs policies in the order it reads the file
// (reloads are serialized and the generation only grows), and the suite
// writes each version once. So the version in force at a moment t is at
// least the highest version an answer received before t reported (vmin),
// and at most the highest version whose write began before t (vmax). A
// call sent at s and answered at a was decided at some moment in [s, a],
// under a version in [vmin(s), vmax(a)]: an allowed call must be allowed by
// one of those, a denied one denied by one of those; a denial's
// generation, when the probe saw it, names its version exactly.
func verify(versions []*version, obs []observation, ds []decision) checkReport {
	var r checkReport
	valid := map[int]*version{}
	var validNs []int
	for _, v := range versions {
		if v.valid {
			valid[v.n] = v
			validNs = append(validNs, v.n)
		}
	}
	sort.Ints(validNs)

	// Generations to versions, from the probe: one version per
	// generation, both growing together.
	genVer := map[uint64]int{}
	for _, o := range obs {
		if v, ok := genVer[o.gen]; ok && v != o.version {
			r.violations = append(r.violations, fmt.Sprintf("generation %d was seen with versions %d and %d", o.gen, v, o.version))
		}
		genVer[o.gen] = o.version
		if valid[o.version] == nil {
			r.violations = append(r.violations, fmt.Sprintf("version %d, never written valid, was in force (generation %d)", o.version, o.gen))
		}
	}
	gens := slices.Sorted(maps.Keys(genVer))
	for i := 1; i < len(gens); i++ {
		if genVer[gens[i]] <= genVer[gens[i-1]] {
			r.violations = append(r.violations, fmt.Sprintf("generation %d is version %d but generation %d is version %d: an older policy was installed after a newer one",
				gens[i-1], genVer[gens[i-1]], gens[i], genVer[gens[i]]))
		}
	}

	// vmin: the highest version seen in force before t.
	seen := slices.Clone(obs)
	slices.SortFunc(seen, func(a, b observation) int { return a.answered.Compare(b.answered) })
	prefix := make([]int, len(seen))
	for i, o := range seen {
		prefix[i] = o.version
		if i > 0 {
			prefix[i] = max(prefix[i], prefix[i-1])
		}
	}
	vmin := func(t time.Time) int {
		i := sort.Search(len(seen), func(i int) bool { return !seen[i].answered.Before(t) })
		if i == 0 {
			return 0
		}
		return prefix[i-1]
	}
	// vmax: the highest valid version whose write began before t.
	vmax := func(t time.Time) int {
		hi := 0
		for _, n := range validNs {
			if valid[n].start.Before(t) {
				hi = n
			}
		}
		return hi
	}
	// some reports whether a valid version in [lo, hi] makes want of the
	// call.
	some := func(lo, hi int, caller, method string, want bool) bool {
		for _, n := range validNs {
			if n >= lo && n <= hi && valid[n].allows(caller, method) == want {
				return true
			}
		}
		return false
	}

	for _, d := range ds {
		r.decisions++
		lo, hi := vmin(d.sent), vmax(d.answered)
		switch d.outcome {
		case failed:
			r.failed++
			r.violations = append(r.violations, fmt.Sprintf("%s %s failed (not a decision): %s", d.caller, d.method, d.err))
		case allowed:
			r.allowed++
			if !some(lo, hi, d.caller, d.method, true) {
				r.violations = append(r.violations, fmt.Sprintf("%s %s was allowed, but every version that could be in force (%d..%d) denies it", d.caller, d.method, lo, hi))
			}
		case denied:
			r.denied++
			if v, ok := genVer[d.gen]; ok {
				r.exact++
				switch {
				case v < lo || v > hi:
					r.violations = append(r.violations, fmt.Sprintf("%s %s was denied by generation %d (version %d), not in force while the call was under way (%d..%d)", d.caller, d.method, d.gen, v, lo, hi))
				case valid[v] != nil && valid[v].allows(d.caller, d.method):
					r.violations = append(r.violations, fmt.Sprintf("%s %s was denied by generation %d, but its version %d allows it", d.caller, d.method, d.gen, v))
				}
				continue
			}
			r.interval++
			// Between the versions of the nearest generations seen.
			glo, ghi := lo, hi
			for _, g := range gens {
				if g < d.gen {
					glo = max(glo, genVer[g])
				} else if g > d.gen {
					ghi = min(ghi, genVer[g])
					break
				}
			}
			if !some(glo, ghi, d.caller, d.method, false) {
				r.violations = append(r.violations, fmt.Sprintf("%s %s was denied (generation %d), but every version that could be in force (%d..%d) allows it", d.caller, d.method, d.gen, glo, ghi))
			}
		}
	}

	// How soon each valid version was seen in force.
	first := map[int]time.Time{}
	for _, o := range seen {
		if _, ok := first[o.version]; !ok {
			first[o.version] = o.answered
		}
	}
	for _, n := range validNs {
		if n == 0 {
			continue
		}
		if t, ok := first[n]; ok {
			r.lags = append(r.lags, t.Sub(valid[n].start))
		} else {
			r.unseen = append(r.unseen, n)
		}
	}
	return r
}

// storm writes auth.json n times, pacing the writes gap apart (plus up to
// as much again at random): most writes grant or revoke a capability of a
// checked caller, atomically or in place (truncated, then written in two
// parts); some are broken (a syntax error, an unknown key). The last write
// is valid (one more is made if needed). It returns initial and every
// version written.
func storm(ctx context.Context, c *cast, file string, initial *version, n int, gap time.Duration) ([]*version, error) {
	out := []*version{initial}
	cur := initial.g
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		v := &version{n: i, g: cur}
		switch r := randomInt(10); {
		case r < 6, r >= 8:
			v.valid, v.g = true, toggle(cur, c)
			v.kind = "grant"
			if len(total(v.g)) < len(total(cur)) {
				v.kind = "revoke"
			}
			cur = v.g
			data := c.policy(i, v.g)
			v.start = time.Now()
			if r >= 8 {
				v.kind += ", in place"
				if err := writeInPlace(ctx, file, data); err != nil {
					return out, err
				}
			} else if err := atomicfile.Write(file, data, 0o600); err != nil {
				return out, err
			}
			v.end = time.Now()
		case r == 6:
			v.kind = "syntax error"
			data := c.policy(i, toggle(cur, c))
			v.start = time.Now()
			if err := atomicfile.Write(file, data[:len(data)-3], 0o600); err != nil {
				return out, err
			}
			v.end = time.Now()
		default:
			v.kind = "unknown key"
			data := bytes.Replace(c.policy(i, toggle(cur, c)), []byte(`"capabilities"`), []byte(`"capabilites"`), 1)
			v.start = time.Now()
			if err := atomicfile.Write(file, data, 0o600); err != nil {
				return out, err
			}
			v.end = time.Now()
		}
		out = append(out, v)
		pause(ctx, gap+time.Duration(randomInt(int(gap))))
	}
	// The last write is valid: the file stays usable for a restart.
	if !out[len(out)-1].valid && ctx.Err() == nil {
		v := &version{n: len(out), kind: "grant", valid: true, g: toggle(cur, c)}
		if len(total(v.g)) < len(total(cur)) {
			v.kind = "revoke"
		}
		v.start = time.Now()
		if err := atomicfile.Write(file, c.policy(v.n, v.g), 0o600); err != nil {
			return out, err
		}
		v.end = time.Now()
		out = append(out, v)
	}
	return out, ctx.Err()
}

// writeInPlace truncates file and writes data in two parts, as an editor
// that does not write atomically does.
func writeInPlace(ctx context.Context, file string, data []byte) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		f.Close()
		return err
	}
	pause(ctx, time.Duration(10+randomInt(40))*time.Millisecond) // the editor's gap
	if _, err := f.Write(data[half:]); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// toggle grants or revokes one capability of one checked caller.
func toggle(g grants, c *cast) grants {
	out := grants{}
	for k, v := range g {
		out[k] = slices.Clone(v)
	}
	who := chkID(randomInt(len(c.chk)))
	capability := []string{capA, capB}[randomInt(2)]
	if i := slices.Index(out[who], capability); i >= 0 {
		out[who] = slices.Delete(out[who], i, i+1)
	} else {
		out[who] = append(out[who], capability)
	}
	return out
}

// total lists every grant of g, "who:cap".
func total(g grants) []string {
	var out []string
	for who, caps := range g {
		for _, c := range caps {
			out = append(out, who+":"+c)
		}
	}
	return out
}

// checker runs the checked callers and the probe during the storm.
type checker struct {
	mu        sync.Mutex
	decisions []decision
	obs       []observation
	probeErrs []string
}

// probe asks for the probe agent's permissions in a loop: the marker
// capability names the version in force, with its generation.
func (ck *checker) probe(ctx context.Context, a *agent.Agent) {
	for ctx.Err() == nil {
		sent := time.Now()
		p, err := a.Permissions(ctx)
		answered := time.Now()
		if ctx.Err() != nil {
			return
		}
		ck.mu.Lock()
		if err != nil {
			ck.probeErrs = append(ck.probeErrs, err.Error())
		} else if v, ok := versionOf(p.Capabilities); ok {
			ck.obs = append(ck.obs, observation{sent: sent, answered: answered, gen: p.Generation, version: v})
		} else {
			ck.probeErrs = append(ck.probeErrs, fmt.Sprintf("no version marker in %v", p.Capabilities))
		}
		ck.mu.Unlock()
		pause(ctx, 2*time.Millisecond)
	}
}

func versionOf(caps []string) (int, bool) {
	for _, c := range caps {
		var v int
		if _, err := fmt.Sscanf(c, "policy_v%d", &v); err == nil && marker(v) == c {
			return v, true
		}
	}
	return 0, false
}

// call makes checked calls from a in a loop, alternating the methods.
func (ck *checker) call(ctx context.Context, a *agent.Agent) {
	methods := slices.Sorted(maps.Keys(checkedMethods))
	for i := 0; ctx.Err() == nil; i++ {
		m := methods[i%len(methods)]
		d := decision{caller: a.Identity(), method: m, sent: time.Now()}
		_, err := a.Call(ctx, "echo", m, "x")
		d.answered = time.Now()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			d.outcome = allowed
		} else if g, ok := isUnauthorized(err); ok {
			d.outcome, d.gen = denied, g
		} else {
			d.outcome, d.err = failed, err.Error()
		}
		ck.mu.Lock()
		ck.decisions = append(ck.decisions, d)
		ck.mu.Unlock()
	}
}

// summary describes the storm and the check in one line.
func summary(versions []*version, r checkReport) string {
	var kinds tally
	for _, v := range versions[1:] {
		kinds.add(v.kind)
	}
	var lag string
	if len(r.lags) > 0 {
		s := slices.Clone(r.lags)
		slices.Sort(s)
		lag = fmt.Sprintf("; each valid version seen in force by the probe %v after its write began at the median, %v at most",
			s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
	}
	if len(r.unseen) > 0 {
		lag += fmt.Sprintf(" (%d valid versions were replaced before any read saw them)", len(r.unseen))
	}
	return fmt.Sprintf("%d rewrites (%s); %s checked decisions: %s allowed, %s denied (%s by their generation's version, %s by interval), %d failed; %d violations%s",
		len(versions)-1, kinds.String(), thousands(int64(r.decisions)), thousands(int64(r.allowed)), thousands(int64(r.denied)),
		thousands(int64(r.exact)), thousands(int64(r.interval)), r.failed, len(r.violations), lag)
}

// firstFew returns the first n lines of s, and how many more there were.
func firstFew(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, "\n")
	}
	return strings.Join(s[:n], "\n") + fmt.Sprintf("\n... and %d more", len(s)-n)
}
