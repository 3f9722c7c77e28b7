// Package auth is capbus's authentication and authorization policy: CURVE
// keys, and the policy engine that reads auth.json and decides who may
// connect, which agent identities they may claim, which RPC methods they may
// call, and which topics they may publish or subscribe to.
//
// # The file
//
// auth.json is VOLTTRON's format 1.4 (allow, deny, roles, groups, version;
// an allow entry's domain, address, mechanism, credentials, user_id,
// identity, capabilities, roles, groups, rpc_method_authorizations, comments
// and enabled), with // and /* */ comments, plus capbus extensions:
// capability_groups, methods, topics, site and deny_by_default at the top
// level, and identities, agents and attributes in an allow entry. A "*"
// entry holds grants for every authenticated peer. docs/AUTH.md describes
// every key; auth.json.example at the repository root is a complete example.
//
// A file is accepted whole or not at all. Every error is a *ValidationError
// naming the file, line, column and JSON path:
//
//	auth.json:12:5: allow[1].capabilites: unknown key; did you mean "capabilities"?
//
// # Decisions
//
// Parse (or LoadFile, or a Store) compiles the file into an immutable
// Policy. Capability and role names are interned to bit indices, so a
// principal's effective permissions are a bitset (a Subject, resolved once
// per connection) and a method's needs are a bitset (a Requirement, resolved
// once per export); Decide is then a few word operations and does not
// allocate when it allows.
//
// Effective capabilities are: direct grants, plus roles, plus roles through
// groups, plus capability groups, plus the "*" entry's grants; then every
// "!name" negation from any of those sources removes (a negation wins over
// every grant); then the site limit caps the result; then, for an agent
// identity listed under the entry's "agents", the intersection with that
// list. Every Decision can explain itself: what was required, what was held
// and where each grant came from, what was missing, what a negation or limit
// removed, and the policy generation.
//
// # Reload
//
// A Store watches the file's directory, debounces changes, validates and
// swaps the policy atomically, and tells subscribers (the platform then
// disconnects removed keys and re-judges live peers). A bad edit keeps the
// last good policy. A missing, empty or deleted file means a closed policy:
// nobody is admitted, never everybody.
package auth
