package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/capbus/capbus/auth"
)

// lockTimeout bounds how long an edit waits for another edit of the same
// file to finish.
const lockTimeout = auth.DefaultLockWait

// authEditor edits one auth.json through auth.EditFile: locked against
// concurrent edits, validated before and after the change, written
// atomically with a .bak, keeping the file's comments and formatting.
type authEditor struct {
	path   string
	notice io.Writer     // where notes for the operator go (stderr)
	wait   time.Duration // how long to wait for another edit's lock
}

// load reads and validates the file without locking, for read-only
// commands. A missing or empty file reads as an empty document.
func (e *authEditor) load() (*auth.File, error) {
	data, err := os.ReadFile(e.path)
	if errors.Is(err, os.ErrNotExist) {
		return &auth.File{}, nil
	}
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &auth.File{}, nil
	}
	f, err := auth.ParseFile(e.path, data)
	if errors.Is(err, auth.ErrNoPolicy) {
		return &auth.File{}, nil
	}
	return f, err
}

// edit applies change and writes the result if it is valid. Nothing is
// printed here: commands report success only once edit returned nil.
func (e *authEditor) edit(ctx context.Context, change func(f *auth.File) error) error {
	notice := e.notice
	if notice == nil {
		notice = io.Discard
	}
	err := auth.EditFile(ctx, e.path, change, auth.WithLockWait(e.wait), auth.WithNotices(notice))
	if errors.Is(err, auth.ErrInvalidFile) {
		return fmt.Errorf("%w (run capbus auth check %s)", err, e.path)
	}
	return err
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
