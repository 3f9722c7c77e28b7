package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/filelock"
)

// Sentinel errors of EditFile.
var (
	// ErrEditLocked means another process kept the file's edit lock for
	// longer than the edit was willing to wait.
	ErrEditLocked = errors.New("auth.json is being edited by another process")
	// ErrInvalidEdit is wrapped, together with the *ValidationError, by the
	// error of an edit whose result would not load: nothing was written.
	ErrInvalidEdit = errors.New("edit refused: the file would be invalid")
	// ErrInvalidFile is wrapped, together with the *ValidationError, when
	// the file on disk is invalid before the edit: fix it first.
	ErrInvalidFile = errors.New("the current file is invalid; fix it first")
)

// DefaultLockWait is how long EditFile waits for another edit of the same
// file to finish, unless WithLockWait says otherwise.
const DefaultLockWait = 10 * time.Second

// EditOption configures EditFile.
type EditOption interface{ applyEdit(*editConfig) }

type editConfig struct {
	wait   time.Duration
	notice io.Writer
}

type editOptionFunc func(*editConfig)

func (f editOptionFunc) applyEdit(c *editConfig) { f(c) }

// WithLockWait sets how long EditFile waits for another process's edit of
// the same file (default DefaultLockWait; zero: do not wait).
func WithLockWait(d time.Duration) EditOption {
	return editOptionFunc(func(c *editConfig) { c.wait = max(d, 0) })
}

// WithNotices sets where EditFile writes notes for the operator (one line
// each), such as "the edit could not keep the file's formatting". The
// default discards them.
func WithNotices(w io.Writer) EditOption {
	return editOptionFunc(func(c *editConfig) {
		if w != nil {
			c.notice = w
		}
	})
}

// EditFile changes the auth.json at path the way an operator's tool should:
//
//  1. it takes an exclusive lock on path+".lock" (waiting up to the lock
//     wait, failing with ErrEditLocked; ctx ends the wait too), so that
//     concurrent edits are serialised and none is lost;
//  2. it reads and parses the file (a missing or empty file is an empty
//     document; an invalid one fails with ErrInvalidFile);
//  3. it calls change with the parsed model; an error from change is
//     returned as is and nothing is written;
//  4. it writes the change into the file's text as targeted splices: only
//     the values, entries and keys that changed are replaced, inserted or
//     removed, so comments, key order and formatting of everything else are
//     kept. When a splice is impossible it renders the whole file again
//     (comments are then lost) and says so on the notices writer;
//  5. it validates the result exactly as the platform will load it (Parse);
//     an invalid result fails with ErrInvalidEdit and the *ValidationError;
//  6. it keeps the previous content in path+".bak" and replaces the file
//     atomically (a temporary file renamed over it), keeping its mode (0600
//     for a new file).
//
// A running platform picks the change up within a second. EditFile is the
// writer of the capbus CLI and of the platform's web console.
func EditFile(ctx context.Context, path string, change func(*File) error, opts ...EditOption) error {
	cfg := editConfig{wait: DefaultLockWait, notice: io.Discard}
	for _, o := range opts {
		if o != nil {
			o.applyEdit(&cfg)
		}
	}
	unlock, err := filelock.Lock(ctx, path, cfg.wait)
	if err != nil {
		if errors.Is(err, filelock.ErrLocked) {
			return fmt.Errorf("%w: %w", ErrEditLocked, err)
		}
		return fmt.Errorf("auth edit: %w", err)
	}
	defer unlock()

	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("auth edit: %w", err)
	}
	f := &File{}
	if len(bytes.TrimSpace(old)) > 0 {
		pf, err := ParseFile(path, old)
		if err != nil {
			if errors.Is(err, ErrNoPolicy) { // comments only: an empty document
				pf = &File{}
			} else {
				return fmt.Errorf("%s: %w: %w", path, ErrInvalidFile, err)
			}
		}
		f = pf
	}
	before, err := f.Marshal()
	if err != nil {
		return fmt.Errorf("auth edit: %w", err)
	}
	root := f.root
	if err := change(f); err != nil {
		return err
	}
	after, err := f.Marshal()
	if err != nil {
		return fmt.Errorf("auth edit: %w", err)
	}
	out := after
	if root != nil {
		spliced, ok := spliceEdit(old, root, before, after)
		if ok {
			out = spliced
		} else {
			fmt.Fprintf(cfg.notice, "note: this edit could not keep the formatting and comments of %s; the previous file is in %s.bak\n", path, path)
		}
	}
	// Validate exactly what will be written, as the platform will read it.
	if _, err := Parse(path, out); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEdit, err)
	}
	mode := fs.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	if len(old) > 0 {
		if err := atomicfile.Write(path+".bak", old, mode); err != nil {
			return fmt.Errorf("auth edit: writing the backup: %w", err)
		}
	}
	if err := atomicfile.Write(path, out, mode); err != nil {
		return fmt.Errorf("auth edit: %w", err)
	}
	return nil
}
