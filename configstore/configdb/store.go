package configdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/capbus/capbus/configstore"
)

// Defaults of the options.
const (
	// DefaultHistory is how many versions of each entry are kept.
	DefaultHistory = 10
	// DefaultMaxSize bounds one entry's data (1 MiB). VOLTTRON has no
	// bound; one is kept here so that a mistaken upload of a large file is
	// refused rather than pushed to an agent.
	DefaultMaxSize = 1 << 20
	// DefaultLockTimeout is how long Open waits for another process to
	// release the store's file lock.
	DefaultLockTimeout = time.Second
)

// Sentinel errors of the store's file; match them with errors.Is. Refused
// input and missing entries are configstore.ErrInvalid and
// configstore.ErrNotFound.
var (
	// ErrLocked: another process has the store open.
	ErrLocked = errors.New("store is in use by another process")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store is closed")
	// ErrCorrupt: a stored record could not be decoded.
	ErrCorrupt = errors.New("store is corrupt")
)

// Option configures Open.
type Option interface{ apply(*config) }

type config struct {
	history     int
	maxSize     int
	lockTimeout time.Duration
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithHistory sets how many versions of each entry are kept, the current
// one and tombstones included (default DefaultHistory; less than 1 keeps
// the default). Older versions are pruned by the write that makes them
// too old; lowering the bound prunes each entry at its next change.
func WithHistory(n int) Option {
	return optionFunc(func(c *config) {
		if n >= 1 {
			c.history = n
		}
	})
}

// WithMaxSize bounds one entry's data, in bytes (default DefaultMaxSize;
// less than 1 keeps the default).
func WithMaxSize(n int) Option {
	return optionFunc(func(c *config) {
		if n >= 1 {
			c.maxSize = n
		}
	})
}

// WithLockTimeout sets how long Open waits for another process to release
// the file (default DefaultLockTimeout; zero or negative keeps the
// default). Open then fails with ErrLocked.
func WithLockTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.lockTimeout = d
		}
	})
}

// Store is a configuration store in one bbolt file. Its methods are safe for
// concurrent use. Every method checks its context before it starts; once a
// write has started it runs to its commit.
type Store struct {
	db  *bolt.DB
	cfg config
}

// Bucket and key names. Top level: metaBucket (format) and agentsBucket
// (one bucket per identity). Per identity: revKey and three buckets.
var (
	metaBucket    = []byte("meta")
	formatKey     = []byte("format")
	formatV1      = []byte("capbus-configstore-1")
	agentsBucket  = []byte("agents")
	revKey        = []byte("revision")
	currentBucket = []byte("current") // name -> version (8 bytes) + flags (1 byte)
	historyBucket = []byte("history") // name 0x00 version -> record
	feedBucket    = []byte("feed")    // revision -> name, for each name's latest change
)

const flagDeleted = 1

// Open opens the store at path, creating the file (mode 0600) if it does not
// exist; its directory must exist. If another process has the file open,
// Open fails with ErrLocked after the lock timeout.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := config{history: DefaultHistory, maxSize: DefaultMaxSize, lockTimeout: DefaultLockTimeout}
	for _, o := range opts {
		o.apply(&cfg)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: cfg.lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("configstore: open %s: %w (its lock was not free within %s)", path, ErrLocked, cfg.lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("configstore: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if meta == nil {
			if !isEmpty(tx) {
				return errors.New("not a capbus configuration store")
			}
			meta, err := tx.CreateBucket(metaBucket)
			if err != nil {
				return err
			}
			if err := meta.Put(formatKey, formatV1); err != nil {
				return err
			}
			_, err = tx.CreateBucket(agentsBucket)
			return err
		}
		if f := meta.Get(formatKey); !bytes.Equal(f, formatV1) {
			return fmt.Errorf("unknown store format %q (want %q)", f, formatV1)
		}
		if tx.Bucket(agentsBucket) == nil {
			return fmt.Errorf("%w: no %q bucket", ErrCorrupt, agentsBucket)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("configstore: open %s: %w", path, err)
	}
	return &Store{db: db, cfg: cfg}, nil
}

func isEmpty(tx *bolt.Tx) bool {
	k, _ := tx.Cursor().First()
	return k == nil
}

// Close closes the store. Calls after Close fail with ErrClosed.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("configstore: close: %w", err)
	}
	return nil
}

// Path returns the store's file name.
func (s *Store) Path() string { return s.db.Path() }

// Put stores data as the new version of the entry name of identity, made by
// user. It refuses (with a *configstore.InputError wrapping
// configstore.ErrInvalid, and changing nothing) a bad identity, name or
// user, an unknown kind, data larger than the size bound, and data that
// configstore.Validate refuses. It returns the stored entry once it is
// committed.
func (s *Store) Put(ctx context.Context, identity, name string, kind configstore.Kind, data []byte, user string) (configstore.Entry, error) {
	if err := checkEntry(ctx, identity, name, user); err != nil {
		return configstore.Entry{}, err
	}
	if err := s.validate(kind, name, data); err != nil {
		return configstore.Entry{}, err
	}
	rec := record{Kind: kind, Data: bytes.Clone(data)}
	return s.write(identity, name, user, func(*bolt.Bucket, *record) (record, error) { return rec, nil })
}

// Delete deletes the entry name of identity, keeping its history, and
// returns the tombstone. It gives configstore.ErrNotFound if there is no
// such entry.
func (s *Store) Delete(ctx context.Context, identity, name, user string) (configstore.Entry, error) {
	if err := checkEntry(ctx, identity, name, user); err != nil {
		return configstore.Entry{}, err
	}
	return s.write(identity, name, user, func(_ *bolt.Bucket, prev *record) (record, error) {
		if prev == nil || prev.Deleted {
			return record{}, notFound(identity, name)
		}
		return record{Deleted: true}, nil
	})
}

// DeleteAll deletes every entry of identity in one transaction (VOLTTRON's
// "delete the store") and returns the tombstones in name order, each with
// its own revision. It returns no entries and no error if identity has
// none.
func (s *Store) DeleteAll(ctx context.Context, identity, user string) ([]configstore.Entry, error) {
	if err := checkAgent(ctx, identity, user); err != nil {
		return nil, err
	}
	var out []configstore.Entry
	err := s.update(func(tx *bolt.Tx) error {
		ib := tx.Bucket(agentsBucket).Bucket([]byte(identity))
		if ib == nil {
			return nil
		}
		var names []string
		err := ib.Bucket(currentBucket).ForEach(func(k, v []byte) error {
			if _, deleted := decodeCurrent(v); !deleted {
				names = append(names, string(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, name := range names {
			e, err := s.change(ib, identity, name, user, func(*bolt.Bucket, *record) (record, error) {
				return record{Deleted: true}, nil
			})
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Rollback stores the data of an earlier version of the entry as its new
// version (the history is not rewritten) and returns the new entry. It works
// on a deleted entry too. It gives configstore.ErrNotFound if the version is
// not kept or is a tombstone.
func (s *Store) Rollback(ctx context.Context, identity, name string, version uint64, user string) (configstore.Entry, error) {
	if err := checkEntry(ctx, identity, name, user); err != nil {
		return configstore.Entry{}, err
	}
	return s.write(identity, name, user, func(ib *bolt.Bucket, prev *record) (record, error) {
		if prev == nil {
			return record{}, notFound(identity, name)
		}
		old, err := getRecord(ib, name, version)
		if err != nil {
			return record{}, err
		}
		switch {
		case old == nil && version > prev.Version:
			return record{}, fmt.Errorf("configstore: entry %q of %q has no version %d (its latest is %d): %w",
				name, identity, version, prev.Version, configstore.ErrNotFound)
		case old == nil:
			return record{}, fmt.Errorf("configstore: version %d of entry %q of %q is no longer kept (the store keeps %d versions): %w",
				version, name, identity, s.cfg.history, configstore.ErrNotFound)
		case old.Deleted:
			return record{}, fmt.Errorf("configstore: version %d of entry %q of %q is a deletion, with no data to restore: %w",
				version, name, identity, configstore.ErrNotFound)
		}
		// The bounds may have changed since the version was stored.
		if err := s.validate(old.Kind, name, old.Data); err != nil {
			return record{}, err
		}
		return record{Kind: old.Kind, Data: old.Data}, nil
	})
}

// Get returns the current entry name of identity. It gives
// configstore.ErrNotFound if there is none or it is deleted.
func (s *Store) Get(ctx context.Context, identity, name string) (configstore.Entry, error) {
	if err := checkEntry(ctx, identity, name, ""); err != nil {
		return configstore.Entry{}, err
	}
	var e configstore.Entry
	err := s.view(func(tx *bolt.Tx) error {
		ib := tx.Bucket(agentsBucket).Bucket([]byte(identity))
		if ib == nil {
			return notFound(identity, name)
		}
		rec, err := currentRecord(ib, name)
		if err != nil {
			return err
		}
		if rec == nil || rec.Deleted {
			return notFound(identity, name)
		}
		e = rec.entry(identity, name)
		return nil
	})
	return e, err
}

// List returns the current (not deleted) entries of identity, sorted by
// name. An identity without entries gives none and no error.
func (s *Store) List(ctx context.Context, identity string) ([]configstore.Entry, error) {
	if err := checkAgent(ctx, identity, ""); err != nil {
		return nil, err
	}
	var out []configstore.Entry
	err := s.view(func(tx *bolt.Tx) error {
		ib := tx.Bucket(agentsBucket).Bucket([]byte(identity))
		if ib == nil {
			return nil
		}
		return ib.Bucket(currentBucket).ForEach(func(k, v []byte) error {
			version, deleted := decodeCurrent(v)
			if deleted {
				return nil
			}
			rec, err := getRecord(ib, string(k), version)
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("configstore: %w: entry %q of %q: current version %d missing", ErrCorrupt, k, identity, version)
			}
			out = append(out, rec.entry(identity, string(k)))
			return nil
		})
	})
	return out, err
}

// History returns the kept versions of the entry, newest first, tombstones
// included. It gives configstore.ErrNotFound if the entry was never written.
func (s *Store) History(ctx context.Context, identity, name string) ([]configstore.Entry, error) {
	if err := checkEntry(ctx, identity, name, ""); err != nil {
		return nil, err
	}
	var out []configstore.Entry
	err := s.view(func(tx *bolt.Tx) error {
		ib := tx.Bucket(agentsBucket).Bucket([]byte(identity))
		if ib == nil {
			return notFound(identity, name)
		}
		prefix := historyPrefix(name)
		c := ib.Bucket(historyBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			rec, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("configstore: entry %q of %q: %w", name, identity, err)
			}
			out = append(out, rec.entry(identity, name))
		}
		if len(out) == 0 {
			return notFound(identity, name)
		}
		slices.Reverse(out)
		return nil
	})
	return out, err
}

// Changes returns the latest state of every entry of identity whose latest
// change has a revision after since: current entries and tombstones, in
// revision order, each name once. An agent that has applied the changes up
// to revision r asks for Changes(r) and then knows the last entry's
// Revision. Changes(0) includes the tombstones of deleted entries too.
func (s *Store) Changes(ctx context.Context, identity string, since uint64) ([]configstore.Entry, error) {
	if err := checkAgent(ctx, identity, ""); err != nil {
		return nil, err
	}
	var out []configstore.Entry
	err := s.view(func(tx *bolt.Tx) error {
		ib := tx.Bucket(agentsBucket).Bucket([]byte(identity))
		if ib == nil || since == ^uint64(0) {
			return nil
		}
		c := ib.Bucket(feedBucket).Cursor()
		for k, v := c.Seek(u64(since + 1)); k != nil; k, v = c.Next() {
			rec, err := currentRecord(ib, string(v))
			if err != nil {
				return err
			}
			if rec == nil || rec.Revision != binary.BigEndian.Uint64(k) {
				return fmt.Errorf("configstore: %w: feed revision %d of %q names %q, whose current record does not match",
					ErrCorrupt, binary.BigEndian.Uint64(k), identity, v)
			}
			out = append(out, rec.entry(identity, string(v)))
		}
		return nil
	})
	return out, err
}

// Revision returns the revision of identity's latest change, 0 if it has
// none.
func (s *Store) Revision(ctx context.Context, identity string) (uint64, error) {
	if err := checkAgent(ctx, identity, ""); err != nil {
		return 0, err
	}
	var rev uint64
	err := s.view(func(tx *bolt.Tx) error {
		if ib := tx.Bucket(agentsBucket).Bucket([]byte(identity)); ib != nil {
			rev = getU64(ib, revKey)
		}
		return nil
	})
	return rev, err
}

// Identities returns, sorted, the identities that have at least one current
// (not deleted) entry.
func (s *Store) Identities(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(agentsBucket).ForEachBucket(func(id []byte) error {
			ib := tx.Bucket(agentsBucket).Bucket(id)
			c := ib.Bucket(currentBucket).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if _, deleted := decodeCurrent(v); !deleted {
					out = append(out, string(id))
					break
				}
			}
			return nil
		})
	})
	return out, err
}

// checkAgent checks the context, the identity and the user.
func checkAgent(ctx context.Context, identity, user string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := configstore.CheckIdentity(identity); err != nil {
		return err
	}
	return configstore.CheckUser(user)
}

// checkEntry checks what checkAgent checks and the entry name.
func checkEntry(ctx context.Context, identity, name, user string) error {
	if err := checkAgent(ctx, identity, user); err != nil {
		return err
	}
	return configstore.CheckName(name)
}

// validate checks kind, size and data.
func (s *Store) validate(kind configstore.Kind, name string, data []byte) error {
	if err := configstore.CheckKind(kind, name); err != nil {
		return err
	}
	if len(data) > s.cfg.maxSize {
		return &configstore.InputError{File: name, Msg: fmt.Sprintf("%s data is %d bytes, more than the limit of %d", kind, len(data), s.cfg.maxSize)}
	}
	return configstore.Validate(kind, name, data)
}

// write runs one change of one entry in its own transaction.
func (s *Store) write(identity, name, user string, build func(ib *bolt.Bucket, prev *record) (record, error)) (configstore.Entry, error) {
	var e configstore.Entry
	err := s.update(func(tx *bolt.Tx) error {
		ib, err := identityBucket(tx, identity)
		if err != nil {
			return err
		}
		e, err = s.change(ib, identity, name, user, build)
		return err
	})
	if err != nil {
		return configstore.Entry{}, err
	}
	return e, nil
}

// change makes one change of one entry within a transaction: build gets the
// current record (nil if none) and returns the new one's kind, data and
// deleted flag; change numbers, stores and indexes it and prunes the
// history.
func (s *Store) change(ib *bolt.Bucket, identity, name, user string, build func(ib *bolt.Bucket, prev *record) (record, error)) (configstore.Entry, error) {
	prev, err := currentRecord(ib, name)
	if err != nil {
		return configstore.Entry{}, err
	}
	rec, err := build(ib, prev)
	if err != nil {
		return configstore.Entry{}, err
	}
	rec.Version = 1
	if prev != nil {
		rec.Version = prev.Version + 1
	}
	rec.Revision = getU64(ib, revKey) + 1
	rec.User = user
	rec.Time = timestamp().UnixNano()
	enc, err := msgpack.Marshal(&rec)
	if err != nil {
		return configstore.Entry{}, fmt.Errorf("configstore: encode: %w", err)
	}

	hist, cur, feed := ib.Bucket(historyBucket), ib.Bucket(currentBucket), ib.Bucket(feedBucket)
	var flags byte
	if rec.Deleted {
		flags = flagDeleted
	}
	err = errors.Join(
		ib.Put(revKey, u64(rec.Revision)),
		hist.Put(historyKey(name, rec.Version), enc),
		cur.Put([]byte(name), append(u64(rec.Version), flags)),
		feed.Put(u64(rec.Revision), []byte(name)),
	)
	if err == nil && prev != nil {
		err = feed.Delete(u64(prev.Revision))
	}
	if err == nil && rec.Version > uint64(s.cfg.history) {
		err = prune(hist, name, rec.Version-uint64(s.cfg.history))
	}
	if err != nil {
		return configstore.Entry{}, fmt.Errorf("configstore: write entry %q of %q: %w", name, identity, err)
	}
	return rec.entry(identity, name), nil
}

// prune deletes the versions of name up to and including upTo.
func prune(hist *bolt.Bucket, name string, upTo uint64) error {
	prefix := historyPrefix(name)
	var old [][]byte
	c := hist.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if binary.BigEndian.Uint64(k[len(prefix):]) > upTo {
			break
		}
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := hist.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	return dbError(s.db.Update(fn))
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	return dbError(s.db.View(fn))
}

func dbError(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("configstore: %w", ErrClosed)
	}
	return err
}

func identityBucket(tx *bolt.Tx, identity string) (*bolt.Bucket, error) {
	agents := tx.Bucket(agentsBucket)
	if ib := agents.Bucket([]byte(identity)); ib != nil {
		return ib, nil
	}
	ib, err := agents.CreateBucket([]byte(identity))
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{currentBucket, historyBucket, feedBucket} {
		if _, err := ib.CreateBucket(name); err != nil {
			return nil, err
		}
	}
	return ib, nil
}

func notFound(identity, name string) error {
	return fmt.Errorf("configstore: no entry %q for identity %q: %w", name, identity, configstore.ErrNotFound)
}

// record is an entry as stored in the history bucket.
type record struct {
	Kind     configstore.Kind `msgpack:"k"`
	Data     []byte           `msgpack:"d"`
	Version  uint64           `msgpack:"v"`
	Revision uint64           `msgpack:"r"`
	User     string           `msgpack:"u"`
	Time     int64            `msgpack:"t"` // Unix nanoseconds
	Deleted  bool             `msgpack:"x,omitempty"`
}

func (r *record) entry(identity, name string) configstore.Entry {
	return configstore.Entry{Identity: identity, Name: name, Kind: r.Kind, Data: r.Data, Version: r.Version,
		Revision: r.Revision, User: r.User, Time: time.Unix(0, r.Time).UTC(), Deleted: r.Deleted}
}

// decodeRecord decodes a stored record into memory of its own (bbolt's
// values live only as long as their transaction; msgpack copies).
func decodeRecord(v []byte) (*record, error) {
	var r record
	if err := msgpack.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &r, nil
}

// currentRecord returns the current record of name, nil if there is none.
func currentRecord(ib *bolt.Bucket, name string) (*record, error) {
	v := ib.Bucket(currentBucket).Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	version, _ := decodeCurrent(v)
	rec, err := getRecord(ib, name, version)
	if err == nil && rec == nil {
		err = fmt.Errorf("%w: entry %q: current version %d missing", ErrCorrupt, name, version)
	}
	return rec, err
}

// getRecord returns a version of name, nil if it is not kept.
func getRecord(ib *bolt.Bucket, name string, version uint64) (*record, error) {
	v := ib.Bucket(historyBucket).Get(historyKey(name, version))
	if v == nil {
		return nil, nil
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("configstore: entry %q version %d: %w", name, version, err)
	}
	return rec, nil
}

func decodeCurrent(v []byte) (version uint64, deleted bool) {
	if len(v) != 9 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), v[8]&flagDeleted != 0
}

func historyPrefix(name string) []byte {
	return append([]byte(name), 0)
}

func historyKey(name string, version uint64) []byte {
	return binary.BigEndian.AppendUint64(historyPrefix(name), version)
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func getU64(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// timestamp is the time of a change, at the precision it is stored with.
func timestamp() time.Time { return time.Unix(0, time.Now().UnixNano()).UTC() }
