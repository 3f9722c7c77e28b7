package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
)

// Environment of the platform child of the crash test.
const (
	crashChildEnv = "CAPBUS_TEST_CONFIG_CRASH_CHILD" // "1" in the child
	crashAuthEnv  = "CAPBUS_TEST_CONFIG_CRASH_AUTH"
	crashDBEnv    = "CAPBUS_TEST_CONFIG_CRASH_DB"
	crashAddrEnv  = "CAPBUS_TEST_CONFIG_CRASH_ADDR"
	crashKeyEnv   = "CAPBUS_TEST_CONFIG_CRASH_KEY"
)

// TestConfigCrashChild is the platform process of the crash test: it runs
// a platform with a configuration store until its standard input closes
// (or it is killed). It does nothing in a normal test run.
func TestConfigCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("the platform process of TestConfig_AcknowledgedWritesSurviveAPlatformSIGKILL")
	}
	kp, err := keys.Load(os.Getenv(crashKeyEnv))
	require.NoError(t, err)
	p, err := platform.New(platform.WithAddress(os.Getenv(crashAddrEnv)), platform.WithKeyPair(kp),
		platform.WithAuthFile(os.Getenv(crashAuthEnv)), platform.WithConfigStore(os.Getenv(crashDBEnv)),
		platform.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	if p.Addr() == "" {
		cancel()
		t.Fatalf("listen: %v", <-done)
	}
	fmt.Printf("ready %s\n", p.Addr())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	require.NoError(t, <-done)
}

// crashPlatform is a running platform child.
type crashPlatform struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	exited chan struct{}
}

func startCrashPlatform(t *testing.T, env []string) *crashPlatform {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestConfigCrashChild$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &crashPlatform{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.HasPrefix(sc.Text(), "ready ") {
				close(ready)
				signalled = true
			}
		}
		_ = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	select {
	case <-ready:
	case <-c.exited:
		t.Fatal("the platform process exited before it was ready")
	case <-time.After(waitFor):
		t.Fatal("the platform process did not start")
	}
	return c
}

// kill kills the platform with SIGKILL and waits for it to be gone.
func (c *crashPlatform) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-c.exited:
	case <-time.After(waitFor):
		t.Fatal("the platform process outlived SIGKILL")
	}
	ws := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "the platform ended by %v", c.cmd.ProcessState)
}

// An operator's agent writes the weather agent's configuration from four
// goroutines while the platform process is killed with SIGKILL, three times
// over the same store. After each kill the store is consistent, holds every
// write the platform acknowledged (and at most the one write per writer
// that was in flight), and once the platform is back the weather agent,
// which reconnects by itself, has exactly the store's entries.
func TestConfig_AcknowledgedWritesSurviveAPlatformSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the platform as a process and kills it")
	}
	const rounds, writers, namesPerWriter = 3, 4, 3
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)

	b := newBus(t, configUsers(), nil) // keys and auth.json; its own platform is not used
	b.stop()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "platform.json")
	require.NoError(t, keys.Save(keyFile, b.server))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "tcp://" + l.Addr().String()
	require.NoError(t, l.Close())
	db := filepath.Join(dir, "config.db")
	env := []string{crashChildEnv + "=1", crashAuthEnv + "=" + b.authFile, crashDBEnv + "=" + db,
		crashAddrEnv + "=" + addr, crashKeyEnv + "=" + keyFile}
	b.addr = addr

	child := startCrashPlatform(t, env)
	op := b.agent("operator", "operator", nil, WithBackoff(5*time.Millisecond, 100*time.Millisecond))
	w := b.agent("weatherman", "weather", nil, WithBackoff(5*time.Millisecond, 100*time.Millisecond))
	store := op.ConfigStore("weather")

	acked := map[string]map[uint64]string{} // name -> version -> data
	var ackMu sync.Mutex
	for round := range rounds {
		if round > 0 {
			child = startCrashPlatform(t, env)
			require.NoError(t, op.WaitConnected(context.Background()))
		}
		killAfter := 20 + rng.IntN(60)
		acks := make(chan struct{}, writers*1000)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				for n := 0; ; n++ {
					name := fmt.Sprintf("w%d/k%d", i, n%namesPerWriter)
					data := fmt.Sprintf(`{"writer": %d, "round": %d, "n": %d}`, i, round, n)
					e, err := store.Put(context.Background(), name, configstore.KindJSON, []byte(data))
					if err != nil {
						return // the platform is gone
					}
					ackMu.Lock()
					if acked[name] == nil {
						acked[name] = map[uint64]string{}
					}
					acked[name][e.Version] = data
					ackMu.Unlock()
					acks <- struct{}{}
				}
			})
		}
		for range killAfter {
			select {
			case <-acks:
			case <-time.After(waitFor):
				t.Fatalf("round %d: the writers stalled", round)
			}
		}
		child.kill(t)
		wg.Wait()
		n, beyond := checkStoreAfterKill(t, db, acked, writers)
		t.Logf("round %d: killed after %d acknowledged writes; %d acknowledged in all, %d writes in flight were stored too",
			round, killAfter, n, beyond)
	}

	// The platform comes back; the weather agent catches up by itself.
	startCrashPlatform(t, env)
	require.NoError(t, op.WaitConnected(context.Background()))
	want, err := store.List(context.Background())
	require.NoError(t, err)
	require.NotEmpty(t, want)
	require.Eventually(t, func() bool {
		got := w.Config().Entries()
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i].Name != want[i].Name || got[i].Version != want[i].Version || string(got[i].Data) != string(want[i].Data) {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond, "the weather agent has the store's entries")
}

// checkStoreAfterKill opens the store the platform was killed on and
// checks it against the acknowledged writes. It returns how many writes
// were acknowledged, and how many entries hold a write that was in flight.
func checkStoreAfterKill(t *testing.T, path string, acked map[string]map[uint64]string, writers int) (n, beyond int) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: waitFor})
	require.NoError(t, err)
	var problems []error
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, err)
		}
		return nil
	}))
	require.Empty(t, problems, "bbolt's own consistency check")
	require.NoError(t, bdb.Close())

	ctx := context.Background()
	s, err := configdb.Open(path)
	require.NoError(t, err)
	defer s.Close()
	for name, versions := range acked {
		n += len(versions)
		hist, err := s.History(ctx, "weather", name)
		require.NoError(t, err, name)
		cur, err := s.Get(ctx, "weather", name)
		require.NoError(t, err, name)
		assert.Equal(t, hist[0], cur, "%s: the current entry is the newest version", name)
		for i, e := range hist {
			if i > 0 {
				require.Equal(t, hist[i-1].Version-1, e.Version, "%s: versions without a gap", name)
			}
			require.NoError(t, configstore.Validate(e.Kind, name, e.Data), "%s version %d is whole", name, e.Version)
		}
		var latest uint64
		for v, data := range versions {
			latest = max(latest, v)
			if v+uint64(len(hist)) > cur.Version { // still kept
				assert.Equal(t, data, string(hist[cur.Version-v].Data), "%s: acknowledged version %d is stored", name, v)
			}
		}
		require.GreaterOrEqual(t, cur.Version, latest, "%s: no acknowledged write is lost", name)
		require.LessOrEqual(t, cur.Version, latest+1, "%s: at most the write in flight besides", name)
		if cur.Version > latest {
			beyond++
		}
	}
	assert.LessOrEqual(t, beyond, writers, "at most one write in flight per writer")
	changes, err := s.Changes(ctx, "weather", 0)
	require.NoError(t, err)
	rev, err := s.Revision(ctx, "weather")
	require.NoError(t, err)
	var last uint64
	for _, e := range changes {
		require.Greater(t, e.Revision, last, "the change feed is in revision order")
		last = e.Revision
	}
	require.Equal(t, rev, last, "the feed ends at the store's revision")
	return n, beyond
}
