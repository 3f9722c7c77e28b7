package auth_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/rpc"
)

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type storeFixture struct {
	t      *testing.T
	path   string
	store  *auth.Store
	events chan auth.ReloadEvent
	logs   *logBuffer
}

func openStore(t *testing.T, initial string) *storeFixture {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	if initial != "" {
		require.NoError(t, os.WriteFile(path, []byte(initial), 0o600))
	}
	logs := &logBuffer{}
	s, err := auth.OpenStore(context.Background(), path,
		auth.WithDebounce(50*time.Millisecond), auth.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if initial != "" {
		require.NoError(t, err)
	}
	require.NotNil(t, s)
	t.Cleanup(func() { _ = s.Close() })
	f := &storeFixture{t: t, path: path, store: s, events: make(chan auth.ReloadEvent, 64), logs: logs}
	s.Subscribe(func(ev auth.ReloadEvent) { f.events <- ev })
	return f
}

// await returns the first event satisfying ok, failing after five seconds
// (a bound for a loaded machine, not a measure of speed).
func (f *storeFixture) await(what string, ok func(auth.ReloadEvent) bool) auth.ReloadEvent {
	f.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-f.events:
			if ok(ev) {
				return ev
			}
		case <-deadline:
			f.t.Fatalf("no reload event (%s) within five seconds", what)
			return auth.ReloadEvent{}
		}
	}
}

func (f *storeFixture) allowed(user string) bool {
	p := f.store.Policy()
	s, err := p.Subject(rpc.Principal{UserID: user, Identity: user})
	if err != nil {
		return false
	}
	return p.Decide(s, p.Requirement(weatherAgent, "temperature", temperature), nil).Allowed
}

func weatherPolicy(bobbyCaps string) string {
	return `{"allow": [
	  {"user_id": "Alice", "credentials": "` + keyAlice + `", "capabilities": ["can_read_temp"]},
	  {"user_id": "Bobby", "credentials": "` + keyBobby + `", "capabilities": [` + bobbyCaps + `]}]}`
}

func hasUser(user string) func(auth.ReloadEvent) bool {
	return func(ev auth.ReloadEvent) bool {
		if ev.Err != nil {
			return false
		}
		_, err := ev.Policy.Subject(rpc.Principal{UserID: user})
		return err == nil
	}
}

func bobbyMay(ev auth.ReloadEvent) bool {
	if ev.Err != nil {
		return false
	}
	s, err := ev.Policy.Subject(rpc.Principal{UserID: "Bobby"})
	return err == nil && ev.Policy.Decide(s, ev.Policy.Requirement(weatherAgent, "temperature", temperature), nil).Allowed
}

func TestStore_EditTakesEffectWithinOneSecond(t *testing.T) {
	f := openStore(t, weatherPolicy(""))
	assert.Equal(t, uint64(1), f.store.Policy().Generation())
	assert.False(t, f.allowed("Bobby"))

	require.NoError(t, os.WriteFile(f.path, []byte(weatherPolicy(`"can_read_temp"`)), 0o600))
	ev := f.await("Bobby granted", bobbyMay)
	assert.Greater(t, ev.Generation, uint64(1))
	assert.Equal(t, ev.Generation, f.store.Policy().Generation())
	assert.True(t, f.allowed("Bobby"))
}

func TestStore_RenameOverTheFileWorks(t *testing.T) {
	f := openStore(t, weatherPolicy(""))
	// What editors do: write a temporary file, then rename it over the original.
	require.NoError(t, atomicfile.Write(f.path, []byte(weatherPolicy(`"can_read_temp"`)), 0o600))
	f.await("Bobby granted after rename", bobbyMay)
	assert.True(t, f.allowed("Bobby"))
}

func TestStore_BrokenEditKeepsTheOldPolicyAndReportsTheError_FixTakesEffect(t *testing.T) {
	f := openStore(t, weatherPolicy(""))
	old := f.store.Policy()

	broken := strings.Replace(weatherPolicy(`"can_read_temp"`), `"capabilities": ["can_read_temp"]},`, `"capabilites": ["can_read_temp"]},`, 1)
	require.NoError(t, atomicfile.Write(f.path, []byte(broken), 0o600))
	ev := f.await("rejected edit", func(ev auth.ReloadEvent) bool { return ev.Err != nil })
	var ve *auth.ValidationError
	require.ErrorAs(t, ev.Err, &ve)
	assert.Equal(t, 2, ve.Line)
	assert.Contains(t, ve.Error(), `did you mean "capabilities"?`)
	assert.Same(t, old, ev.Policy, "the last good policy stays in force")
	assert.Same(t, old, f.store.Policy())
	assert.True(t, f.allowed("Alice"))
	assert.Contains(t, f.logs.String(), "keeping the previous policy")
	rej := f.store.Rejected()
	require.NotNil(t, rej, "the store says the file on disk is not the policy in force")
	assert.Equal(t, 2, rej.Line)

	require.NoError(t, atomicfile.Write(f.path, []byte(weatherPolicy(`"can_read_temp"`)), 0o600))
	ev = f.await("fixed edit", bobbyMay)
	assert.Greater(t, ev.Generation, old.Generation())
	assert.Nil(t, f.store.Rejected(), "the file on disk is in force again")
}

func TestStore_DeletingTheFileDeniesEveryone(t *testing.T) {
	f := openStore(t, weatherPolicy(""))
	require.True(t, f.allowed("Alice"))
	require.NoError(t, os.Remove(f.path))
	ev := f.await("deletion", func(ev auth.ReloadEvent) bool { return ev.Policy.Closed() })
	require.ErrorIs(t, ev.Err, auth.ErrNoPolicy)
	assert.Equal(t, uint64(2), ev.Generation)
	assert.False(t, f.allowed("Alice"))
	_, err := f.store.Policy().Authenticate(key(t, keyAlice), "")
	require.Error(t, err)
	assert.Contains(t, f.logs.String(), "denying everyone")

	// Recreating it restores the policy.
	require.NoError(t, os.WriteFile(f.path, []byte(weatherPolicy("")), 0o600))
	f.await("recreated", hasUser("Alice"))
	assert.True(t, f.allowed("Alice"))
}

func TestStore_MissingFileAtStartIsAClosedPolicy(t *testing.T) {
	f := openStore(t, "")
	p := f.store.Policy()
	assert.True(t, p.Closed())
	assert.False(t, f.allowed("Alice"))
	// A warning, not an error: a new home gets its file right after.
	assert.Contains(t, f.logs.String(), "level=WARN msg=\"auth policy file does not exist (yet): every peer is refused until it is written\"")

	require.NoError(t, os.WriteFile(f.path, []byte(weatherPolicy("")), 0o600))
	f.await("created", hasUser("Alice"))
	assert.True(t, f.allowed("Alice"))
}

func TestStore_OpenReturnsTheLoadError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	s, err := auth.OpenStore(context.Background(), path, auth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.ErrorIs(t, err, auth.ErrNoPolicy)
	require.NotNil(t, s)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")

	require.NoError(t, os.WriteFile(path, []byte(`{"allow": [{"user_id": 1}]}`), 0o600))
	s, err = auth.OpenStore(context.Background(), path, auth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	var ve *auth.ValidationError
	require.True(t, errors.As(err, &ve))
	assert.True(t, s.Policy().Closed(), "an invalid file at start admits nobody")
	require.NoError(t, s.Close())
}

func TestLoadFile_MissingOrEmptyFileIsClosedPolicyWithErrNoPolicy(t *testing.T) {
	dir := t.TempDir()
	p, err := auth.LoadFile(filepath.Join(dir, "absent.json"))
	require.ErrorIs(t, err, auth.ErrNoPolicy)
	require.NotNil(t, p)
	assert.True(t, p.Closed())

	empty := filepath.Join(dir, "empty.json")
	require.NoError(t, os.WriteFile(empty, []byte("  \n"), 0o600))
	p, err = auth.LoadFile(empty)
	require.ErrorIs(t, err, auth.ErrNoPolicy)
	require.NotNil(t, p)
	assert.True(t, p.Closed())
}

func TestStore_StopsWhenContextIsDone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	require.NoError(t, os.WriteFile(path, []byte(weatherPolicy("")), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	s, err := auth.OpenStore(ctx, path, auth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	cancel()
	require.NoError(t, s.Close())
}

func TestStore_UnrelatedChangeInTheDirectoryIsNotAReload(t *testing.T) {
	f := openStore(t, weatherPolicy(""))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(f.path), "other.txt"), []byte("x"), 0o600))
	require.NoError(t, os.WriteFile(f.path, []byte(weatherPolicy(`"can_read_temp"`)), 0o600))
	ev := f.await("the real edit", func(ev auth.ReloadEvent) bool { return true })
	if ev.Err == nil { // a partial write may be seen first; the first good event is generation 2
		assert.Equal(t, uint64(2), ev.Generation)
	}
}

func TestStore_SymlinkSwapIsSeen(t *testing.T) {
	// The layout Kubernetes uses for mounted ConfigMaps:
	// auth.json -> ..data/auth.json, ..data -> ..v1, swapped by renaming a new link over ..data.
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "..v1"), filepath.Join(dir, "..v2")
	require.NoError(t, os.Mkdir(v1, 0o700))
	require.NoError(t, os.Mkdir(v2, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(v1, "auth.json"), []byte(weatherPolicy("")), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(v2, "auth.json"), []byte(weatherPolicy(`"can_read_temp"`)), 0o600))
	require.NoError(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	path := filepath.Join(dir, "auth.json")
	require.NoError(t, os.Symlink(filepath.Join("..data", "auth.json"), path))

	s, err := auth.OpenStore(context.Background(), path, auth.WithDebounce(20*time.Millisecond),
		auth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	events := make(chan auth.ReloadEvent, 16)
	s.Subscribe(func(ev auth.ReloadEvent) { events <- ev })

	require.NoError(t, os.Symlink("..v2", filepath.Join(dir, "..tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..tmp"), filepath.Join(dir, "..data")))
	select {
	case ev := <-events:
		require.NoError(t, ev.Err)
		assert.True(t, bobbyMay(ev))
	case <-time.After(time.Second):
		t.Fatal("symlink swap not seen within one second")
	}
}

func TestStore_ABrieflyEmptyFileKeepsThePolicyInForce(t *testing.T) {
	f := openStore(t, weatherPolicy(""))
	old := f.store.Policy()
	// An editor that truncates, then writes: the watcher sees the empty file.
	require.NoError(t, os.WriteFile(f.path, nil, 0o600))
	ev := f.await("the empty file", func(ev auth.ReloadEvent) bool { return errors.Is(ev.Err, auth.ErrEmptyFile) })
	assert.Same(t, old, ev.Policy, "the policy in force is kept")
	assert.False(t, f.store.Policy().Closed())
	require.NoError(t, os.WriteFile(f.path, []byte(weatherPolicy(`"can_read_temp"`)), 0o600))
	f.await("the written file", bobbyMay)
	// The confirming read finds the file written: no closed policy, ever.
	require.NoError(t, f.store.Reload())
	for {
		select {
		case ev := <-f.events:
			require.False(t, ev.Policy.Closed(), "a closed policy was installed: %v", ev.Err)
			continue
		default:
		}
		break
	}
	assert.True(t, f.allowed("Alice"))
}

func TestStore_AFileStillEmptyAtTheConfirmingReadClosesThePolicy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	require.NoError(t, os.WriteFile(path, []byte(weatherPolicy("")), 0o600))
	const confirm = 300 * time.Millisecond
	s, err := auth.OpenStore(context.Background(), path, auth.WithDebounce(20*time.Millisecond),
		auth.WithEmptyConfirm(confirm), auth.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	closed := make(chan time.Time, 1)
	s.Subscribe(func(ev auth.ReloadEvent) {
		if ev.Policy.Closed() {
			select {
			case closed <- time.Now():
			default:
			}
		}
	})
	emptied := time.Now()
	require.NoError(t, os.WriteFile(path, []byte("  // nothing\n"), 0o600))
	select {
	case at := <-closed:
		assert.GreaterOrEqual(t, at.Sub(emptied), confirm, "closed only after the confirming read")
	case <-time.After(5 * time.Second):
		t.Fatal("a deliberately emptied file never closed the policy")
	}
	assert.True(t, s.Policy().Closed())
}

// TestStore_WritesToOtherFilesOfTheDirectoryDoNotHoldTheReloadBack: the
// audit log lives beside auth.json; its writes must not keep pushing the
// debounce back.
func TestStore_WritesToOtherFilesOfTheDirectoryDoNotHoldTheReloadBack(t *testing.T) {
	f := openStore(t, weatherPolicy(""))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		log, err := os.OpenFile(filepath.Join(filepath.Dir(f.path), "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return
		}
		defer log.Close()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = log.WriteString(`{"action":"call"}` + "\n")
			}
		}
	}()
	defer func() { close(stop); <-done }()
	require.NoError(t, atomicfile.Write(f.path, []byte(weatherPolicy(`"can_read_temp"`)), 0o600))
	f.await("the grant, despite the audit log's writes", bobbyMay)
}
