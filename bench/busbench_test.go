package bench

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// busbenchBin is the busbench command, built once for the tests.
var busbenchBin struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if busbenchBin.dir != "" {
		os.RemoveAll(busbenchBin.dir)
	}
	os.Exit(code)
}

// busbench builds the command (once) and runs it with args and -json; it
// decodes the JSON report into rep.
func busbench(t *testing.T, rep any, args ...string) {
	t.Helper()
	b := &busbenchBin
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "busbench-test-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "busbench")
		b.out, b.err = exec.Command("go", "build", "-o", b.path, "./cmd/busbench").CombinedOutput()
	})
	require.NoError(t, b.err, "go build:\n%s", b.out)
	results := filepath.Join(t.TempDir(), "results.json")
	out, err := exec.Command(b.path, append(args, "-json", results, "-timeout", "5m")...).CombinedOutput()
	require.NoError(t, err, "busbench %v:\n%s", args, out)
	t.Logf("busbench %v:\n%s", args, out)
	data, err := os.ReadFile(results)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, rep))
}

// TestBusbench_QuickRunMeasuresEveryContender runs busbench in -quick mode
// (every contender with 1 and 64 calls in flight, and capbus with idle
// agents connected) and checks that each cell completed calls. It is a
// smoke test: it asserts no rate.
func TestBusbench_QuickRunMeasuresEveryContender(t *testing.T) {
	if testing.Short() {
		t.Skip("starts about 40 processes")
	}
	var rep struct {
		Cells []struct {
			Stack    string `json:"stack"`
			Inflight int    `json:"inflight"`
			Agents   int    `json:"agents"`
			Caller   struct {
				Calls    int64 `json:"calls"`
				Errors   int64 `json:"errors"`
				WindowNS int64 `json:"window_ns"`
			} `json:"caller"`
		} `json:"cells"`
	}
	busbench(t, &rep, "-quick")
	type key struct {
		stack    string
		inflight int
	}
	seen := map[key]bool{}
	scaling := 0
	for _, c := range rep.Cells {
		assert.Positive(t, c.Caller.Calls, "%s, %d in flight, %d agents: no call completed", c.Stack, c.Inflight, c.Agents)
		assert.Positive(t, c.Caller.WindowNS, "%s, %d in flight, %d agents: no window", c.Stack, c.Inflight, c.Agents)
		assert.Zero(t, c.Caller.Errors, "%s, %d in flight, %d agents: calls failed", c.Stack, c.Inflight, c.Agents)
		if c.Agents > 2 {
			scaling++
		} else {
			seen[key{c.Stack, c.Inflight}] = true
		}
	}
	for _, stack := range []string{"capbus", "zmq4", "nats"} {
		for _, k := range []int{1, 64} {
			assert.True(t, seen[key{stack, k}], "no measurement of %s with %d in flight", stack, k)
		}
	}
	assert.Positive(t, scaling, "no capbus measurement with idle agents connected")
}

// TestBusbench_PubsubQuickRunDeliversEveryPublishOnce runs busbench pubsub
// in -quick mode: the latency cells (10 and 1,000 subscriptions on the
// platform, one of them matching) must deliver each publish exactly once
// to the matching subscriber, and every fan-out contender must deliver
// messages; NATS loses none.
func TestBusbench_PubsubQuickRunDeliversEveryPublishOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts about 20 processes")
	}
	var rep struct {
		Latency []struct {
			Subs      int   `json:"subs"`
			Delivered int64 `json:"delivered"`
			Pub       struct {
				Calls  int64 `json:"calls"`
				Errors int64 `json:"errors"`
				Total  int64 `json:"total"`
			} `json:"pub"`
		} `json:"latency"`
		Fanout []struct {
			Stack    string `json:"stack"`
			WindowN  int64  `json:"window_n"`
			Expected int64  `json:"expected"`
			Received int64  `json:"received"`
		} `json:"fanout"`
	}
	busbench(t, &rep, "pubsub", "-quick")
	sizes := map[int]bool{}
	for _, c := range rep.Latency {
		sizes[c.Subs] = true
		assert.Positive(t, c.Pub.Calls, "%d subscriptions: no publish in the window", c.Subs)
		assert.Zero(t, c.Pub.Errors, "%d subscriptions: publishes failed", c.Subs)
		assert.Equal(t, c.Pub.Total, c.Delivered, "%d subscriptions: the matching subscriber must get each publish once", c.Subs)
	}
	assert.Equal(t, map[int]bool{10: true, 1000: true}, sizes)
	stacks := map[string]bool{}
	for _, c := range rep.Fanout {
		stacks[c.Stack] = true
		assert.Positive(t, c.WindowN, "%s: nothing delivered in the window", c.Stack)
		assert.LessOrEqual(t, c.Received, c.Expected, "%s: more received than published x subscribers", c.Stack)
		if c.Stack != "capbus" { // capbus drops what a full queue cannot take; NATS holds the publisher back
			assert.Equal(t, c.Expected, c.Received, "%s: deliveries lost", c.Stack)
		}
	}
	assert.Equal(t, map[string]bool{"capbus": true, "nats": true, "nats-tls": true}, stacks)
}

// TestBusbench_ScaleQuickRunBringsEveryAgentBack runs busbench scale in
// -quick mode: new connections of every contender, the platform with 10
// then 100 agents connected, and a restart under 50 agents, each of which
// must be back and serving.
func TestBusbench_ScaleQuickRunBringsEveryAgentBack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts about 20 processes and 200 agents")
	}
	type mark struct {
		RSS        int64 `json:"rss"`
		Goroutines int   `json:"goroutines"`
	}
	var rep struct {
		Conns []struct {
			Stack  string `json:"stack"`
			Dialer struct {
				Calls  int64 `json:"calls"`
				Errors int64 `json:"errors"`
			} `json:"dialer"`
		} `json:"conns"`
		Idle []struct {
			Base   int     `json:"base"`
			Agents int     `json:"agents"`
			Mem    [3]mark `json:"mem"`
			Stages []struct {
				Agents int `json:"agents"`
				Caller struct {
					Calls int64 `json:"calls"`
				} `json:"caller"`
			} `json:"stages"`
		} `json:"idle"`
		Restarts []struct {
			Agents     int   `json:"agents"`
			PlatformNS int64 `json:"platform_ns"`
			Back       struct {
				ServedNS []int64 `json:"served_ns"`
			} `json:"back"`
		} `json:"restarts"`
	}
	busbench(t, &rep, "scale", "-quick")
	stacks := map[string]bool{}
	for _, c := range rep.Conns {
		stacks[c.Stack] = true
		assert.Positive(t, c.Dialer.Calls, "%s: no connection in the window", c.Stack)
		assert.Zero(t, c.Dialer.Errors, "%s: connections failed", c.Stack)
	}
	assert.Equal(t, map[string]bool{"capbus": true, "nats": true, "nats-tls": true}, stacks)
	require.Len(t, rep.Idle, 1)
	idle := rep.Idle[0]
	assert.Equal(t, 10, idle.Base)
	assert.Equal(t, 100, idle.Agents)
	// Each connected agent has goroutines at the platform; they are gone
	// once the agents left.
	assert.GreaterOrEqual(t, idle.Mem[1].Goroutines-idle.Mem[0].Goroutines, idle.Agents-idle.Base)
	assert.Less(t, idle.Mem[2].Goroutines-idle.Mem[0].Goroutines, 10)
	assert.Len(t, idle.Stages, 6) // 1 and 64 in flight at 10, 100, 10 agents
	for _, s := range idle.Stages {
		assert.Positive(t, s.Caller.Calls, "%d agents: no call in the window", s.Agents)
	}
	require.Len(t, rep.Restarts, 1)
	r := rep.Restarts[0]
	assert.Positive(t, r.PlatformNS)
	require.Len(t, r.Back.ServedNS, r.Agents)
	for _, ns := range r.Back.ServedNS {
		assert.Positive(t, ns, "an agent served before the kill")
	}
}
