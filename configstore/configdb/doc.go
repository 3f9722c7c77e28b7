// Package configdb is capbus's configuration store on disk: the entries of
// package configstore kept in an embedded database with a version history,
// rollback and a change feed. The platform opens it
// (platform.WithConfigStore); agents reach it through the platform and
// never import this package, so they do not link the database.
//
// An operator stores entries for an agent identity ("config",
// "devices/boiler", ...), each of one configstore.Kind: JSON, CSV or raw
// text. Every write is validated before it is stored (configstore.Validate);
// a refused write changes nothing and its error names the entry, line and
// column (configstore.InputError). Every change (put, delete, rollback)
// gives the entry a new version and the identity a new revision;
// [Store.Changes] returns what changed after a revision, so an agent that
// knows revision r catches up with one call.
//
// # Storage
//
// The store is one go.etcd.io/bbolt file. bbolt was chosen over SQLite
// (modernc.org/sqlite) because:
//
//   - it is pure Go with one small dependency (golang.org/x/sys); the
//     modernc SQLite port pulls in a C library translated to Go
//     (modernc.org/libc and friends), many megabytes of code to run a
//     key/value workload;
//   - each read-write transaction is committed with fsync before Update
//     returns, and its copy-on-write B+tree switches to the new tree by
//     writing one meta page last, so a crash leaves either the old or the
//     new state, never half a transaction, and no recovery step runs at open;
//   - its ordered keys give what the store needs without a query language:
//     a prefix scan for an entry's history and a scan from a revision for
//     the change feed;
//   - it takes an exclusive file lock, so a second process opening the
//     same file fails (after [WithLockTimeout]) instead of corrupting it.
//
// Layout: a bucket per identity holding the identity's revision counter and
// three buckets: "current" (name -> current version and a deleted flag),
// "history" (name, 0x00, big-endian version -> the record) and "feed"
// (big-endian revision -> name, one key per name: the revision of its
// latest change). Records are msgpack-encoded. Names and identities cannot
// contain control characters (configstore.CheckName,
// configstore.CheckIdentity), so the 0x00 separator is unambiguous. The
// file format is the same as before the store moved into this package
// ("capbus-configstore-1"), so existing files open unchanged.
//
// # Errors
//
// Refused input matches configstore.ErrInvalid, a missing entry or version
// configstore.ErrNotFound; a file held by another process gives
// [ErrLocked], a closed Store [ErrClosed], an undecodable record
// [ErrCorrupt]. Messages begin with "configstore:", the store's name for
// the people who read them.
//
// # Durability
//
// Put, Delete, DeleteAll and Rollback return only after their transaction
// is committed and fsynced. A Store is safe for concurrent use; bbolt runs
// one writer at a time.
package configdb
