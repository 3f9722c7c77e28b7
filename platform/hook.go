package platform

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/rpc"
)

// Principal is an authenticated peer as the platform knows it.
type Principal struct {
	// UserID is the user id of the peer's auth.json entry.
	UserID string
	// Identity is the agent identity the peer claimed (empty before hello).
	Identity string
	// Key is the peer's CURVE public key.
	Key auth.Key
}

// Admission is what an AdmissionHook decides about: an authenticated peer
// whose identity claim the policy allows.
type Admission struct {
	// Principal is the peer, with the identity it claims.
	Principal
	// RemoteAddr is the peer's network address.
	RemoteAddr string
	// Exports are the methods the peer declared in hello.
	Exports []rpc.Export
	// Meta is the free metadata of hello (for example "version").
	Meta map[string]string
}

// AdmissionHook runs before an agent is admitted (after the policy allowed
// its identity claim), like NVFlare's unsafe-component check. An error
// refuses the agent: its text reaches the agent (errno 1) and the audit log.
// A panic refuses too. Hooks run on the connection's reader goroutine: they
// should return promptly.
type AdmissionHook interface {
	Admit(ctx context.Context, a *Admission) error
}

// AdmissionHookFunc adapts a function to AdmissionHook.
type AdmissionHookFunc func(ctx context.Context, a *Admission) error

// Admit calls f.
func (f AdmissionHookFunc) Admit(ctx context.Context, a *Admission) error { return f(ctx, a) }

// Call is what a CallHook decides about: a call the policy allowed.
type Call struct {
	// Caller and Callee are the authenticated peers.
	Caller, Callee Principal
	// Method is the method called.
	Method string
	// Notify is true for a notify (no reply expected).
	Notify bool
	// Payload is the call's ARGS frame, still in msgpack (rpc.DecodeCall
	// decodes it). Do not retain or modify it.
	Payload []byte
	// Required lists the capabilities the call required.
	Required []string
}

// CallHook runs before an allowed call is forwarded, like NVFlare's
// job-level authorization handler. An error refuses the call: the caller
// gets errno 13 with the error's text and the callee never sees the call.
// A panic refuses too. Hooks run on the caller's reader goroutine.
type CallHook interface {
	AllowCall(ctx context.Context, c *Call) error
}

// CallHookFunc adapts a function to CallHook.
type CallHookFunc func(ctx context.Context, c *Call) error

// AllowCall calls f.
func (f CallHookFunc) AllowCall(ctx context.Context, c *Call) error { return f(ctx, c) }

// errHookPanic is wrapped by the error of a hook that panicked.
var errHookPanic = errors.New("hook panicked")

func (p *Platform) runAdmissionHook(a *Admission) (err error) {
	defer p.recoverHook(&err, "admission")
	return p.cfg.admission.Admit(p.ctx, a)
}

func (p *Platform) runCallHook(c *Call) (err error) {
	defer p.recoverHook(&err, "call")
	return p.cfg.callHook.AllowCall(p.ctx, c)
}

func (p *Platform) recoverHook(err *error, which string) {
	if r := recover(); r != nil {
		p.log.Error("hook panicked", "hook", which, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = fmt.Errorf("%w: %v", errHookPanic, r)
	}
}
