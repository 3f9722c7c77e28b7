package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/atomicfile"
)

// lockTimeout bounds how long an edit waits for another edit of the same
// file to finish.
const lockTimeout = 10 * time.Second

// errLocked means another capbus process kept auth.json locked.
var errLocked = errors.New("auth.json is being edited by another process")

// authEditor edits one auth.json: every edit takes an exclusive lock on a
// sidecar lock file, reads and validates the current file, applies the
// change, validates the result as the platform would, and replaces the file
// atomically (write a temporary file, rename). A failed edit leaves the file
// untouched.
type authEditor struct {
	path   string
	notice io.Writer     // where notes for the operator go (stderr)
	wait   time.Duration // how long to wait for another edit's lock
}

// lock takes the edit lock, polling while another process holds it.
func (e *authEditor) lock() (unlock func(), err error) {
	f, err := os.OpenFile(e.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.path, err)
	}
	deadline := time.Now().Add(e.wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s: %w (waited %s)", e.path, errLocked, e.wait)
			}
			return nil, fmt.Errorf("%s: lock: %w", e.path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// read parses the file. A missing file reads as an empty document.
func (e *authEditor) read() (*auth.File, []byte, error) {
	data, err := os.ReadFile(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &auth.File{}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &auth.File{}, data, nil
	}
	f, err := auth.ParseFile(e.path, data)
	if err != nil {
		return nil, nil, err
	}
	return f, data, nil
}

// load reads and validates the file without locking, for read-only commands.
func (e *authEditor) load() (*auth.File, error) {
	f, _, err := e.read()
	return f, err
}

// edit applies change under the lock and writes the result if it is valid.
func (e *authEditor) edit(change func(f *auth.File) error) error {
	unlock, err := e.lock()
	if err != nil {
		return err
	}
	defer unlock()
	f, old, err := e.read()
	if err != nil {
		return fmt.Errorf("current file is invalid, fix it first (capbus auth check): %w", err)
	}
	if err := change(f); err != nil {
		return err
	}
	out, err := f.Marshal()
	if err != nil {
		return err
	}
	// Validate exactly what will be written, as the platform will read it.
	if _, err := auth.Parse(e.path, out); err != nil {
		return fmt.Errorf("edit refused, the file would be invalid: %w", err)
	}
	mode := fs.FileMode(0o600)
	if st, err := os.Stat(e.path); err == nil {
		mode = st.Mode().Perm()
	}
	if len(old) > 0 {
		if err := atomicfile.Write(e.path+".bak", old, mode); err != nil {
			return fmt.Errorf("writing backup: %w", err)
		}
		if bytes.Contains(old, []byte("//")) || bytes.Contains(old, []byte("/*")) {
			fmt.Fprintf(e.notice, "note: comments in %s are not kept by edits; the previous file is in %s.bak\n", e.path, e.path)
		}
	}
	return atomicfile.Write(e.path, out, mode)
}

// findEntry returns the index of the allow entry of user, or an error that
// exits with "not found".
func findEntry(f *auth.File, user string) (int, error) {
	for i := range f.Allow {
		if f.Allow[i].UserID == user {
			return i, nil
		}
	}
	return -1, withCode(exitNotFound, fmt.Errorf("no allow entry with user_id %q", user))
}
