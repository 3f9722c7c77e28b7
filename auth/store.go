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
	log      *slog.Logger
}

type optionFunc func(*storeConfig)

func (f optionFunc) apply(c *storeConfig) { f(c) }

// WithDebounce sets how long the Store waits after the last change to the
// file before reloading it (default 100ms; zero or negative keeps the
// default), so an editor's several writes give one reload.
func WithDebounce(d time.Duration) StoreOption {
	return optionFunc(func(c *storeConfig) {
		if d > 0 {
			c.debounce = d
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
// the whole file and swaps the policy atomically; a bad edit keeps the last
// good policy; a deleted or emptied file installs a closed policy (nobody is
// allowed). Every swap bumps the generation and notifies subscribers.
type Store struct {
	path    string
	cfg     storeConfig
	cur     atomic.Pointer[Policy]
	watcher *fsnotify.Watcher

	mu       sync.Mutex // serializes reloads and guards last*
	lastData []byte
	lastErr  error // the error lastData gave, if it was rejected

	subMu  sync.Mutex
	subs   map[int]func(ReloadEvent)
	nextID int

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
	cfg := storeConfig{debounce: 100 * time.Millisecond, log: slog.Default()}
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
	s := &Store{path: abs, cfg: cfg, watcher: w,
		subs: map[int]func(ReloadEvent){}, cancel: cancel, done: make(chan struct{})}
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
	if err != nil {
		p = closedPolicy(s.path)
		s.cfg.log.Error("auth policy not loaded: closed policy in force, every peer is refused", "file", s.path, "err", err)
	} else {
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

// Subscribe calls fn after every reload, from the Store's goroutine, in
// order; fn should not block for long and must not call Close. The returned
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

func (s *Store) loop(ctx context.Context) {
	defer close(s.done)
	var timer *time.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-s.watcher.Events:
			if !ok {
				return
			}
			// Any change in the directory schedules a read: besides the
			// file itself this catches symlink swaps (Kubernetes ConfigMaps
			// replace a "..data" link). An unchanged file is not reloaded.
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
// unchanged file is not reloaded and subscribers are not called again.
func (s *Store) Reload() error {
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
		// directory changing): nothing to report again.
		ev.Policy, ev.Generation, ev.Err = old, old.gen, s.lastErr
		return ev, false
	}
	var next *Policy
	switch {
	case err != nil: // deleted
		if old.closed && s.lastData == nil {
			ev.Policy, ev.Generation = old, old.gen
			return ev, false
		}
		s.lastData, s.lastErr = nil, nil
		next = closedPolicy(s.path)
		ev.Err = fmt.Errorf("%w: %s was deleted: closed policy in force, every peer is refused", ErrNoPolicy, s.path)
		s.cfg.log.Error("auth policy file deleted: denying everyone (closed policy)", "file", s.path, "generation", old.gen+1)
	default:
		s.lastData = data
		p, perr := Parse(s.path, data)
		switch {
		case perr == nil:
			s.lastErr = nil
			next = p
			s.cfg.log.Info("auth policy reloaded", "file", s.path, "generation", old.gen+1, "users", len(p.users))
		case errors.Is(perr, ErrNoPolicy):
			s.lastErr = nil
			next = closedPolicy(s.path)
			ev.Err = perr
			s.cfg.log.Error("auth policy file is empty: denying everyone (closed policy)", "file", s.path, "generation", old.gen+1)
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
