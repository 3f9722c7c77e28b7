// Command attacker runs one attack of capbus's resilience suite against a
// platform, as a process of its own: the suite (go test ./resilience) builds
// it, as it builds capbus, and runs it once per scenario, so that the
// attack's goroutines never share a Go scheduler with the legitimate
// traffic the suite measures.
//
// It reads a JSON spec on standard input:
//
//	{"attack": "unknown-keys", "address": "127.0.0.1:22916",
//	 "server_key": "<Z85>", "keys": "<directory of keystores>", "n": 2000, "conc": 16}
//
// With "cpu": N it runs on CPU N only (the suite keeps that CPU for the
// attacker, as if it were another machine). The keystore directory holds mallory.json (an admitted key whose entry
// allows the identities mallory.*), knock.json (an admitted key, used to
// record a real client's greeting and HELLO) and flood1.json... (admitted
// keys with the identities flood1...). attack is one of random-bytes,
// stalled, malformed, oversized, unknown-keys, replay, subscriptions,
// non-reading, big-ping. It prints "started" when the attack begins (after
// its preparation: keys made, a HELLO recorded), then one JSON line:
// {"what": "...", "problems": [...]}: what happened, and what the platform
// did that it should not have. The exit status is 0 unless the spec was
// unusable.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/capbus/capbus/keys"
)

// spec is one attack.
type spec struct {
	Attack    string        `json:"attack"`
	Address   string        `json:"address"`    // host:port of the platform
	ServerKey keys.Key      `json:"server_key"` // Z85
	Keys      string        `json:"keys"`       // directory of keystores
	N         int           `json:"n"`          // connections, handshakes, or subscriptions per connection
	Conc      int           `json:"conc"`       // at once
	Conns     int           `json:"conns"`      // non-reading consumers
	Pings     int           `json:"pings"`      // per non-reading consumer
	Size      int           `json:"size"`       // of a ping
	Hold      time.Duration `json:"hold"`       // nanoseconds: subscriptions held, consumers not reading
	Timeout   time.Duration `json:"timeout"`    // nanoseconds: the platform's handshake and hello timeouts
	CPU       int           `json:"cpu"`        // the CPU to run on; -1: any
	Stalled   stallSizes    `json:"stalled"`
	Oversized oversizeSizes `json:"oversized"`
}

// report is the attack's outcome.
type report struct {
	What     string   `json:"what"`
	Problems []string `json:"problems"`
}

// errUsage is wrapped by the errors of an unusable spec.
var errUsage = errors.New("attacker")

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func run() error {
	var sp spec
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&sp); err != nil {
		return fmt.Errorf("%w: the spec on standard input: %w", errUsage, err)
	}
	if sp.CPU >= 0 {
		if err := pinSelf(sp.CPU); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tg := &target{hostport: sp.Address, server: sp.ServerKey}
	load := func(name string) (keys.Pair, error) {
		return keys.Load(filepath.Join(sp.Keys, name+".json"))
	}
	var err error
	if tg.mallory, err = load("mallory"); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	knock, err := load("knock")
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	for i := 1; ; i++ {
		kp, err := load(fmt.Sprintf("flood%d", i))
		if err != nil {
			break
		}
		tg.flood = append(tg.flood, kp)
	}
	if sp.Attack != "big-ping" {
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		tg.hello, err = recordHello(rctx, sp.Address, knock, sp.ServerKey)
		rcancel()
		if err != nil {
			return fmt.Errorf("%w: record a HELLO: %w", errUsage, err)
		}
	}

	var r report
	started := func() { fmt.Println("started") }
	switch sp.Attack {
	case "random-bytes":
		started()
		r.What, r.Problems = tg.attackRandomBytes(ctx, sp.N, sp.Conc)
	case "stalled":
		started()
		r.What, r.Problems = tg.attackStalled(ctx, sp.Stalled, sp.Timeout)
	case "malformed":
		started()
		r.What, r.Problems = tg.attackMalformed(ctx, sp.N, sp.Conc)
	case "oversized":
		started()
		r.What, r.Problems = tg.attackOversized(ctx, sp.Oversized)
	case "unknown-keys":
		ks := make([]keys.Pair, sp.N) // made before the flood: its cost is the handshakes
		for i := range ks {
			if ks[i], err = keys.Generate(); err != nil {
				return err
			}
		}
		started()
		r.What, r.Problems = tg.attackUnknownKeys(ctx, ks, sp.Conc)
	case "replay":
		started()
		r.What, r.Problems = tg.attackReplay(ctx, sp.N, sp.Conc)
	case "subscriptions":
		started()
		r.What, r.Problems = tg.attackSubscriptions(ctx, sp.N, sp.Hold)
	case "non-reading":
		started()
		r.What, r.Problems = tg.attackNonReading(ctx, sp.Conns, sp.Pings, sp.Size, sp.Hold)
	case "big-ping":
		started()
		got, err := tg.pingRefused(ctx, tg.mallory, sp.Size)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
		}
		r.What = got
	default:
		return fmt.Errorf("%w: unknown attack %q", errUsage, sp.Attack)
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
