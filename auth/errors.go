package auth

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Errors returned by this package wrap one of these where it
// applies, so callers can test them with errors.Is.
var (
	// ErrNoPolicy means there is no policy in force: the file is missing,
	// empty, or was deleted. The policy in force is then closed (it admits
	// nobody), never open.
	ErrNoPolicy = errors.New("no authorization policy")
	// ErrEmptyFile means auth.json was found empty or missing and the
	// policy in force was kept, pending a confirming read (see Store).
	ErrEmptyFile = errors.New("auth.json empty or missing")
	// ErrUnknownKey means no allow entry matches the peer's CURVE key.
	ErrUnknownKey = errors.New("unknown key")
	// ErrDisabled means the matching allow entry has "enabled": false.
	ErrDisabled = errors.New("entry disabled")
	// ErrDenied means a deny entry matches the peer (capbus enforces the
	// deny list; it wins over every allow entry).
	ErrDenied = errors.New("denied by the deny list")
	// ErrIdentityNotAllowed means a user claimed an agent identity its entry
	// does not allow.
	ErrIdentityNotAllowed = errors.New("identity not allowed")
	// ErrUnknownUser means a user id is not in the policy (for example a
	// user removed by a reload).
	ErrUnknownUser = errors.New("unknown user")
)

// ValidationError says where an auth.json document is wrong: the file, the
// line and column (1-based; 0 when the document was built in memory rather
// than parsed), the JSON path of the offending value and what was expected.
//
// Its Error method reads like a compiler diagnostic:
//
//	auth.json:12:5: allow[1].capabilites: unknown key; did you mean "capabilities"?
type ValidationError struct {
	File   string // the name given to Parse, or the path given to LoadFile
	Line   int    // 1-based line, 0 if unknown
	Column int    // 1-based column in bytes, 0 if unknown
	Path   string // JSON path such as allow[1].capabilities; "" for the document
	Msg    string // what is wrong and what was expected
	Err    error  // an underlying sentinel such as ErrNoPolicy, or nil
}

// Error implements error.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Column))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying sentinel, if any.
func (e *ValidationError) Unwrap() error { return e.Err }
