package vip

import (
	"fmt"
	"time"

	"github.com/capbus/capbus/configstore"
)

// Operations of the config subsystem (docs/PROTOCOL.md section 4,
// "config"), all addressed to the platform. Requests:
//
//	["config", "get", identity, name]
//	["config", "list", identity]
//	["config", "history", identity, name]
//	["config", "put", identity, name, kind, data]
//	["config", "delete", identity, name]
//	["config", "delete_store", identity]
//	["config", "rollback", identity, name, version]
//	["config", "watch", since]
//
// Answers: ["config", "entry", ENTRY] (get, put, delete, rollback),
// ["config", "entries", ENTRY...] (list, history, delete_store) and
// ["config", "watching", revision, ENTRY...] (watch). Pushed to a
// connection that watches its own store: ["config", "changed", ENTRY].
const (
	OpConfigGet         = "get"
	OpConfigList        = "list"
	OpConfigHistory     = "history"
	OpConfigPut         = "put"
	OpConfigDelete      = "delete"
	OpConfigDeleteStore = "delete_store"
	OpConfigRollback    = "rollback"
	OpConfigWatch       = "watch"

	OpConfigEntry    = "entry"
	OpConfigEntries  = "entries"
	OpConfigWatching = "watching"
	OpConfigChanged  = "changed"
)

// ConfigEntry is the ENTRY map of the config subsystem (docs/PROTOCOL.md
// section 4, "config"): one version of a configuration entry, or a
// tombstone (deleted, with no kind and no data).
type ConfigEntry struct {
	// Identity is the agent identity the entry belongs to.
	Identity string `msgpack:"identity"`
	// Name names the entry within the identity's store.
	Name string `msgpack:"name"`
	// Kind is "json", "csv" or "raw"; "" for a tombstone.
	Kind string `msgpack:"kind"`
	// Data is the text as stored.
	Data string `msgpack:"data"`
	// Version counts the changes of the entry.
	Version uint64 `msgpack:"version"`
	// Revision counts the changes of the identity's store.
	Revision uint64 `msgpack:"revision"`
	// User is the user id that made the change.
	User string `msgpack:"user"`
	// Time is when the change was made, RFC 3339 with nanoseconds, UTC.
	Time string `msgpack:"time"`
	// Deleted marks a tombstone.
	Deleted bool `msgpack:"deleted"`
}

// ConfigEntryOf returns the wire form of e.
func ConfigEntryOf(e configstore.Entry) ConfigEntry {
	return ConfigEntry{Identity: e.Identity, Name: e.Name, Kind: string(e.Kind), Data: string(e.Data),
		Version: e.Version, Revision: e.Revision, User: e.User, Time: e.Time.UTC().Format(time.RFC3339Nano),
		Deleted: e.Deleted}
}

// Entry returns the entry w carries. A time that is not RFC 3339 is an
// error.
func (w ConfigEntry) Entry() (configstore.Entry, error) {
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return configstore.Entry{}, fmt.Errorf("entry %q of %q: time %q: %w", w.Name, w.Identity, w.Time, err)
	}
	e := configstore.Entry{Identity: w.Identity, Name: w.Name, Kind: configstore.Kind(w.Kind),
		Version: w.Version, Revision: w.Revision, User: w.User, Time: t.UTC(), Deleted: w.Deleted}
	if !w.Deleted {
		e.Data = []byte(w.Data)
	}
	return e, nil
}
