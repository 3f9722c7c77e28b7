package admin

import (
	"context"
	"time"
)

// Backend is what the console shows and changes; the platform implements
// it. Every method may be called from several goroutines at once and
// should honour ctx (the request's context).
type Backend interface {
	// Snapshot returns the platform's state for the overview page.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Grant gives user the capability, through the validated atomic
	// auth.json writer, and audits the change with by (for example
	// "console:ops from 127.0.0.1"). It should return once the new policy is
	// in force, so that the page shown after it reflects the change; an
	// error (for example "edit refused: the file would be invalid: ...") is
	// shown to the operator as it is.
	Grant(ctx context.Context, by, user, capability string) error
	// Revoke takes the capability from user, like Grant.
	Revoke(ctx context.Context, by, user, capability string) error
	// Ready returns nil when the platform listens and has a policy, else
	// an error saying what is missing (shown by /readyz).
	Ready(ctx context.Context) error
}

// Snapshot is the state the overview page shows.
type Snapshot struct {
	// Peers are the connected peers.
	Peers []Peer
	// Agents are the agents with their exports and each export's
	// requirements.
	Agents []Agent
	// Matrix says who may call what: users × agent methods.
	Matrix Matrix
	// Denials are the recent refusals, newest first.
	Denials []Denial
	// Policy is the state of auth.json.
	Policy PolicyState
}

// Peer is one connection to the platform.
type Peer struct {
	// Identity is the agent identity the peer claimed.
	Identity string
	// UserID is the user its CURVE key authenticated as.
	UserID string
	// Address is the peer's remote address.
	Address string
	// Since is when the peer connected.
	Since time.Time
	// CallsIn counts calls the peer received; CallsOut calls it made.
	CallsIn, CallsOut uint64
	// QueueMessages and QueueBytes are what waits to be sent to the peer.
	QueueMessages int
	QueueBytes    int64
}

// Agent is an agent and the methods it exports.
type Agent struct {
	// Identity is the agent's identity; UserID its authenticated user.
	Identity, UserID string
	// Methods are its exports.
	Methods []Method
}

// Method is one exported method and what a caller needs to call it.
type Method struct {
	// Name is the method's name.
	Name string
	// Capabilities and Roles are required of every caller; Params are the
	// call parameters a condition looks at.
	Capabilities, Roles, Params []string
}

// Matrix is the permission matrix: for each user (row) and each
// "agent.method" target (column), whether the user may call it.
type Matrix struct {
	// Users are the rows.
	Users []string
	// Targets are the columns, "agent.method".
	Targets []string
	// Cells[u][t] is the decision for Users[u] calling Targets[t].
	Cells [][]Cell
}

// Cell is one decision of the matrix.
type Cell struct {
	// Allowed is true when the call is allowed; Conditional when it
	// depends on the call's parameters.
	Allowed, Conditional bool
	// Reason is the policy's reason text.
	Reason string
	// Missing lists missing capabilities, then missing roles as
	// "role:<name>".
	Missing []string
	// Sources is the source of each grant that satisfies a requirement,
	// from the policy's explanation, e.g.
	// "can_read_temp: allow[1] (alice) capabilities".
	Sources []string
}

// Denial is one refused call, publish or subscription.
type Denial struct {
	// Time is when it was refused.
	Time time.Time
	// UserID and Identity say who was refused.
	UserID, Identity string
	// Target is what they tried, e.g. "weather.temperature".
	Target string
	// Reason is the refusal's text.
	Reason string
	// Missing lists what the caller lacked.
	Missing []string
}

// PolicyState is the state of the policy file.
type PolicyState struct {
	// File is the path of auth.json.
	File string
	// Generation is the generation of the policy in force.
	Generation uint64
	// LoadedAt is when the policy in force was loaded.
	LoadedAt time.Time
	// Rejected is the last edit that was refused (the previous policy
	// stayed in force), or nil.
	Rejected *RejectedEdit
}

// RejectedEdit is an edit of auth.json that failed validation.
type RejectedEdit struct {
	// Time is when the edit was seen.
	Time time.Time
	// Line and Column locate the error in the file (1-based; 0 if unknown).
	Line, Column int
	// Message is the validation error.
	Message string
}
