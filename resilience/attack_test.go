//go:build linux

package resilience

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/keys"
)

// target is what the suite knows of the platform it attacks.
type target struct {
	hostport string // 127.0.0.1:port
	server   keys.Key
	attacker string // the attacker program
	keys     string // its keystores: mallory.json, knock.json, flood1.json...
	cpu      int    // the attacker's CPU; -1: any
}

// saveAttackerKeys writes the admitted keys the attacker uses into dir.
func saveAttackerKeys(dir string, c *cast) error {
	save := func(name string, kp keys.Pair) error { return keys.Save(filepath.Join(dir, name+".json"), kp) }
	if err := save("mallory", c.mallory); err != nil {
		return err
	}
	if err := save("knock", c.knock); err != nil {
		return err
	}
	for i, kp := range c.flood {
		if err := save(floodID(i), kp); err != nil {
			return err
		}
	}
	return nil
}

// attack runs the attacker program with spec (attack, n, conc... as the
// program documents them; the address, the server key and the keys are
// added), calls begin when it says the attack started, and returns what it
// reported.
func (tg *target) attack(ctx context.Context, begin func(), spec map[string]any) (string, []string) {
	spec["address"], spec["server_key"], spec["keys"], spec["cpu"] = tg.hostport, tg.server, tg.keys, tg.cpu
	in, err := json.Marshal(spec)
	if err != nil {
		return "", []string{err.Error()}
	}
	cmd := exec.CommandContext(ctx, tg.attacker)
	cmd.Stdin = strings.NewReader(string(in))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", []string{err.Error()}
	}
	if err := cmd.Start(); err != nil {
		return "", []string{err.Error()}
	}
	var rep struct {
		What     string   `json:"what"`
		Problems []string `json:"problems"`
	}
	var decodeErr error
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "started" {
			begin()
			continue
		}
		decodeErr = json.Unmarshal([]byte(line), &rep)
	}
	if err := cmd.Wait(); err != nil {
		return rep.What, append(rep.Problems, fmt.Sprintf("attacker %v: %v: %s", spec["attack"], err, stderr.String()))
	}
	if decodeErr != nil {
		return rep.What, append(rep.Problems, "the attacker's report: "+decodeErr.Error())
	}
	return rep.What, rep.Problems
}

// knock dials with an admitted key until a handshake succeeds: after a
// flood, 127.0.0.1 is in its handshake backoff (answered busy) until then,
// and a success forgets its failures.
func (tg *target) knock(ctx context.Context, kp keys.Pair, within time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := curve.Dial(dctx, "tcp://"+tg.hostport, kp, tg.server)
		dcancel()
		if err == nil {
			conn.Close()
			return time.Since(start), nil
		}
		if !pause(ctx, 200*time.Millisecond) {
			return time.Since(start), fmt.Errorf("127.0.0.1 still refused after %v: %w", within, err)
		}
	}
}

// thousands writes n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// sizeText writes n bytes in MiB.
func sizeText(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// tally counts outcomes by name.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[what]++
}

// String lists the counts by decreasing count: "31 grant, 28 revoke".
func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := slices.Collect(maps.Keys(t.n))
	slices.SortFunc(names, func(a, b string) int {
		if t.n[a] != t.n[b] {
			return t.n[b] - t.n[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = thousands(int64(t.n[k])) + " " + k
	}
	return strings.Join(parts, ", ")
}

// randomInt returns a uniform int in [0, n).
func randomInt(n int) int { return rand.IntN(n) }
