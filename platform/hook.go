package platform

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/rpc"
)

// Admission is what an AdmissionHook decides about: an authenticated peer
// whose identity claim the policy allows, with the exports it declares,
// at its hello or when it adds exports later.
type Admission struct {
	// Principal is the peer, with the identity it claims.
	Principal rpc.Principal
	// Permissions are the peer's capabilities and roles as the policy sees
	// them, each with where it comes from.
	Permissions auth.Permissions
	// Attributes are the caller attributes of the peer's auth.json entry
	// (for example "org").
	Attributes map[string]string
	// RemoteAddr is the peer's network address.
	RemoteAddr string
	// Exports are every method the peer would export if admitted: those of
	// hello, or after an export change, all of its exports with the change
	// applied.
	Exports []rpc.Export
	// Meta is the free metadata of hello (for example "version").
	Meta map[string]string
	// AfterHello is true when the peer changes its exports after hello.
	AfterHello bool
}

// AdmissionHook runs before an agent is admitted (after the policy allowed
// its identity claim), like NVFlare's unsafe-component check, and again
// whenever the agent adds or replaces exports after hello. An error refuses
// the agent (or the export change, which then changes nothing): its text
// reaches the agent (errno 1) and the audit log. A panic refuses too. Hooks
// run on the connection's reader goroutine: they should return promptly.
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
	Caller, Callee rpc.Principal
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
