package configdb_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
)

// openStore opens a store in a new temporary directory and closes it at the
// end of the test.
func openStore(t *testing.T, opts ...configdb.Option) *configdb.Store {
	t.Helper()
	s, err := configdb.Open(filepath.Join(t.TempDir(), "config.db"), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s *configdb.Store, identity, name string, kind configstore.Kind, data, user string) configstore.Entry {
	t.Helper()
	e, err := s.Put(context.Background(), identity, name, kind, []byte(data), user)
	require.NoError(t, err)
	return e
}

// versions returns the versions of entries, in their order.
func versions(entries []configstore.Entry) []uint64 {
	out := make([]uint64, len(entries))
	for i, e := range entries {
		out[i] = e.Version
	}
	return out
}

func TestStore_PutThenGetReturnsTheStoredEntry(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	before := time.Now().UTC()

	e := put(t, s, "weather", "config", configstore.KindJSON, `{"url": "http://example.com"}`, "alice")
	got, err := s.Get(ctx, "weather", "config")
	require.NoError(t, err)

	assert.Equal(t, e, got)
	assert.Equal(t, "weather", got.Identity)
	assert.Equal(t, "config", got.Name)
	assert.Equal(t, configstore.KindJSON, got.Kind)
	assert.Equal(t, `{"url": "http://example.com"}`, string(got.Data))
	assert.Equal(t, uint64(1), got.Version)
	assert.Equal(t, uint64(1), got.Revision)
	assert.Equal(t, "alice", got.User)
	assert.Equal(t, time.UTC, got.Time.Location())
	assert.False(t, got.Time.Before(before.Truncate(time.Microsecond)), "time %v before %v", got.Time, before)
	assert.False(t, got.Deleted)

	_, err = s.Get(ctx, "weather", "other")
	require.ErrorIs(t, err, configstore.ErrNotFound)
	assert.EqualError(t, err, `configstore: no entry "other" for identity "weather": not found`)
	_, err = s.Get(ctx, "nobody", "config")
	require.ErrorIs(t, err, configstore.ErrNotFound)
}

func TestStore_PutKeepsItsOwnCopyOfTheData(t *testing.T) {
	s := openStore(t)
	data := []byte(`{"a": 1}`)
	e, err := s.Put(context.Background(), "weather", "config", configstore.KindJSON, data, "alice")
	require.NoError(t, err)
	copy(data, `{"b": 2}`)
	assert.Equal(t, `{"a": 1}`, string(e.Data))
}

func TestStore_VersionsCountChangesOfANameAndRevisionsChangesOfAnIdentity(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)

	a1 := put(t, s, "weather", "a", configstore.KindRaw, "1", "alice")
	b1 := put(t, s, "weather", "b", configstore.KindRaw, "1", "alice")
	a2 := put(t, s, "weather", "a", configstore.KindRaw, "2", "alice")
	other := put(t, s, "boiler", "a", configstore.KindRaw, "1", "bob")
	a3 := put(t, s, "weather", "a", configstore.KindRaw, "2", "alice") // same data: still a change

	assert.Equal(t, []uint64{1, 1, 2, 3}, []uint64{a1.Version, b1.Version, a2.Version, a3.Version})
	assert.Equal(t, []uint64{1, 2, 3, 4}, []uint64{a1.Revision, b1.Revision, a2.Revision, a3.Revision})
	assert.Equal(t, uint64(1), other.Version)
	assert.Equal(t, uint64(1), other.Revision, "each identity counts its own revisions")

	rev, err := s.Revision(ctx, "weather")
	require.NoError(t, err)
	assert.Equal(t, uint64(4), rev)
	rev, err = s.Revision(ctx, "nobody")
	require.NoError(t, err)
	assert.Zero(t, rev)
}

func TestStore_ListReturnsTheCurrentEntriesOfOneIdentitySortedByName(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "zeta", configstore.KindRaw, "z", "alice")
	put(t, s, "weather", "devices/boiler", configstore.KindRaw, "b1", "alice")
	put(t, s, "weather", "alpha", configstore.KindRaw, "a", "alice")
	put(t, s, "weather", "devices/boiler", configstore.KindRaw, "b2", "alice")
	put(t, s, "weather", "gone", configstore.KindRaw, "g", "alice")
	put(t, s, "boiler", "other", configstore.KindRaw, "o", "alice")
	_, err := s.Delete(ctx, "weather", "gone", "alice")
	require.NoError(t, err)

	list, err := s.List(ctx, "weather")
	require.NoError(t, err)
	var names, data []string
	for _, e := range list {
		names = append(names, e.Name)
		data = append(data, string(e.Data))
	}
	assert.Equal(t, []string{"alpha", "devices/boiler", "zeta"}, names)
	assert.Equal(t, []string{"a", "b2", "z"}, data)

	list, err = s.List(ctx, "nobody")
	require.NoError(t, err)
	assert.Empty(t, list)
}

func TestStore_DeleteLeavesATombstoneInTheHistory(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "config", configstore.KindJSON, `{"a": 1}`, "alice")

	tomb, err := s.Delete(ctx, "weather", "config", "bob")
	require.NoError(t, err)
	assert.True(t, tomb.Deleted)
	assert.Equal(t, uint64(2), tomb.Version)
	assert.Equal(t, uint64(2), tomb.Revision)
	assert.Equal(t, "bob", tomb.User)
	assert.Empty(t, tomb.Kind)
	assert.Empty(t, tomb.Data)
	_, err = tomb.Value()
	require.ErrorIs(t, err, configstore.ErrNotFound, "a tombstone has no value")
	var v any
	require.ErrorIs(t, tomb.Decode(&v), configstore.ErrNotFound)

	_, err = s.Get(ctx, "weather", "config")
	require.ErrorIs(t, err, configstore.ErrNotFound)
	hist, err := s.History(ctx, "weather", "config")
	require.NoError(t, err)
	require.Len(t, hist, 2)
	assert.Equal(t, tomb, hist[0])
	assert.Equal(t, `{"a": 1}`, string(hist[1].Data))

	_, err = s.Delete(ctx, "weather", "config", "bob")
	require.ErrorIs(t, err, configstore.ErrNotFound, "deleting a deleted entry")
	_, err = s.Delete(ctx, "weather", "never", "bob")
	require.ErrorIs(t, err, configstore.ErrNotFound, "deleting a missing entry")
	rev, err := s.Revision(ctx, "weather")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), rev, "refused deletes are no changes")
}

func TestStore_PutAfterDeleteContinuesTheVersions(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "config", configstore.KindRaw, "one", "alice")
	put(t, s, "weather", "config", configstore.KindRaw, "two", "alice")
	_, err := s.Delete(ctx, "weather", "config", "alice")
	require.NoError(t, err)

	e := put(t, s, "weather", "config", configstore.KindRaw, "three", "alice")
	assert.Equal(t, uint64(4), e.Version)

	hist, err := s.History(ctx, "weather", "config")
	require.NoError(t, err)
	assert.Equal(t, []uint64{4, 3, 2, 1}, versions(hist))
	assert.Equal(t, []bool{false, true, false, false}, []bool{hist[0].Deleted, hist[1].Deleted, hist[2].Deleted, hist[3].Deleted})
}

func TestStore_HistoryKeepsTheLastNVersionsNewestFirst(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "config.db")
	s, err := configdb.Open(path, configdb.WithHistory(3))
	require.NoError(t, err)
	for _, d := range []string{"v1", "v2", "v3", "v4", "v5"} {
		put(t, s, "weather", "config", configstore.KindRaw, d, "alice")
	}
	put(t, s, "weather", "other", configstore.KindRaw, "o1", "alice")

	hist, err := s.History(ctx, "weather", "config")
	require.NoError(t, err)
	assert.Equal(t, []uint64{5, 4, 3}, versions(hist))
	assert.Equal(t, "v5", string(hist[0].Data))
	assert.Equal(t, "v3", string(hist[2].Data))
	other, err := s.History(ctx, "weather", "other")
	require.NoError(t, err)
	assert.Equal(t, []uint64{1}, versions(other), "pruning one name leaves the others")
	_, err = s.History(ctx, "weather", "never")
	require.ErrorIs(t, err, configstore.ErrNotFound)
	require.NoError(t, s.Close())

	// A lower bound prunes an entry at its next change.
	s, err = configdb.Open(path, configdb.WithHistory(2))
	require.NoError(t, err)
	defer s.Close()
	put(t, s, "weather", "config", configstore.KindRaw, "v6", "alice")
	hist, err = s.History(ctx, "weather", "config")
	require.NoError(t, err)
	assert.Equal(t, []uint64{6, 5}, versions(hist))
}

func TestStore_DefaultHistoryKeepsTenVersions(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	for range 12 {
		put(t, s, "weather", "config", configstore.KindRaw, "x", "alice")
	}
	hist, err := s.History(ctx, "weather", "config")
	require.NoError(t, err)
	assert.Equal(t, []uint64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3}, versions(hist))
}

func TestStore_RollbackRestoresAnOlderVersionAsANewOne(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "config", configstore.KindJSON, `{"good": true}`, "alice")
	put(t, s, "weather", "points", configstore.KindCSV, "a,b\n1,2\n", "alice")
	put(t, s, "weather", "config", configstore.KindRaw, "oops", "alice")

	e, err := s.Rollback(ctx, "weather", "config", 1, "bob")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), e.Version)
	assert.Equal(t, uint64(4), e.Revision)
	assert.Equal(t, configstore.KindJSON, e.Kind, "the kind comes back with the data")
	assert.Equal(t, `{"good": true}`, string(e.Data))
	assert.Equal(t, "bob", e.User)

	got, err := s.Get(ctx, "weather", "config")
	require.NoError(t, err)
	assert.Equal(t, e, got)
	hist, err := s.History(ctx, "weather", "config")
	require.NoError(t, err)
	assert.Equal(t, []uint64{3, 2, 1}, versions(hist), "the history is not rewritten")
	assert.Equal(t, "oops", string(hist[1].Data))
}

func TestStore_RollbackBringsBackADeletedEntry(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "config", configstore.KindRaw, "keep me", "alice")
	_, err := s.Delete(ctx, "weather", "config", "alice")
	require.NoError(t, err)

	e, err := s.Rollback(ctx, "weather", "config", 1, "alice")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), e.Version)
	got, err := s.Get(ctx, "weather", "config")
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(got.Data))
}

func TestStore_RollbackRefusesVersionsWithoutData(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, configdb.WithHistory(3))
	put(t, s, "weather", "config", configstore.KindRaw, "v1", "alice")
	put(t, s, "weather", "config", configstore.KindRaw, "v2", "alice")
	_, err := s.Delete(ctx, "weather", "config", "alice") // v3
	require.NoError(t, err)
	put(t, s, "weather", "config", configstore.KindRaw, "v4", "alice") // prunes v1

	cases := []struct {
		version uint64
		want    string
	}{
		{1, `configstore: version 1 of entry "config" of "weather" is no longer kept (the store keeps 3 versions): not found`},
		{3, `configstore: version 3 of entry "config" of "weather" is a deletion, with no data to restore: not found`},
		{9, `configstore: entry "config" of "weather" has no version 9 (its latest is 4): not found`},
	}
	for _, c := range cases {
		_, err := s.Rollback(ctx, "weather", "config", c.version, "alice")
		require.ErrorIs(t, err, configstore.ErrNotFound)
		assert.EqualError(t, err, c.want)
	}
	_, err = s.Rollback(ctx, "weather", "never", 1, "alice")
	require.ErrorIs(t, err, configstore.ErrNotFound)

	rev, err := s.Revision(ctx, "weather")
	require.NoError(t, err)
	assert.Equal(t, uint64(4), rev, "refused rollbacks are no changes")
}

func TestStore_ChangesReturnsEachChangedNameOnceInRevisionOrder(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "a", configstore.KindRaw, "a1", "alice") // r1
	put(t, s, "weather", "b", configstore.KindRaw, "b1", "alice") // r2
	put(t, s, "weather", "c", configstore.KindRaw, "c1", "alice") // r3
	put(t, s, "weather", "a", configstore.KindRaw, "a2", "alice") // r4
	_, err := s.Delete(ctx, "weather", "b", "alice")              // r5
	require.NoError(t, err)
	put(t, s, "boiler", "x", configstore.KindRaw, "x1", "alice")

	type change struct {
		Name     string
		Revision uint64
		Data     string
		Deleted  bool
	}
	changes := func(since uint64) []change {
		t.Helper()
		entries, err := s.Changes(ctx, "weather", since)
		require.NoError(t, err)
		out := []change{}
		for _, e := range entries {
			assert.Equal(t, "weather", e.Identity)
			out = append(out, change{e.Name, e.Revision, string(e.Data), e.Deleted})
		}
		return out
	}

	assert.Equal(t, []change{{"c", 3, "c1", false}, {"a", 4, "a2", false}, {"b", 5, "", true}}, changes(0))
	assert.Equal(t, []change{{"a", 4, "a2", false}, {"b", 5, "", true}}, changes(3))
	assert.Equal(t, []change{{"b", 5, "", true}}, changes(4))
	assert.Equal(t, []change{}, changes(5))
	assert.Equal(t, []change{}, changes(^uint64(0)))

	// An agent that applied everything up to 4 sees a's next change, once.
	put(t, s, "weather", "a", configstore.KindRaw, "a3", "alice") // r6
	assert.Equal(t, []change{{"b", 5, "", true}, {"a", 6, "a3", false}}, changes(4))

	none, err := s.Changes(ctx, "nobody", 0)
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestStore_DeleteAllTombstonesEveryEntryAtOnce(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "b", configstore.KindRaw, "b", "alice")
	put(t, s, "weather", "a", configstore.KindRaw, "a", "alice")
	put(t, s, "weather", "gone", configstore.KindRaw, "g", "alice")
	_, err := s.Delete(ctx, "weather", "gone", "alice")
	require.NoError(t, err)
	put(t, s, "boiler", "a", configstore.KindRaw, "a", "alice")

	tombs, err := s.DeleteAll(ctx, "weather", "bob")
	require.NoError(t, err)
	require.Len(t, tombs, 2, "the already deleted entry is left alone")
	assert.Equal(t, []string{"a", "b"}, []string{tombs[0].Name, tombs[1].Name})
	assert.Equal(t, []uint64{5, 6}, []uint64{tombs[0].Revision, tombs[1].Revision})
	assert.True(t, tombs[0].Deleted && tombs[1].Deleted)

	list, err := s.List(ctx, "weather")
	require.NoError(t, err)
	assert.Empty(t, list)
	list, err = s.List(ctx, "boiler")
	require.NoError(t, err)
	assert.Len(t, list, 1, "other identities keep their entries")

	tombs, err = s.DeleteAll(ctx, "nobody", "bob")
	require.NoError(t, err)
	assert.Empty(t, tombs)
}

func TestStore_IdentitiesListsTheIdentitiesThatHaveEntries(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	ids, err := s.Identities(ctx)
	require.NoError(t, err)
	assert.Empty(t, ids)

	put(t, s, "weather", "config", configstore.KindRaw, "x", "alice")
	put(t, s, "boiler", "config", configstore.KindRaw, "x", "alice")
	put(t, s, "emptied", "config", configstore.KindRaw, "x", "alice")
	_, err = s.Delete(ctx, "emptied", "config", "alice")
	require.NoError(t, err)

	ids, err = s.Identities(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"boiler", "weather"}, ids)
}

func TestStore_EntriesSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "config.db")
	s, err := configdb.Open(path)
	require.NoError(t, err)
	want := put(t, s, "weather", "config", configstore.KindJSON, `{"a": 1}`, "alice")
	require.NoError(t, s.Close())

	s, err = configdb.Open(path)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Get(ctx, "weather", "config")
	require.NoError(t, err)
	assert.Equal(t, want, got)
	next := put(t, s, "weather", "config", configstore.KindJSON, `{"a": 2}`, "alice")
	assert.Equal(t, uint64(2), next.Version)
	assert.Equal(t, uint64(2), next.Revision)
}

func TestStore_FileIsCreatedReadableByItsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.db")
	s, err := configdb.Open(path)
	require.NoError(t, err)
	defer s.Close()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Equal(t, path, s.Path())
}

func TestStore_OpenRefusesAFileThatIsNotAConfigStore(t *testing.T) {
	dir := t.TempDir()

	text := filepath.Join(dir, "text.db")
	require.NoError(t, os.WriteFile(text, []byte(strings.Repeat("not a database\n", 1000)), 0o600))
	_, err := configdb.Open(text)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "configstore: open "+text+": ")

	// A bbolt file of another program.
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("sessions"))
		return err
	}))
	require.NoError(t, db.Close())
	_, err = configdb.Open(other)
	assert.EqualError(t, err, "configstore: open "+other+": not a capbus configuration store")

	_, err = configdb.Open(filepath.Join(dir, "missing", "config.db"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestStore_CanceledContextChangesNothing(t *testing.T) {
	s := openStore(t)
	put(t, s, "weather", "config", configstore.KindRaw, "v1", "alice")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := s.Put(ctx, "weather", "config", configstore.KindRaw, []byte("v2"), "alice")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Delete(ctx, "weather", "config", "alice")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Rollback(ctx, "weather", "config", 1, "alice")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.DeleteAll(ctx, "weather", "alice")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Get(ctx, "weather", "config")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.List(ctx, "weather")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.History(ctx, "weather", "config")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Changes(ctx, "weather", 0)
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Revision(ctx, "weather")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Identities(ctx)
	require.ErrorIs(t, err, context.Canceled)

	rev, err := s.Revision(context.Background(), "weather")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rev)
}

func TestStore_CallsAfterCloseFailWithErrClosed(t *testing.T) {
	ctx := context.Background()
	s, err := configdb.Open(filepath.Join(t.TempDir(), "config.db"))
	require.NoError(t, err)
	require.NoError(t, s.Close())

	_, err = s.Put(ctx, "weather", "config", configstore.KindRaw, []byte("x"), "alice")
	require.ErrorIs(t, err, configdb.ErrClosed)
	_, err = s.Get(ctx, "weather", "config")
	require.ErrorIs(t, err, configdb.ErrClosed)
	_, err = s.Identities(ctx)
	require.ErrorIs(t, err, configdb.ErrClosed)
}

// The second opener is a real second process (this test binary run again),
// since the lock is bbolt's flock on the file.
func TestStore_SecondOpenFromAnotherProcessFailsFastWithErrLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.db")
	s, err := configdb.Open(path)
	require.NoError(t, err)

	open := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childRoleEnv+"="+roleOpener, childPathEnv+"="+path, childLockEnv+"=100")
		out, err := cmd.Output()
		require.NoError(t, err)
		return strings.TrimSpace(string(out))
	}

	assert.Equal(t, "locked=true configstore: open "+path+": store is in use by another process (its lock was not free within 100ms)", open())
	require.NoError(t, s.Close())
	assert.Equal(t, "opened", open(), "the lock goes with the store's Close")
}
