package audit

import (
	"strings"
	"time"
)

// Actions: the "action" field of a record (docs/AUDIT.md has an example of
// each).
const (
	ActionHandshake  = "handshake"  // a key refused at the CURVE handshake
	ActionAdmit      = "admit"      // a hello accepted
	ActionRefuse     = "refuse"     // a hello refused
	ActionCall       = "call"       // a call or notify decided
	ActionPublish    = "publish"    // a publish refused
	ActionSubscribe  = "subscribe"  // a subscribe refused, or dropped by a reload
	ActionExport     = "export"     // an export refused
	ActionReply      = "reply"      // a reply matching no pending call, dropped
	ActionDisconnect = "disconnect" // a connection ended
	ActionRevoke     = "revoke"     // a reload closed a connection, or a grant was revoked
	ActionGrant      = "grant"      // a grant was added (console or CLI)
	ActionReload     = "reload"     // the policy was reloaded, or a reload was rejected
	ActionConfig     = "config"     // the configuration store was changed
	ActionStart      = "start"      // the platform started
	ActionStop       = "stop"       // the platform stopped
)

// Decisions: the "decision" field.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Record is one line of the audit log. It has no field for a secret, by
// design: keys are public keys (Z85), and nothing else identifies a peer.
// Callers must not put secrets in Reason or the other free-text fields.
type Record struct {
	// Time is when the event happened; Log.Record sets it to the clock's
	// time when it is zero. It is written in UTC, RFC 3339 with
	// nanoseconds.
	Time       time.Time `json:"time"`
	Action     string    `json:"action"`
	Decision   string    `json:"decision,omitempty"`
	UserID     string    `json:"user_id,omitempty"`
	Identity   string    `json:"identity,omitempty"`
	Key        string    `json:"key,omitempty"`
	Remote     string    `json:"remote,omitempty"`
	Peer       string    `json:"peer,omitempty"`
	Method     string    `json:"method,omitempty"`
	Topic      string    `json:"topic,omitempty"`
	Errno      int       `json:"errno,omitempty"`
	Required   []string  `json:"required,omitempty"`
	Missing    []string  `json:"missing,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	File       string    `json:"file,omitempty"`
	Generation uint64    `json:"generation,omitempty"`
	// Count is set on an aggregated line: how many further identical
	// events, after the first one written on its own, this line stands for.
	Count int `json:"count,omitempty"`
	// Window is set on an aggregated line: the aggregation period, e.g. "1s".
	Window string `json:"window,omitempty"`
	// Version, PID and Address describe the platform in start and stop
	// records.
	Version string `json:"version,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Address string `json:"address,omitempty"`
	// By is who made a change (a console or CLI user).
	By string `json:"by,omitempty"`
}

// aggregated reports whether r is a refusal that a caller can repeat at
// will, and so is aggregated: a deny of a handshake, hello, call, publish,
// subscribe, export or stray reply. Admissions, allowed calls,
// disconnects, revocations, reloads, configuration changes, start and stop
// never are.
func aggregated(r *Record) bool {
	if r.Decision != DecisionDeny {
		return false
	}
	switch r.Action {
	case ActionHandshake, ActionRefuse, ActionCall, ActionPublish, ActionSubscribe, ActionExport, ActionReply:
		return true
	}
	return false
}

// aggKey is what makes two refusals "identical". Remote is left out: a
// client retrying on new connections comes from a new port each time. So
// is the key of a refused handshake: a flood of handshakes with made-up
// keys is one refusal repeated, not thousands.
type aggKey struct {
	action, key, userID, identity, peer, method, topic, reason string
	required, missing                                          string
	errno                                                      int
	generation                                                 uint64
}

func keyOf(r *Record) aggKey {
	key := r.Key
	if r.Action == ActionHandshake {
		key = ""
	}
	return aggKey{
		action: r.Action, key: key, userID: r.UserID, identity: r.Identity, peer: r.Peer,
		method: r.Method, topic: r.Topic, reason: r.Reason,
		required: strings.Join(r.Required, "\x00"), missing: strings.Join(r.Missing, "\x00"),
		errno: r.Errno, generation: r.Generation,
	}
}
