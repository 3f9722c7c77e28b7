package bench

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBusbench_QuickRunMeasuresEveryContender builds the busbench command,
// runs it in -quick mode (every contender with 1 and 64 calls in flight, and
// capbus with idle agents connected) and checks that each cell completed
// calls. It is a smoke test: it asserts no rate.
func TestBusbench_QuickRunMeasuresEveryContender(t *testing.T) {
	if testing.Short() {
		t.Skip("starts about 40 processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "busbench")
	build := exec.Command("go", "build", "-o", bin, "./cmd/busbench")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	results := filepath.Join(dir, "results.json")
	run := exec.Command(bin, "-quick", "-json", results, "-timeout", "5m")
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("busbench -quick: %v\n%s", err, out)
	}
	t.Logf("busbench -quick:\n%s", out)

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
	b, err := os.ReadFile(results)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	type key struct {
		stack    string
		inflight int
	}
	seen := map[key]bool{}
	scaling := 0
	for _, c := range rep.Cells {
		if c.Caller.Calls == 0 || c.Caller.WindowNS == 0 {
			t.Errorf("%s, %d in flight, %d agents: no call completed", c.Stack, c.Inflight, c.Agents)
		}
		if c.Caller.Errors != 0 {
			t.Errorf("%s, %d in flight, %d agents: %d calls failed", c.Stack, c.Inflight, c.Agents, c.Caller.Errors)
		}
		if c.Agents > 2 {
			scaling++
		} else {
			seen[key{c.Stack, c.Inflight}] = true
		}
	}
	for _, stack := range []string{"capbus", "zmq4", "nats"} {
		for _, k := range []int{1, 64} {
			if !seen[key{stack, k}] {
				t.Errorf("no measurement of %s with %d in flight", stack, k)
			}
		}
	}
	if scaling == 0 {
		t.Error("no capbus measurement with idle agents connected")
	}
}
