// Package filelock serialises read-modify-write cycles of one file between
// processes with an advisory lock (flock) on a sidecar file, path+".lock".
package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ErrLocked is wrapped by the error of Lock when another process kept the
// lock for longer than the caller was willing to wait.
var ErrLocked = errors.New("locked by another process")

// pollInterval is how often Lock retries while another process holds the
// lock (flock has no wait with a deadline).
const pollInterval = 20 * time.Millisecond

// Lock takes the exclusive lock of path, retrying while another process
// holds it, for up to wait or until ctx ends. The returned function
// releases it.
func Lock(ctx context.Context, path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s: %w (waited %s)", path, ErrLocked, wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%s: %w: %w", path, ErrLocked, ctx.Err())
		case <-t.C:
		}
	}
}
