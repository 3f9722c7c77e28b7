// Package pendingkeys keeps the file of CURVE keys that a platform refused
// at the handshake because auth.json does not know them (VOLTTRON's
// "pending" authentication requests), so that an operator can list and
// approve them: capbus auth pending, capbus auth approve.
//
// The file is JSON: an array of Key, most recently seen first, at most
// MaxKeys long. The platform adds to it through a Recorder, which writes at
// most once per WriteInterval however many handshakes are refused; the CLI
// edits it with Update. Both lock the file (internal/filelock), so neither
// loses the other's change.
package pendingkeys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/filelock"
	"github.com/capbus/capbus/keys"
)

// MaxKeys bounds the keys the file keeps: the most recently seen win.
const MaxKeys = 100

// WriteInterval is the shortest time between two writes of the file by a
// Recorder: refusals in between are coalesced into the next write.
const WriteInterval = time.Second

// lockWait bounds how long a write waits for another process's edit.
const lockWait = 5 * time.Second

// Key is one refused key.
type Key struct {
	// Key is the CURVE public key in Z85.
	Key string `json:"key"`
	// Address is the remote address of the last refused handshake.
	Address string `json:"address"`
	// FirstSeen and LastSeen are the times of the first and last refusal.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Count is how many handshakes of the key were refused.
	Count int `json:"count"`
}

// Read returns the keys of the file at path, most recently seen first. A
// missing or empty file has none.
func Read(path string) ([]Key, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(path, data)
}

func decode(path string, data []byte) ([]Key, error) {
	if len(data) == 0 {
		return nil, nil
	}
	var out []Key
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: not a pending-keys file: %w", path, err)
	}
	return out, nil
}

// Update changes the file at path under its lock: fn gets the current keys
// and returns the new list, which is sorted (most recently seen first),
// bounded to MaxKeys and written atomically (mode 0600).
func Update(ctx context.Context, path string, fn func([]Key) ([]Key, error)) error {
	unlock, err := filelock.Lock(ctx, path, lockWait)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := Read(path)
	if err != nil {
		return err
	}
	next, err := fn(cur)
	if err != nil {
		return err
	}
	sort.SliceStable(next, func(i, j int) bool { return next[i].LastSeen.After(next[j].LastSeen) })
	if len(next) > MaxKeys {
		next = next[:MaxKeys]
	}
	if next == nil {
		next = []Key{}
	}
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

// Recorder collects refused keys in memory and writes them to the file,
// at most once per WriteInterval. Record never blocks on the file.
type Recorder struct {
	path string
	log  *slog.Logger

	mu        sync.Mutex
	seen      map[keys.Key]*Key // refusals since the last write
	lastWrite time.Time
	timer     *time.Timer
	closed    bool
	wg        sync.WaitGroup // a scheduled write
}

// NewRecorder returns a Recorder for the file at path; write errors are
// logged on log.
func NewRecorder(path string, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{path: path, log: log, seen: map[keys.Key]*Key{}}
}

// Record notes one refused handshake of key from addr at now.
func (r *Recorder) Record(key keys.Key, addr string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if k := r.seen[key]; k != nil {
		k.Count++
		k.LastSeen, k.Address = now, addr
	} else {
		if len(r.seen) >= MaxKeys {
			r.dropOldest()
		}
		r.seen[key] = &Key{Key: key.Z85(), Address: addr, FirstSeen: now, LastSeen: now, Count: 1}
	}
	if r.timer != nil {
		return // a write is scheduled: it will take this refusal along
	}
	r.wg.Add(1)
	r.timer = time.AfterFunc(max(0, time.Until(r.lastWrite.Add(WriteInterval))), func() {
		defer r.wg.Done()
		r.flush()
	})
}

// dropOldest forgets the least recently seen key. r.mu is held.
func (r *Recorder) dropOldest() {
	var oldest keys.Key
	var t time.Time
	for k, v := range r.seen {
		if t.IsZero() || v.LastSeen.Before(t) {
			oldest, t = k, v.LastSeen
		}
	}
	delete(r.seen, oldest)
}

// flush writes the refusals collected since the last write.
func (r *Recorder) flush() {
	r.mu.Lock()
	batch := r.seen
	r.seen = map[keys.Key]*Key{}
	r.timer = nil
	r.lastWrite = time.Now()
	r.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	err := Update(ctx, r.path, func(cur []Key) ([]Key, error) {
		for _, b := range batch {
			found := false
			for i := range cur {
				if cur[i].Key == b.Key {
					cur[i].Count += b.Count
					cur[i].LastSeen, cur[i].Address = b.LastSeen, b.Address
					found = true
					break
				}
			}
			if !found {
				cur = append(cur, *b)
			}
		}
		return cur, nil
	})
	if err != nil {
		r.log.Warn("could not record refused keys", "file", r.path, "err", err)
	}
}

// Close writes what is still pending and stops the Recorder; later
// refusals are not recorded.
func (r *Recorder) Close() {
	r.mu.Lock()
	r.closed = true
	t := r.timer
	r.mu.Unlock()
	if t != nil && t.Stop() {
		r.wg.Done() // the scheduled write will not run: do it now
		r.flush()
	}
	r.wg.Wait()
}
