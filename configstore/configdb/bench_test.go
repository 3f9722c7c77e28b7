package configdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
)

// benchDoc is a 200-odd-byte JSON configuration, a typical agent config.
var benchDoc = []byte(`{"station": "KPDX", "interval": 300, "units": {"temp": "degF", "wind": "mph"},` +
	` "points": ["temperature", "humidity", "pressure", "wind_speed", "wind_direction"], "publish": true}`)

// BenchmarkStore_Put measures committed Puts (each one a bbolt transaction
// with its fsync) to 16 names in turn.
func BenchmarkStore_Put(b *testing.B) {
	ctx := context.Background()
	s, err := configdb.Open(filepath.Join(b.TempDir(), "config.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	names := make([]string, 16)
	for i := range names {
		names[i] = fmt.Sprintf("devices/d%02d", i)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := s.Put(ctx, "weather", names[i%len(names)], configstore.KindJSON, benchDoc, "bench"); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkStore_Get measures reads of a current entry.
func BenchmarkStore_Get(b *testing.B) {
	ctx := context.Background()
	s, err := configdb.Open(filepath.Join(b.TempDir(), "config.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Put(ctx, "weather", "config", configstore.KindJSON, benchDoc, "bench"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Get(ctx, "weather", "config"); err != nil {
			b.Fatal(err)
		}
	}
}
