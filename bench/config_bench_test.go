package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
)

// configDoc is a 200-odd-byte JSON configuration, a typical agent config
// (configdb's BenchmarkStore_Put writes the same).
var configDoc = []byte(`{"station": "KPDX", "interval": 300, "units": {"temp": "degF", "wind": "mph"},` +
	` "points": ["temperature", "humidity", "pressure", "wind_speed", "wind_direction"], "publish": true}`)

// configNames are the entries the benchmarks write in turn.
var configNames = func() []string {
	n := make([]string, 16)
	for i := range n {
		n[i] = fmt.Sprintf("devices/d%02d", i)
	}
	return n
}()

// configDirEnv names a directory for the benchmarks' stores, instead of
// the test's temporary directory: a tmpfs there (whose fsync costs nothing)
// separates the platform's own cost from the disk's.
const configDirEnv = "CAPBUS_BENCH_CONFIG_DIR"

// configDir returns a fresh directory for a store, removed at the end of
// the benchmark.
func configDir(b *testing.B) string {
	b.Helper()
	base := os.Getenv(configDirEnv)
	if base == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(base, "capbus-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// configBus is a platform with a configuration store on the local disk,
// over CURVE on 127.0.0.1, in this process; an operator agent holding
// edit_config_store, and the weather agent, whose handler is onChange.
type configBus struct {
	op, weather *agent.Agent
	stop        func()
}

func startConfigBus(b *testing.B, onChange agent.ConfigHandler) *configBus {
	b.Helper()
	dir := configDir(b)
	gen := func() keys.Pair {
		kp, err := keys.Generate()
		if err != nil {
			b.Fatal(err)
		}
		return kp
	}
	server, weatherKP, opKP := gen(), gen(), gen()
	doc, err := json.Marshal(map[string]any{"allow": []map[string]any{
		{"user_id": "weather", "identity": "weather", "credentials": weatherKP.Public.Base64URL()},
		{"user_id": "operator", "identity": "operator", "credentials": opKP.Public.Base64URL(),
			"capabilities": []string{"edit_config_store"}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	authFile := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(authFile, doc, 0o600); err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	p, err := platform.New(platform.WithAddress("tcp://127.0.0.1:0"), platform.WithKeyPair(server),
		platform.WithAuthFile(authFile), platform.WithConfigStore(filepath.Join(dir, "config.db")), platform.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(ctx) }()
	<-p.Ready()
	newAgent := func(id string, kp keys.Pair) (*agent.Agent, chan error) {
		a, err := agent.New(id, agent.WithKeyPair(kp), agent.WithPlatform(p.Addr(), p.ServerKey()), agent.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		if id == "weather" {
			if err := a.Config().OnChange("*", onChange); err != nil {
				b.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		if err := a.WaitConnected(ctx); err != nil {
			b.Fatal(err)
		}
		return a, done
	}
	w, wdone := newAgent("weather", weatherKP)
	op, odone := newAgent("operator", opKP)
	return &configBus{op: op, weather: w, stop: func() { cancel(); <-wdone; <-odone; <-pdone }}
}

// BenchmarkConfig_Put measures committed entry writes per second: to the
// store alone (configdb.Store.Put, one bbolt transaction with its fsync
// each), and through the platform by an agent holding edit_config_store
// (request over CURVE, authorization, the same Put, the push to the
// watching owner, the answer), one at a time and from 8 goroutines.
func BenchmarkConfig_Put(b *testing.B) {
	ctx := context.Background()
	b.Run("store", func(b *testing.B) {
		s, err := configdb.Open(filepath.Join(configDir(b), "config.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		i := 0
		for b.Loop() {
			if _, err := s.Put(ctx, "weather", configNames[i%len(configNames)], configstore.KindJSON, configDoc, "bench"); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("platform", func(b *testing.B) {
		cb := startConfigBus(b, func(context.Context, agent.ConfigEvent) {})
		defer cb.stop()
		store := cb.op.ConfigStore("weather")
		i := 0
		for b.Loop() {
			if _, err := store.Put(ctx, configNames[i%len(configNames)], configstore.KindJSON, configDoc); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("platform-8", func(b *testing.B) {
		cb := startConfigBus(b, func(context.Context, agent.ConfigEvent) {})
		defer cb.stop()
		store := cb.op.ConfigStore("weather")
		b.SetParallelism(4) // 2 cores: 8 writers
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := store.Put(ctx, configNames[i%len(configNames)], configstore.KindJSON, configDoc); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
	})
}

// BenchmarkConfig_Get measures a read of an entry through the platform: one
// request round trip, the store's read transaction, no disk write.
func BenchmarkConfig_Get(b *testing.B) {
	ctx := context.Background()
	cb := startConfigBus(b, func(context.Context, agent.ConfigEvent) {})
	defer cb.stop()
	store := cb.op.ConfigStore("weather")
	if _, err := store.Put(ctx, "config", configstore.KindJSON, configDoc); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := store.Get(ctx, "config"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConfig_WriteToCallback measures, per write, the time from the
// operator's Put to the call of the weather agent's OnChange handler with
// the new entry (the write's fsync included), one write at a time. It
// reports the median and the 99th percentile.
func BenchmarkConfig_WriteToCallback(b *testing.B) {
	ctx := context.Background()
	got := make(chan time.Time, 1)
	cb := startConfigBus(b, func(context.Context, agent.ConfigEvent) { got <- time.Now() })
	defer cb.stop()
	store := cb.op.ConfigStore("weather")
	var lat []time.Duration
	i := 0
	for b.Loop() {
		t0 := time.Now()
		if _, err := store.Put(ctx, configNames[i%len(configNames)], configstore.KindJSON, configDoc); err != nil {
			b.Fatal(err)
		}
		select {
		case t := <-got:
			lat = append(lat, t.Sub(t0))
		case <-time.After(10 * time.Second):
			b.Fatal("the weather agent's handler was not called")
		}
		i++
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
