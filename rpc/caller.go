package rpc

import (
	"context"
	"fmt"
)

// Caller is who made a call, as the platform authenticated and stamped it.
// No peer can forge these fields: the platform overwrites them on every
// message it forwards.
type Caller struct {
	// UserID is the user_id of the caller's auth.json entry.
	UserID string
	// Identity is the agent identity the caller's connection claimed and the
	// platform admitted.
	Identity string
}

type callerKey struct{}

// WithCaller returns a context carrying c. The agent SDK calls it before
// running a handler.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return &callerCtx{Context: ctx, c: c}
}

// callerCtx is context.WithValue(ctx, callerKey{}, c) in one allocation:
// the value is handed out as a pointer into it, not boxed per call.
type callerCtx struct {
	context.Context
	c Caller
}

func (x *callerCtx) Value(key any) any {
	if key == (callerKey{}) {
		return &x.c
	}
	return x.Context.Value(key)
}

// String says what the context is, as context.WithValue's contexts do.
func (x *callerCtx) String() string {
	return fmt.Sprintf("%v.WithCaller(%s as %s)", x.Context, x.c.Identity, x.c.UserID)
}

// CallerFrom returns the caller of the call being handled, and false outside
// a handler.
func CallerFrom(ctx context.Context) (Caller, bool) {
	if c, ok := ctx.Value(callerKey{}).(*Caller); ok {
		return *c, true
	}
	return Caller{}, false
}
