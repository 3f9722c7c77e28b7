// Package configstore is the data model of capbus's configuration store:
// VOLTTRON's named, per-agent configuration entries, shared by the store
// that keeps them (package configdb, which the platform opens), the wire
// format and the agent SDK. It holds no database: an agent that imports
// it, through the SDK, links no storage engine.
//
// An operator stores entries for an agent identity ("config",
// "devices/boiler", ...), each of one [Kind]: JSON, CSV or raw text. Every
// write is validated before it is stored ([Validate]), and the SDK
// validates a Put before sending it; a refused write changes nothing and
// its error names the entry, line and column ([InputError]). An [Entry] is
// one version of an entry, with its version, the identity's revision, who
// made the change and when; an agent reads its configuration with
// [Entry.Value] or [Entry.Decode].
//
// The limits of identities, entry names and user ids ([MaxIdentity],
// [MaxName], [MaxUser]) and their checks ([CheckIdentity], [CheckName],
// [CheckUser], [CheckKind]) are here so that the store and its clients
// agree on them. Errors match [ErrNotFound] or [ErrInvalid] with
// errors.Is; the store's own conditions (a locked, closed or corrupt file)
// are configdb's errors.
package configstore
