package curve

import (
	"context"

	"github.com/capbus/capbus/keys"
)

// AuthRequest is what an Authenticator is asked to decide about: a client
// whose possession of the secret key of PublicKey has been proven.
type AuthRequest struct {
	PublicKey  keys.Key
	RemoteAddr string
	Identity   string
	SocketType string
}

// Authenticator decides whether an authenticated client is admitted. It runs
// on the server after the client's vouch has been verified. It returns the
// user id of the client, or an error to refuse it: the client then gets an
// ERROR command with reason "400" and the error text is logged with the key
// in Z85. The context is cancelled when the handshake times out or the
// listener closes.
type Authenticator interface {
	Authenticate(ctx context.Context, req AuthRequest) (userID string, err error)
}

// AuthenticatorFunc adapts a function to the Authenticator interface.
type AuthenticatorFunc func(ctx context.Context, req AuthRequest) (string, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, req AuthRequest) (string, error) {
	return f(ctx, req)
}
