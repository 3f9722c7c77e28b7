package rpc

import (
	"context"
	"fmt"

	"github.com/capbus/capbus/keys"
)

// Principal is an authenticated peer as the platform knows it: the user
// its CURVE key belongs to in auth.json, the agent identity it holds, and
// the key. It is the one type capbus uses for "who": the caller of a
// handler (CallerFrom), the agent itself (Agent.WhoAmI), the subject of a
// policy decision, and what the platform's hooks judge.
//
// No peer can forge it: the platform stamps the user and identity on
// everything it forwards. A handler's caller has no Key: the platform
// does not forward keys.
type Principal struct {
	// UserID is the user_id of the peer's auth.json entry.
	UserID string
	// Identity is the agent identity the peer claimed and the platform
	// admitted ("" before hello).
	Identity string
	// Key is the peer's CURVE public key, when known.
	Key keys.Key
}

// String returns "identity (user)".
func (p Principal) String() string { return p.Identity + " (" + p.UserID + ")" }

type callerKey struct{}

// WithCaller returns a context carrying c as the caller of a call. The
// agent SDK calls it before running a handler; tests of handlers call it
// to build the context a handler receives.
func WithCaller(ctx context.Context, c Principal) context.Context {
	return &callerCtx{Context: ctx, c: c}
}

// callerCtx is context.WithValue(ctx, callerKey{}, c) in one allocation:
// the value is handed out as a pointer into it, not boxed per call.
type callerCtx struct {
	context.Context
	c Principal
}

func (x *callerCtx) Value(key any) any {
	if key == (callerKey{}) {
		return &x.c
	}
	return x.Context.Value(key)
}

// String says what the context is, as context.WithValue's contexts do.
func (x *callerCtx) String() string {
	return fmt.Sprintf("%v.WithCaller(%s)", x.Context, x.c)
}

// CallerFrom returns the caller of the call being handled, and false outside
// a handler.
func CallerFrom(ctx context.Context) (Principal, bool) {
	if c, ok := ctx.Value(callerKey{}).(*Principal); ok {
		return *c, true
	}
	return Principal{}, false
}
