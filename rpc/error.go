package rpc

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Sentinel errors, one per Code that callers commonly branch on. An *Error
// matches the sentinel of its code with errors.Is:
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
	// Such an error also matches context.DeadlineExceeded.
	ErrTimeout = errors.New("rpc: timeout")
	// ErrCanceled: the call's context was cancelled before a reply
	// (CodeCanceled). Such an error also matches context.Canceled.
	ErrCanceled = errors.New("rpc: canceled")
	// ErrInvalidArgs: the arguments did not fit the method (CodeInvalidArgs).
	ErrInvalidArgs = errors.New("rpc: invalid arguments")
	// ErrInternal: the handler panicked or failed unexpectedly (CodeInternal).
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
	ErrUnavailable = errors.New("rpc: platform unavailable")
)

var sentinelOf = map[Code]error{
	CodeUnauthorized:  ErrUnauthorized,
	CodeNotFound:      ErrNotFound,
	CodeNoRoute:       ErrNoRoute,
	CodeTimeout:       ErrTimeout,
	CodeCanceled:      ErrCanceled,
	CodeInvalidArgs:   ErrInvalidArgs,
	CodeInternal:      ErrInternal,
	CodeApplication:   ErrApplication,
	CodePermission:    ErrPermission,
	CodeIdentityInUse: ErrIdentityInUse,
	CodeProtocol:      ErrProtocol,
	CodeOverloaded:    ErrOverloaded,
	CodeUnavailable:   ErrUnavailable,
}

// Error is a failed call as the caller sees it: a code, a message meant for
// people, and structured data. For CodeUnauthorized on a call, Data holds
// "method", "peer", "required" and "missing" (capability names, and role
// names prefixed "role:"; read them with Required and Missing), "reason"
// (the policy's one-line reason) and "generation" (of the policy); on a
// publish or subscribe, "topic", "operation", "reason" and "generation".
//
// A handler may return an *Error to choose the code and data its caller
// sees; any other error reaches the caller as CodeApplication with the
// error's text.
type Error struct {
	// Code classifies the failure.
	Code Code `msgpack:"code"`
	// Message explains the failure to people.
	Message string `msgpack:"message"`
	// Data is optional structured detail.
	Data map[string]any `msgpack:"data,omitempty"`
	// Peer and Method name the call that failed, when known. They are filled
	// in by the caller's side and never travel on the wire.
	Peer   string `msgpack:"-"`
	Method string `msgpack:"-"`
	cause  error
}

// NewError returns an *Error with the given code and message.
func NewError(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Errorf returns an *Error with the given code and a formatted message. A %w
// verb records its operand as the cause (see WithCause).
func Errorf(code Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	e := &Error{Code: code, Message: err.Error()}
	if u := errors.Unwrap(err); u != nil {
		e.cause = u
	}
	return e
}

// WithCause records the local error behind e (for example a context error),
// so errors.Is finds it too. It returns e.
func (e *Error) WithCause(err error) *Error { e.cause = err; return e }

// WithData sets Data[key] = value and returns e.
func (e *Error) WithData(key string, value any) *Error {
	if e.Data == nil {
		e.Data = make(map[string]any)
	}
	e.Data[key] = value
	return e
}

// Error formats the error as "rpc: weather.temperature: unauthorized: ...".
func (e *Error) Error() string {
	where := ""
	switch {
	case e.Peer != "" && e.Method != "":
		where = e.Peer + "." + e.Method + ": "
	case e.Peer != "":
		where = e.Peer + ": "
	case e.Method != "":
		where = e.Method + ": "
	}
	return "rpc: " + where + e.Code.String() + ": " + e.Message
}

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	s, ok := sentinelOf[e.Code]
	return ok && s == target
}

// Unwrap returns the local cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Missing returns the capabilities and roles (written "role:name") an
// unauthorized call lacked, from Data["missing"].
func (e *Error) Missing() []string { return stringList(e.Data["missing"]) }

// Required returns the capabilities and roles (written "role:name") an
// unauthorized call required, from Data["required"].
func (e *Error) Required() []string { return stringList(e.Data["required"]) }

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

// CodeOf returns the code of err: the Code of an *Error in its chain, the
// code of a sentinel in its chain, CodeTimeout for context.DeadlineExceeded,
// CodeCanceled for context.Canceled, CodeUnknown otherwise (and for nil).
func CodeOf(err error) Code {
	if err == nil {
		return CodeUnknown
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	for c, s := range sentinelOf {
		if errors.Is(err, s) {
			return c
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
// CodeApplication. The message is err's text. FromError(nil) is nil.
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	code := CodeOf(err)
	if code == CodeUnknown {
		code = CodeApplication
	}
	return &Error{Code: code, Message: err.Error(), cause: err}
}
