package configdb_test

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
)

type ack struct {
	name    string
	version uint64
	sha     string
}

// A writer process (a goroutine per name) is killed with SIGKILL in the
// middle of a burst of Puts, several times over the same file. After each
// kill the store opens, every acknowledged Put is there with its data,
// nothing is half-written, and versions and revisions have no gaps.
func TestStore_AcknowledgedWritesSurviveSIGKILL(t *testing.T) {
	const rounds, maxAcks = 5, 150
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	path := filepath.Join(t.TempDir(), "config.db")

	var acked []ack
	for round := range rounds {
		killAfter := 1 + rng.IntN(maxAcks)
		got := killWriter(t, path, killAfter)
		require.GreaterOrEqual(t, len(got), killAfter, "round %d: the writer died before %d acks", round, killAfter)
		acked = append(acked, got...)
		checkAfterCrash(t, path, acked, round+1)
	}
}

// killWriter starts the writer child on path, kills it with SIGKILL after
// n acks and returns every ack it printed (a Put may have returned
// between the nth ack and the kill: its ack is read from the pipe too).
func killWriter(t *testing.T, path string, n int) []ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childRoleEnv+"="+roleWriter, childPathEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var acks []ack
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		require.Len(t, f, 4, "writer line %q", sc.Text())
		require.Equal(t, "ack", f[0])
		v, err := strconv.ParseUint(f[2], 10, 64)
		require.NoError(t, err)
		acks = append(acks, ack{f[1], v, f[3]})
		if len(acks) == n {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		}
	}
	err = cmd.Wait()
	require.Error(t, err, "the writer must not end on its own; stderr: %s", stderr.String())
	require.NoError(t, ctx.Err(), "the writer outlived the deadline; stderr: %s", stderr.String())
	ws := err.(*exec.ExitError).Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "writer ended by %v; stderr: %s", err, stderr.String())
	return acks
}

// checkAfterCrash opens the store the writer was killed on, kills times,
// and checks it against all acks so far.
func checkAfterCrash(t *testing.T, path string, acked []ack, kills int) {
	t.Helper()
	ctx := context.Background()

	// The B+tree itself is consistent (bbolt's own check).
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	require.NoError(t, err)
	var problems []error
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, err)
		}
		return nil
	}))
	require.Empty(t, problems)
	require.NoError(t, db.Close())

	s, err := configdb.Open(path, configdb.WithHistory(crashHistory))
	require.NoError(t, err)
	defer s.Close()

	stored := map[string]map[uint64]string{} // name -> version -> sha
	var revisions []uint64
	for _, name := range crashNames {
		hist, err := s.History(ctx, "weather", name)
		require.NoError(t, err, name)
		cur, err := s.Get(ctx, "weather", name)
		require.NoError(t, err, name)
		assert.Equal(t, hist[0], cur, "%s: the current entry is the newest in the history", name)
		stored[name] = map[uint64]string{}
		for i, e := range hist {
			require.Equal(t, uint64(len(hist)-i), e.Version, "%s: versions 1..%d, no gap", name, len(hist))
			require.NoError(t, configstore.Validate(e.Kind, name, e.Data), "%s version %d", name, e.Version)
			require.Equal(t, sha(crashDoc(name, e.Version)), sha(e.Data), "%s version %d holds what was written", name, e.Version)
			stored[name][e.Version] = sha(e.Data)
			revisions = append(revisions, e.Revision)
		}
	}
	slices.Sort(revisions)
	rev, err := s.Revision(ctx, "weather")
	require.NoError(t, err)
	for i, r := range revisions {
		require.Equal(t, uint64(i+1), r, "revisions 1..%d, no gap or repeat", rev)
	}
	require.Equal(t, uint64(len(revisions)), rev)

	for _, a := range acked {
		require.Equal(t, a.sha, stored[a.name][a.version], "acknowledged %s version %d is stored", a.name, a.version)
	}
	// Besides the acked Puts, at most one in flight per writer at each kill.
	require.GreaterOrEqual(t, len(revisions), len(acked))
	assert.LessOrEqual(t, len(revisions)-len(acked), kills*len(crashNames))
	t.Logf("after %d kills: %d acks, %d changes stored", kills, len(acked), len(revisions))
}
