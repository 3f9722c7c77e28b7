package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ReloadEvent reports one reload to subscribers.
type ReloadEvent struct {
	// File is the policy file's path.
	File string
	// Policy is the policy now in force (the new one, the old one kept
	// after a rejected edit, or a closed policy after a deletion).
	Policy *Policy
	// Generation is Policy.Generation().
	Generation uint64
	// Err is non-nil when the edit was rejected and the old policy kept
	// (a *ValidationError), or when the file was deleted or emptied and a
	// closed policy installed (wrapping ErrNoPolicy).
	Err error
}

// StoreOption configures OpenStore.
type StoreOption interface{ apply(*storeConfig) }

type storeConfig struct {
	debounce time.Duration
	confirm  time.Duration
	log      *slog.Logger
}

// Defaults of the Store's options.
const (
	// DefaultDebounce is how long the Store waits after the last change to
	// the file before reading it. With the file watcher's own delay, an
	// edit is in force within 150 ms of the write.
	DefaultDebounce = 40 * time.Millisecond
	// DefaultEmptyConfirm is how long an empty or missing file must stay
	// so before the Store installs the closed policy: editors that truncate
	// before they write leave the file empty for far less.
	DefaultEmptyConfirm = 500 * time.Millisecond
)

type optionFunc func(*storeConfig)

func (f optionFunc) apply(c *storeConfig) { f(c) }

// WithDebounce sets how long the Store waits after the last change to the
// file before reloading it (default DefaultDebounce; zero or negative keeps
// the default), so an editor's several writes give one reload.
func WithDebounce(d time.Duration) StoreOption {
	return optionFunc(func(c *storeConfig) {
		if d > 0 {
			c.debounce = d
		}
	})
}

// WithEmptyConfirm sets how long a file found empty or missing must stay so
// before the closed policy is installed (default DefaultEmptyConfirm; zero
// or negative keeps the default).
func WithEmptyConfirm(d time.Duration) StoreOption {
	return optionFunc(func(c *storeConfig) {
		if d > 0 {
			c.confirm = d
		}
	})
}

// WithLogger sets the logger for loads, rejected edits and deletions
// (default slog.Default()).
func WithLogger(l *slog.Logger) StoreOption {
	return optionFunc(func(c *storeConfig) {
		if l != nil {
			c.log = l
		}
	})
}

// Store holds the policy in force for one auth.json and reloads it when the
// file changes. It watches the file's directory, so editors that write a
// temporary file and rename it over auth.json are seen. A reload validates
// the whole file and swaps the policy atomically; a bad or half-written
// edit keeps the last good policy and says why. A file found empty or
// missing keeps the last good policy too, unless it is still empty or
// missing when read again at least DefaultEmptyConfirm later: then a
// closed policy (nobody is allowed) is installed, so that a deliberate
// emptying still closes everything while an editor that truncates before
// writing never does. Every swap bumps the generation and notifies
// subscribers.
type Store struct {
	path    string
	cfg     storeConfig
	target  string // where path's symlinks lead; only the loop uses it after OpenStore
	cur     atomic.Pointer[Policy]
	watcher *fsnotify.Watcher

	mu       sync.Mutex // serializes reloads and guards last* and emptySince
	lastData []byte
	lastErr  error // the error lastData gave, if it was rejected
	// emptySince is when the file was first found empty or missing while a
	// policy from it was in force (zero: it was not); lastChange is when
	// the watcher last saw it change. The closed policy is installed only
	// by a read that finds the file empty or missing at least the
	// confirmation delay after both.
	emptySince time.Time
	lastChange time.Time
	confirmAt  chan time.Duration // asks the loop for a confirming read

	// notifyMu makes reloads and their notifications one step each, so
	// that subscribers see the reloads in order even when Reload is
	// called from outside the Store's goroutine.
	notifyMu sync.Mutex
	subMu    sync.Mutex
	subs     map[int]func(ReloadEvent)
	nextID   int

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// OpenStore loads the policy at path and watches it until ctx is done or
// Close is called. A missing, empty or invalid file at start installs a
// closed policy (nobody is allowed, never everybody) and is logged; the
// Store is still returned, watching, so that fixing the file takes effect,
// together with the load error (wrapping ErrNoPolicy, or a
// *ValidationError). OpenStore returns a nil Store only when the directory
// cannot be watched.
func OpenStore(ctx context.Context, path string, opts ...StoreOption) (*Store, error) {
	cfg := storeConfig{debounce: DefaultDebounce, confirm: DefaultEmptyConfirm, log: slog.Default()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("auth store: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("auth store: watch %s: %w", abs, err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		w.Close()
		return nil, fmt.Errorf("auth store: watch directory of %s: %w", abs, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Store{path: abs, cfg: cfg, watcher: w, confirmAt: make(chan time.Duration, 1),
		subs: map[int]func(ReloadEvent){}, cancel: cancel, done: make(chan struct{})}
	s.resolve()
	loadErr := s.initial()
	go s.loop(ctx)
	return s, loadErr
}

func (s *Store) initial() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	var p *Policy
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = fmt.Errorf("%w: %s does not exist; nobody is admitted: %w", ErrNoPolicy, s.path, err)
	case err != nil:
		err = fmt.Errorf("auth policy %s: %w", s.path, err)
	default:
		s.lastData = data
		p, err = Parse(s.path, data)
		if err != nil && !errors.Is(err, ErrNoPolicy) {
			s.lastErr = err
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Not an error yet: "capbus platform run" writes a closed file
		// into a new home once it listens, and an operator may write one.
		p = closedPolicy(s.path)
		s.cfg.log.Warn("auth policy file does not exist (yet): every peer is refused until it is written", "file", s.path)
	case err != nil:
		p = closedPolicy(s.path)
		s.cfg.log.Error("auth policy not loaded: closed policy in force, every peer is refused", "file", s.path, "err", err)
	default:
		s.cfg.log.Info("auth policy loaded", "file", s.path, "generation", p.gen, "users", len(p.users))
	}
	p.gen = 1
	s.cur.Store(p)
	return err
}

// Policy returns the policy in force. It never returns nil.
func (s *Store) Policy() *Policy { return s.cur.Load() }

// Rejected returns the validation error of the file on disk when the
// Store rejected it and an older policy (or, at start, a closed policy) is
// in force, and nil when the policy in force is the file on disk (or the
// file is missing or empty, which installs a closed policy). It reflects
// the Store's last read: an edit not yet seen by the watcher is not judged
// until the next reload.
func (s *Store) Rejected() *ValidationError {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ve *ValidationError
	if errors.As(s.lastErr, &ve) {
		return ve
	}
	return nil
}

// Path returns the absolute path of the watched file.
func (s *Store) Path() string { return s.path }

// Subscribe calls fn after every reload, in order (from the Store's
// goroutine, or from the caller of Reload); fn should not block for long
// and must not call Close or Reload. The returned
// function cancels the subscription.
func (s *Store) Subscribe(fn func(ReloadEvent)) (cancel func()) {
	s.subMu.Lock()
	id := s.nextID
	s.nextID++
	s.subs[id] = fn
	s.subMu.Unlock()
	return func() {
		s.subMu.Lock()
		delete(s.subs, id)
		s.subMu.Unlock()
	}
}

// Close stops watching. It is safe to call more than once.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		err = s.watcher.Close()
	})
	return err
}

// concerns reports whether a change of name, in the watched directory, may
// change what the file reads.
func (s *Store) concerns(name string) bool {
	if name == s.path {
		return true
	}
	base := filepath.Base(name)
	if strings.HasPrefix(base, "..") {
		return true
	}
	if t := s.target; t != "" && t != s.path && (name == t || filepath.Dir(name) == filepath.Dir(t)) {
		return true // the file is a symlink: its target changed
	}
	return false
}

// resolve notes where the file's symlinks lead, if anywhere.
func (s *Store) resolve() {
	if t, err := filepath.EvalSymlinks(s.path); err == nil {
		s.target = t
	}
}

func (s *Store) loop(ctx context.Context) {
	defer close(s.done)
	var timer, confirm *time.Timer
	var fire, confirmed <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if confirm != nil {
			confirm.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-s.confirmAt:
			if confirm == nil {
				confirm = time.NewTimer(d)
			} else {
				confirm.Reset(d)
			}
			confirmed = confirm.C
		case <-confirmed:
			confirmed = nil
			s.Reload()
		case ev, ok := <-s.watcher.Events:
			if !ok {
				return
			}
			// A change of the file schedules a read, and so does a change
			// of a ".." entry of the directory: Kubernetes ConfigMaps swap
			// a "..data" symlink. Other files of the directory (the audit
			// log beside auth.json) are ignored: their writes must not
			// hold the read back. An unchanged file is not reloaded.
			if !s.concerns(ev.Name) {
				continue
			}
			if strings.HasPrefix(filepath.Base(ev.Name), "..") {
				s.resolve()
			}
			s.mu.Lock()
			s.lastChange = time.Now()
			s.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(s.cfg.debounce)
			} else {
				timer.Reset(s.cfg.debounce)
			}
			fire = timer.C
		case err, ok := <-s.watcher.Errors:
			if !ok {
				return
			}
			s.cfg.log.Warn("auth policy watcher error; reloading to be safe", "file", s.path, "err", err)
			s.Reload()
		case <-fire:
			fire = nil
			s.Reload()
		}
	}
}

// Reload reads the file now (as the watcher does after a change) and
// returns the error of the file's current content, if it was rejected. An
// unchanged file is not reloaded and subscribers are not called again. A
// file found empty or missing keeps the policy in force until a read at
// least the confirmation delay later finds it so still.
func (s *Store) Reload() error {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	s.mu.Lock()
	ev, changed := s.reloadLocked()
	s.mu.Unlock()
	if changed {
		s.notify(ev)
	}
	return ev.Err
}

func (s *Store) reloadLocked() (ReloadEvent, bool) {
	old := s.cur.Load()
	ev := ReloadEvent{File: s.path}
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		ev.Policy, ev.Generation = old, old.gen
		ev.Err = fmt.Errorf("auth policy %s: %w", s.path, err)
		s.cfg.log.Error("auth policy reload failed: keeping the previous policy", "file", s.path, "generation", old.gen, "err", ev.Err)
		return ev, true
	}
	if err == nil && s.lastData != nil && bytes.Equal(data, s.lastData) {
		// Unchanged (an editor touching the file, another file in the
		// directory changing, an emptied file written back as it was):
		// nothing to report again.
		s.emptySince = time.Time{}
		ev.Policy, ev.Generation, ev.Err = old, old.gen, s.lastErr
		return ev, false
	}
	var next *Policy
	var perr error
	empty := err != nil // deleted
	if !empty {
		var p *Policy
		p, perr = Parse(s.path, data)
		empty = errors.Is(perr, ErrNoPolicy)
		next = p
	}
	if empty {
		if old.closed {
			// Already closed: nothing changes.
			ev.Policy, ev.Generation = old, old.gen
			if err == nil {
				s.lastData = data
			}
			return ev, false
		}
		what := "empty"
		if err != nil {
			what = "missing"
		}
		now := time.Now()
		if s.emptySince.IsZero() {
			// Perhaps an editor that truncates before it writes: keep the
			// policy in force and look again later.
			s.emptySince = now
			s.askConfirm(s.cfg.confirm)
			ev.Policy, ev.Generation = old, old.gen
			ev.Err = fmt.Errorf("%w: %s is %s; keeping the policy in force (generation %d) unless it is still %s in %v",
				ErrEmptyFile, s.path, what, old.gen, what, s.cfg.confirm)
			s.cfg.log.Warn("auth policy file is "+what+": keeping the policy in force until a second read confirms it",
				"file", s.path, "generation", old.gen, "confirm_in", s.cfg.confirm)
			return ev, true
		}
		since := s.emptySince
		if s.lastChange.After(since) {
			since = s.lastChange // rewritten meanwhile: not the same emptiness
		}
		if wait := s.cfg.confirm - now.Sub(since); wait > 0 {
			s.askConfirm(wait)
			ev.Policy, ev.Generation = old, old.gen
			return ev, false
		}
		// Still empty or missing at the confirming read: close.
		s.emptySince = time.Time{}
		s.lastErr = nil
		if err == nil {
			s.lastData = data
		} else {
			s.lastData = nil
		}
		next = closedPolicy(s.path)
		ev.Err = fmt.Errorf("%w: %s was %s on two reads %v apart: closed policy in force, every peer is refused",
			ErrNoPolicy, s.path, what, s.cfg.confirm)
		s.cfg.log.Error("auth policy file is "+what+": denying everyone (closed policy)", "file", s.path, "generation", old.gen+1)
	} else {
		s.emptySince = time.Time{}
		s.lastData = data
		switch {
		case perr == nil:
			s.lastErr = nil
			s.cfg.log.Info("auth policy reloaded", "file", s.path, "generation", old.gen+1, "users", len(next.users))
		default:
			s.lastErr = perr
			ev.Policy, ev.Generation, ev.Err = old, old.gen, perr
			s.cfg.log.Error("auth policy edit rejected: keeping the previous policy", "file", s.path, "generation", old.gen, "err", perr)
			return ev, true
		}
	}
	next.gen = old.gen + 1
	s.cur.Store(next)
	ev.Policy, ev.Generation = next, next.gen
	return ev, true
}

// askConfirm asks the loop for a confirming read after d.
func (s *Store) askConfirm(d time.Duration) {
	select {
	case s.confirmAt <- d:
	default: // one is pending already
	}
}

func (s *Store) notify(ev ReloadEvent) {
	s.subMu.Lock()
	fns := make([]func(ReloadEvent), 0, len(s.subs))
	for _, id := range sortedInts(s.subs) {
		fns = append(fns, s.subs[id])
	}
	s.subMu.Unlock()
	for _, fn := range fns {
		s.safeCall(fn, ev)
	}
}

func (s *Store) safeCall(fn func(ReloadEvent), ev ReloadEvent) {
	defer func() {
		if r := recover(); r != nil {
			s.cfg.log.Error("auth policy subscriber panicked", "file", s.path, "panic", r)
		}
	}()
	fn(ev)
}
