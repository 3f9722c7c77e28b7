package curve

import (
	"errors"
	"fmt"
)

var (
	// ErrHandshake is wrapped by every error that ends a CURVE handshake:
	// a bad greeting, a malformed or unexpected command, a box that does not
	// open, a timeout.
	ErrHandshake = errors.New("curve: handshake failed")

	// ErrRefused means the handshake was refused by the server's
	// authenticator: on the client, the *RefusedError that Dial returns
	// when the server answered with an ERROR command matches it; on the
	// server, the error of a client whose vouch was valid but whom the
	// Authenticator refused wraps it.
	ErrRefused = errors.New("curve: refused")

	// ErrBusy is wrapped by an Authenticator's error to refuse a client for
	// now rather than for good (the server is at a connection limit): the
	// client gets ERROR "300", ZAP's temporary error, and the refusal does
	// not count against the client's host (WithFailureLimit). On the
	// client, the *RefusedError of such a refusal matches ErrBusy too.
	ErrBusy = errors.New("curve: server busy, try again later")

	// ErrServerKey is wrapped by the error of a client handshake that the
	// server ended right after HELLO, as a server does when HELLO was
	// sealed for another key: the client's server key is most likely wrong
	// (or stale: the server's keystore was replaced).
	ErrServerKey = errors.New("curve: the server closed the connection after HELLO: wrong server key?")

	// ErrFrameTooLarge is returned (wrapped) when a peer declares a frame
	// longer than the maximum frame size, or zmq4 writes one.
	ErrFrameTooLarge = errors.New("curve: frame too large")

	// ErrBadNonce is returned (wrapped) when a peer's short nonce does not
	// strictly increase (a replayed or reordered command).
	ErrBadNonce = errors.New("curve: nonce not increasing")

	// ErrDecrypt is returned (wrapped) when a box cannot be opened: a wrong
	// key or a forged or corrupted command.
	ErrDecrypt = errors.New("curve: cannot open box")

	// ErrMalformed is returned (wrapped) for a command or frame that does not
	// follow ZMTP 3 / RFC 26: wrong size, wrong name, bad flags, bad metadata.
	ErrMalformed = errors.New("curve: malformed command")

	// ErrWriteInProgress is returned by TryWriteMsgs when another write
	// holds the conn (it may be waiting for the peer): nothing was sealed
	// or written.
	ErrWriteInProgress = errors.New("curve: another write is in progress")

	// ErrNoAuthenticator is returned by Listen when no Authenticator was
	// given: the listener never admits clients by default.
	ErrNoAuthenticator = errors.New("curve: Listen requires WithAuthenticator")
)

// RefusedError is the error Dial returns when the server refused the
// handshake with an ERROR command. It matches ErrRefused with errors.Is.
type RefusedError struct {
	// Reason is the ERROR command's reason text ("400" from a libzmq server
	// whose ZAP handler refused the key).
	Reason string
}

// Error implements error.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("curve: refused by server: %q", e.Reason)
}

// Is reports whether target is ErrRefused, or ErrBusy for a temporary
// refusal (reason "300").
func (e *RefusedError) Is(target error) bool {
	return target == ErrRefused || (target == ErrBusy && e.Reason == reasonBusy)
}

// ZAP status codes sent as the reason of an ERROR command (RFC 27).
const (
	reasonBusy    = "300" // temporary error: try again later
	reasonRefused = "400" // authentication failure
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// errPanic turns a recovered panic into an error; a bug in this package
// must end one connection, never the process.
func errPanic(p any) error {
	return fmt.Errorf("curve: internal error: %v", p)
}
