package admin

import "errors"

// Errors returned by New.
var (
	// ErrNoBackend is returned by New when the Backend is nil.
	ErrNoBackend = errors.New("admin: no backend")
	// ErrNoToken is returned by New when neither WithToken nor
	// WithTokenFile gave an access token, or the token file is empty.
	ErrNoToken = errors.New("admin: no access token: use WithToken or WithTokenFile")
	// ErrWeakToken is returned by New for an access token shorter than
	// MinTokenLength bytes.
	ErrWeakToken = errors.New("admin: access token too short")
	// ErrInsecureTokenFile is returned by New when the token file may be
	// read by group or others.
	ErrInsecureTokenFile = errors.New("admin: token file readable by group or others")
)
