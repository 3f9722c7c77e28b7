package pendingkeys

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/keys"
)

func genKeys(t *testing.T, n int) []keys.Key {
	t.Helper()
	out := make([]keys.Key, n)
	for i := range out {
		kp, err := keys.Generate()
		require.NoError(t, err)
		out[i] = kp.Public
	}
	return out
}

func has(list []Key, k keys.Key) (Key, bool) {
	for _, x := range list {
		if x.Key == k.Z85() {
			return x, true
		}
	}
	return Key{}, false
}

func TestRecorder_KeepsAtMostMaxKeysAndCountsRepeats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pending_keys.json")
	r := NewRecorder(path, nil)
	ks := genKeys(t, MaxKeys+20)
	now := time.Now()
	for i, k := range ks {
		r.Record(k, fmt.Sprintf("127.0.0.1:%d", 1000+i), now.Add(time.Duration(i)*time.Millisecond))
	}
	last := ks[len(ks)-1]
	for range 4 {
		r.Record(last, "127.0.0.1:9", now.Add(time.Hour))
	}
	r.Close()
	got, err := Read(path)
	require.NoError(t, err)
	assert.Len(t, got, MaxKeys)
	k, ok := has(got, last)
	require.True(t, ok)
	assert.Equal(t, 5, k.Count)
	assert.Equal(t, "127.0.0.1:9", k.Address)
	assert.Equal(t, last.Z85(), got[0].Key, "most recently seen first")
	_, ok = has(got, ks[0])
	assert.False(t, ok, "the oldest keys were dropped")
}

func TestRecorder_WritesAtMostOncePerIntervalAndKeepsAnotherProcesssRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pending_keys.json")
	r := NewRecorder(path, nil)
	defer r.Close()
	ks := genKeys(t, 3)
	r.Record(ks[0], "a", time.Now())
	require.Eventually(t, func() bool {
		l, _ := Read(path)
		_, ok := has(l, ks[0])
		return ok
	}, 5*time.Second, 5*time.Millisecond, "the first refusal is written at once")

	// The operator approves ks[0]: the CLI removes it from the file.
	require.NoError(t, Update(context.Background(), path, func([]Key) ([]Key, error) { return nil, nil }))
	r.Record(ks[1], "b", time.Now())
	r.Record(ks[2], "c", time.Now())
	l, err := Read(path)
	require.NoError(t, err)
	assert.Empty(t, l, "a write within a second of the last one waits")
	require.Eventually(t, func() bool {
		l, _ := Read(path)
		return len(l) == 2
	}, 5*time.Second, 10*time.Millisecond, "both later refusals arrive in one write")
	l, _ = Read(path)
	_, ok := has(l, ks[0])
	assert.False(t, ok, "the removed key does not come back")
}

func TestRead_AMalformedFileNamesIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pending_keys.json")
	require.NoError(t, os.WriteFile(path, []byte("{"), 0o600))
	_, err := Read(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
}
