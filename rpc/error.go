package rpc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Sentinel errors, one per Code that callers branch on. An *Error matches
// the sentinel of its code with errors.Is:
//
//	if errors.Is(err, rpc.ErrUnauthorized) { ... }
var (
	// ErrUnauthorized: the caller lacks a required capability or role
	// (CodeUnauthorized). The *Error's Required and Missing say which.
	ErrUnauthorized = errors.New("rpc: unauthorized")
	// ErrNotFound: the callee does not export the method (CodeNotFound).
	ErrNotFound = errors.New("rpc: method not found")
	// ErrNoRoute: no connected peer has the identity called (CodeNoRoute).
	ErrNoRoute = errors.New("rpc: no route to peer")
	// ErrTimeout: the call's deadline passed before a reply (CodeTimeout).
	// A timeout of the caller's own context also matches
	// context.DeadlineExceeded.
	ErrTimeout = errors.New("rpc: timeout")
	// ErrCanceled: the call was cancelled (CodeCanceled). A cancellation of
	// the caller's own context also matches context.Canceled.
	ErrCanceled = errors.New("rpc: canceled")
	// ErrInvalidArgs: the arguments did not fit the method (CodeInvalidArgs).
	ErrInvalidArgs = errors.New("rpc: invalid arguments")
	// ErrInternal: the handler panicked, or the reply could not be decoded
	// (CodeInternal).
	ErrInternal = errors.New("rpc: internal error")
	// ErrApplication: the handler returned an error (CodeApplication); the
	// *Error's Message is the handler's error text.
	ErrApplication = errors.New("rpc: handler error")
	// ErrPermission: the connection may not do this at all, such as claiming
	// an identity outside its auth.json entry (CodePermission).
	ErrPermission = errors.New("rpc: permission denied")
	// ErrIdentityInUse: another live connection holds the identity
	// (CodeIdentityInUse).
	ErrIdentityInUse = errors.New("rpc: identity in use")
	// ErrProtocol: a message broke docs/PROTOCOL.md (CodeProtocol).
	ErrProtocol = errors.New("rpc: protocol error")
	// ErrOverloaded: a queue or limit is full; retry later (CodeOverloaded).
	ErrOverloaded = errors.New("rpc: overloaded")
	// ErrUnavailable: the agent is not connected to the platform, the
	// connection was lost while the call was in flight, the callee left
	// while it was in flight, or the callee is shutting down
	// (CodeUnavailable). A call in flight may or may not have run.
	ErrUnavailable = errors.New("rpc: unavailable")
	// ErrResultType is in the chain of the error of a typed call whose
	// result does not decode into the type asked for (an *Error with
	// CodeInternal): the call ran, its result is of another type.
	ErrResultType = errors.New("rpc: result of another type")
)

// sentinels lists the code of every sentinel, in the order CodeOf tries
// them.
var sentinels = []struct {
	code Code
	err  error
}{
	{CodeUnauthorized, ErrUnauthorized},
	{CodePermission, ErrPermission},
	{CodeNotFound, ErrNotFound},
	{CodeNoRoute, ErrNoRoute},
	{CodeInvalidArgs, ErrInvalidArgs},
	{CodeIdentityInUse, ErrIdentityInUse},
	{CodeOverloaded, ErrOverloaded},
	{CodeUnavailable, ErrUnavailable},
	{CodeTimeout, ErrTimeout},
	{CodeCanceled, ErrCanceled},
	{CodeProtocol, ErrProtocol},
	{CodeApplication, ErrApplication},
	{CodeInternal, ErrInternal},
}

// Error is a failed call as the caller sees it: a code, a message meant for
// people, structured data, and the call it belongs to. Build one with
// NewError or Errorf; read it with its methods. Errors returned by the SDK
// are never shared: a caller may add data to one before passing it on.
//
// For CodeUnauthorized on a call, Data holds "method", "peer", "required"
// and "missing" (capability names, and role names prefixed "role:"; read
// them with Required and Missing), "reason" (the policy's one-line reason)
// and "generation" (of the policy); on a publish or subscribe, "topic",
// "operation", "reason" and "generation".
//
// A handler may return an *Error to choose the code and data its caller
// sees; any other error reaches the caller as CodeApplication with the
// error's text.
type Error struct {
	code         Code
	message      string
	data         map[string]any
	peer, method string
	cause        error
}

// NewError returns an *Error with the given code and message.
func NewError(code Code, message string) *Error { return &Error{code: code, message: message} }

// Errorf returns an *Error with the given code and a formatted message. A %w
// verb records its operand as the cause (see WithCause).
func Errorf(code Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{code: code, message: err.Error(), cause: errors.Unwrap(err)}
}

// Code returns the error's code.
func (e *Error) Code() Code { return e.code }

// Message returns the text meant for people, without the call's name.
func (e *Error) Message() string { return e.message }

// Data returns a copy of the structured detail (nil when there is none).
func (e *Error) Data() map[string]any {
	if e.data == nil {
		return nil
	}
	return maps.Clone(e.data)
}

// Peer returns the identity of the agent called, when known.
func (e *Error) Peer() string { return e.peer }

// Method returns the method called (or "topic T" for a publish or
// subscribe), when known.
func (e *Error) Method() string { return e.method }

// WithData sets the detail key to value and returns e.
func (e *Error) WithData(key string, value any) *Error {
	if e.data == nil {
		e.data = make(map[string]any)
	}
	e.data[key] = value
	return e
}

// WithCause records the local error behind e (for example a context
// error), so that errors.Is finds it too, and returns e.
func (e *Error) WithCause(err error) *Error { e.cause = err; return e }

// WithCall names the call that failed, unless e already names one, and
// returns e. The SDK names every error a call returns.
func (e *Error) WithCall(peer, method string) *Error {
	if e.peer == "" && e.method == "" {
		e.peer, e.method = peer, method
	}
	return e
}

// Error formats the error as "rpc: weather.temperature: unauthorized: ...".
func (e *Error) Error() string {
	where := ""
	switch {
	case e.peer != "" && e.method != "":
		where = e.peer + "." + e.method + ": "
	case e.peer != "":
		where = e.peer + ": "
	case e.method != "":
		where = e.method + ": "
	}
	return "rpc: " + where + e.code.String() + ": " + e.message
}

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	for _, s := range sentinels {
		if s.code == e.code {
			return s.err == target
		}
	}
	return false
}

// Unwrap returns the local cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Missing returns the capabilities and roles (written "role:name") an
// unauthorized call lacked.
func (e *Error) Missing() []string { return stringList(e.data["missing"]) }

// Required returns the capabilities and roles (written "role:name") an
// unauthorized call required.
func (e *Error) Required() []string { return stringList(e.data["required"]) }

func stringList(v any) []string {
	switch l := v.(type) {
	case []string:
		return slices.Clone(l)
	case []any:
		out := make([]string, 0, len(l))
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// CodeOf returns the code of err: the code of the first *Error in its
// chain, else the code of the first sentinel it matches (tried in a fixed
// order), CodeTimeout for context.DeadlineExceeded, CodeCanceled for
// context.Canceled, and CodeUnknown otherwise (and for nil).
func CodeOf(err error) Code {
	if err == nil {
		return CodeUnknown
	}
	var e *Error
	if errors.As(err, &e) {
		return e.code
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.code
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	}
	return CodeUnknown
}

// FromError converts any error to the *Error a caller receives, as the agent
// does with a handler's error: an *Error in err's chain is returned as it is;
// an error matching a sentinel gets that sentinel's code; a context error
// becomes CodeTimeout or CodeCanceled; anything else becomes
// CodeApplication. The message is err's text. FromError(nil) is nil; a
// nil *Error inside a non-nil error (a typed nil a handler returned) is a
// CodeInternal *Error that says so.
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e == nil {
			return &Error{code: CodeInternal, message: "the handler returned a nil *rpc.Error as a non-nil error"}
		}
		return e
	}
	code := CodeOf(err)
	if code == CodeUnknown {
		code = CodeApplication
	}
	return &Error{code: code, message: err.Error(), cause: err}
}
