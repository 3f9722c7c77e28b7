package rpc

import (
	"errors"
	"fmt"
)

// Sentinel errors, one per Code that callers commonly branch on. An *Error
// matches the sentinel of its code with errors.Is.
var (
	ErrUnauthorized  = errors.New("rpc: unauthorized")
	ErrNotFound      = errors.New("rpc: method not found")
	ErrNoRoute       = errors.New("rpc: no route to peer")
	ErrTimeout       = errors.New("rpc: timeout")
	ErrInvalidArgs   = errors.New("rpc: invalid arguments")
	ErrInternal      = errors.New("rpc: internal error")
	ErrApplication   = errors.New("rpc: handler error")
	ErrPermission    = errors.New("rpc: permission denied")
	ErrIdentityInUse = errors.New("rpc: identity in use")
	ErrProtocol      = errors.New("rpc: protocol error")
	ErrOverloaded    = errors.New("rpc: overloaded")
	ErrUnavailable   = errors.New("rpc: platform unavailable")
)

var sentinelOf = map[Code]error{
	CodeUnauthorized:  ErrUnauthorized,
	CodeNotFound:      ErrNotFound,
	CodeNoRoute:       ErrNoRoute,
	CodeTimeout:       ErrTimeout,
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
// people, and structured data. For CodeUnauthorized, Data holds "method",
// "required" and "missing" (lists of capability or role names).
type Error struct {
	Code    Code           `msgpack:"code"`
	Message string         `msgpack:"message"`
	Data    map[string]any `msgpack:"data,omitempty"`
	// Peer and Method name the call that failed, when known.
	Peer   string `msgpack:"-"`
	Method string `msgpack:"-"`
	cause  error
}

// NewError returns an *Error with the given code and message.
func NewError(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithCause records the local error behind e (for example a context error),
// so errors.Is finds it too.
func (e *Error) WithCause(err error) *Error { e.cause = err; return e }

// Error formats the error as "rpc: weather.temperature: unauthorized: ...".
func (e *Error) Error() string {
	where := ""
	switch {
	case e.Peer != "" && e.Method != "":
		where = e.Peer + "." + e.Method + ": "
	case e.Peer != "":
		where = e.Peer + ": "
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

// Missing returns the capabilities or roles an unauthorized call lacked, from
// Data["missing"].
func (e *Error) Missing() []string { return stringList(e.Data["missing"]) }

// Required returns what an unauthorized call required, from Data["required"].
func (e *Error) Required() []string { return stringList(e.Data["required"]) }

func stringList(v any) []string {
	switch l := v.(type) {
	case []string:
		return l
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

// CodeOf returns the code of err: the Code of an *Error in its chain,
// CodeTimeout for context.DeadlineExceeded, CodeUnknown otherwise.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	for c, s := range sentinelOf {
		if errors.Is(err, s) {
			return c
		}
	}
	return CodeUnknown
}
