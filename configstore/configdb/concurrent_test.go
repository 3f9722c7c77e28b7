package configdb_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
)

// Writers put to a name of their own and to one shared name at the same
// time. Each Put gets a version and a revision no other Put got, and every
// Put's data is in the history under the version it was given.
func TestStore_ConcurrentWritersLoseNoUpdate(t *testing.T) {
	const writers, puts = 6, 20
	ctx := context.Background()
	s := openStore(t, configdb.WithHistory(writers*puts))

	type result struct {
		entry configstore.Entry
		data  string
	}
	results := make([][]result, writers)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range puts {
				name := "shared"
				if i%2 == 1 {
					name = fmt.Sprintf("own-%d", w)
				}
				data := fmt.Sprintf(`{"writer": %d, "put": %d}`, w, i)
				e, err := s.Put(ctx, "weather", name, configstore.KindJSON, []byte(data), fmt.Sprint("writer-", w))
				if err != nil {
					errs <- err
					return
				}
				results[w] = append(results[w], result{e, data})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	revisions := map[uint64]bool{}
	sharedData := map[uint64]string{}
	for w, rs := range results {
		var lastShared, lastOwn uint64
		for _, r := range rs {
			assert.False(t, revisions[r.entry.Revision], "revision %d given twice", r.entry.Revision)
			revisions[r.entry.Revision] = true
			if r.entry.Name == "shared" {
				assert.Greater(t, r.entry.Version, lastShared, "writer %d's shared versions go up", w)
				lastShared = r.entry.Version
				_, dup := sharedData[r.entry.Version]
				assert.False(t, dup, "shared version %d given twice", r.entry.Version)
				sharedData[r.entry.Version] = r.data
			} else {
				assert.Equal(t, lastOwn+1, r.entry.Version, "writer %d's own versions count its puts", w)
				lastOwn = r.entry.Version
			}
		}
	}
	total := uint64(writers * puts)
	for r := uint64(1); r <= total; r++ {
		assert.True(t, revisions[r], "revision %d missing", r)
	}
	rev, err := s.Revision(ctx, "weather")
	require.NoError(t, err)
	assert.Equal(t, total, rev)

	hist, err := s.History(ctx, "weather", "shared")
	require.NoError(t, err)
	require.Len(t, hist, writers*puts/2)
	for i, e := range hist {
		assert.Equal(t, uint64(len(hist)-i), e.Version)
		assert.Equal(t, sharedData[e.Version], string(e.Data), "version %d holds the data its Put sent", e.Version)
	}
}

// Readers run while writers write; run with -race.
func TestStore_ReadsRunAlongsideWrites(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "config", configstore.KindRaw, "0", "alice")

	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for i := 1; i <= 30; i++ {
			_, err := s.Put(ctx, "weather", "config", configstore.KindRaw, []byte(fmt.Sprint(i)), "alice")
			assert.NoError(t, err)
		}
	})
	for range 3 {
		wg.Go(func() {
			var last uint64
			for {
				select {
				case <-done:
					return
				default:
				}
				e, err := s.Get(ctx, "weather", "config")
				if !assert.NoError(t, err) {
					return
				}
				assert.GreaterOrEqual(t, e.Version, last, "a reader never sees the version go back")
				assert.Equal(t, fmt.Sprint(e.Version-1), string(e.Data))
				last = e.Version
				_, err = s.Changes(ctx, "weather", 0)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
}
