package rpc

import "strconv"

// Code classifies an RPC failure. On the wire it travels as the decimal
// errno of the error subsystem (docs/PROTOCOL.md section 5).
type Code int

// The codes of capbus. Their numbers follow Linux errno values where one fits,
// as VOLTTRON's error subsystem does.
const (
	// CodeUnknown is an error whose code was missing or not understood.
	CodeUnknown Code = 0
	// CodePermission: the connection may not do this at all (for example an
	// identity claim outside its auth entry, or a call before hello).
	CodePermission Code = 1
	// CodeNotFound: the callee does not export the method.
	CodeNotFound Code = 2
	// CodeUnauthorized: the caller lacks a required capability or role.
	CodeUnauthorized Code = 13
	// CodeIdentityInUse: another live connection holds the claimed identity.
	CodeIdentityInUse Code = 16
	// CodeInvalidArgs: the arguments do not fit the method, or a frame was
	// malformed.
	CodeInvalidArgs Code = 22
	// CodeInternal: the handler panicked, or a reply could not be decoded.
	CodeInternal Code = 70
	// CodeProtocol: the message broke docs/PROTOCOL.md.
	CodeProtocol Code = 71
	// CodeApplication: the handler returned an error; Message is its text.
	CodeApplication Code = 74
	// CodeOverloaded: a queue or limit of the platform or callee is full.
	CodeOverloaded Code = 105
	// CodeUnavailable: the connection to the platform, or the callee's, was
	// lost or closed.
	CodeUnavailable Code = 107
	// CodeTimeout: the deadline passed before a reply arrived.
	CodeTimeout Code = 110
	// CodeNoRoute: no peer with that identity is connected (VOLTTRON's 113).
	CodeNoRoute Code = 113
	// CodeCanceled: the caller cancelled the call.
	CodeCanceled Code = 125
)

var codeNames = map[Code]string{
	CodeUnknown:       "unknown",
	CodePermission:    "permission_denied",
	CodeNotFound:      "not_found",
	CodeUnauthorized:  "unauthorized",
	CodeIdentityInUse: "identity_in_use",
	CodeInvalidArgs:   "invalid_args",
	CodeInternal:      "internal",
	CodeProtocol:      "protocol_error",
	CodeApplication:   "application",
	CodeOverloaded:    "overloaded",
	CodeUnavailable:   "unavailable",
	CodeTimeout:       "timeout",
	CodeNoRoute:       "no_route",
	CodeCanceled:      "canceled",
}

// String returns the code's name, such as "unauthorized".
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return "code_" + strconv.Itoa(int(c))
}
