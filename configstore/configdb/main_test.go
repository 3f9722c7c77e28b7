package configdb_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
)

// The tests re-execute their own binary as a child process for what needs a
// second process (a writer to kill, a second opener of a locked file). The
// child's role is in childRoleEnv; its store file in childPathEnv.
const (
	childRoleEnv = "CAPBUS_CONFIGDB_CHILD"
	childPathEnv = "CAPBUS_CONFIGDB_PATH"
	childLockEnv = "CAPBUS_CONFIGDB_LOCK_MS"

	roleWriter = "writer"
	roleOpener = "opener"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childRoleEnv) {
	case roleWriter:
		os.Exit(runWriter(os.Getenv(childPathEnv)))
	case roleOpener:
		os.Exit(runOpener(os.Getenv(childPathEnv)))
	}
	goleak.VerifyTestMain(m)
}

// crashNames are the entries the writer child writes in turn.
var crashNames = []string{"config", "devices/boiler", "devices/chiller", "schedule"}

// crashHistory keeps every version, so the parent can check them all.
const crashHistory = 1 << 30

// writerPuts bounds each writer goroutine if nobody kills the child.
const writerPuts = 100_000

// crashDoc is the data the writer child writes as version v of name: a JSON
// document whose size swings between a few bytes and ~20 KiB (several bbolt
// pages), a pure function of (name, v) so that the parent can recompute
// what was attempted.
func crashDoc(name string, v uint64) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "{\"name\": %q, \"version\": %d, \"points\": [", name, v)
	n := int(v*53) % 700
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "{\"point\": \"p%05d\", \"v\": %d}", i, uint64(i)*v)
	}
	b.WriteString("]}\n")
	return []byte(b.String())
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// runWriter is the writer child: one goroutine per name in crashNames puts
// growing documents, going on from the version in the store, and prints
// "ack <name> <version> <sha256>" after each Put returns. With several
// writers a kill finds them at different points of their Puts.
func runWriter(path string) int {
	s, err := configdb.Open(path, configdb.WithHistory(crashHistory), configdb.WithLockTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		return 1
	}
	defer s.Close()
	failed := make(chan error, len(crashNames))
	for _, name := range crashNames {
		go func() { failed <- writeVersions(s, name) }()
	}
	for range crashNames {
		if err := <-failed; err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			return 1
		}
	}
	return 0
}

func writeVersions(s *configdb.Store, name string) error {
	ctx := context.Background()
	var v uint64
	if cur, err := s.Get(ctx, "weather", name); err == nil {
		v = cur.Version
	} else if !errors.Is(err, configstore.ErrNotFound) {
		return err
	}
	for range writerPuts {
		v++
		data := crashDoc(name, v)
		e, err := s.Put(ctx, "weather", name, configstore.KindJSON, data, "writer")
		if err != nil {
			return err
		}
		if e.Version != v {
			return fmt.Errorf("%s: put gave version %d, want %d", name, e.Version, v)
		}
		// One write(2) per line: lines from the goroutines do not mix.
		fmt.Printf("ack %s %d %s\n", name, v, sha(data))
	}
	return nil
}

// runOpener is the second-opener child: it opens the store with the lock
// timeout in milliseconds given in childLockEnv and prints the result.
func runOpener(path string) int {
	ms, _ := strconv.Atoi(os.Getenv(childLockEnv))
	s, err := configdb.Open(path, configdb.WithLockTimeout(time.Duration(ms)*time.Millisecond))
	if err != nil {
		fmt.Printf("locked=%t %v\n", errors.Is(err, configdb.ErrLocked), err)
		return 0
	}
	s.Close()
	fmt.Println("opened")
	return 0
}
