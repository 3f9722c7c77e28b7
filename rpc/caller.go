package rpc

import "context"

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
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller of the call being handled, and false outside
// a handler.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}
