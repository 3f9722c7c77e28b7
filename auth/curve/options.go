package curve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/capbus/capbus/auth"
)

// Defaults of the options.
const (
	DefaultHandshakeTimeout       = 10 * time.Second
	DefaultMaxFrameSize     int64 = 16 << 20
)

// PeerInfo is what one side knows about the other side of an authenticated
// connection. On the server it describes the client; on the client it
// describes the server (PublicKey is the server key, Identity and SocketType
// come from the server's READY metadata, RoutingID and UserID are empty).
type PeerInfo struct {
	// RoutingID is the per-connection token chosen by the server; it is
	// given to zmq4 as the peer's Identity.
	RoutingID string
	// PublicKey is the peer's long-term public key (for a client, verified
	// through its vouch).
	PublicKey auth.Key
	// UserID is what the Authenticator answered.
	UserID string
	// RemoteAddr is the peer's network address.
	RemoteAddr string
	// Identity is the "Identity" metadata property the peer claimed (may be
	// empty). It is informational only: routing uses RoutingID.
	Identity string
	// SocketType is the peer's "Socket-Type" metadata property.
	SocketType string
}

// AuthRequest is what an Authenticator is asked to decide about: a client
// whose possession of the secret key of PublicKey has been proven.
type AuthRequest struct {
	PublicKey  auth.Key
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

// Option configures Listen or Dial.
type Option func(*options)

type options struct {
	authenticator    Authenticator
	handshakeTimeout time.Duration
	maxFrameSize     int64
	logger           *slog.Logger
	socketType       string
	identity         string
	wrapConn         func(net.Conn) net.Conn // tests and benchmarks: count syscalls
}

func newOptions(defaultSocketType string, opts []Option) options {
	o := options{
		handshakeTimeout: DefaultHandshakeTimeout,
		maxFrameSize:     DefaultMaxFrameSize,
		socketType:       defaultSocketType,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.handshakeTimeout <= 0 {
		o.handshakeTimeout = DefaultHandshakeTimeout
	}
	if o.maxFrameSize <= 0 {
		o.maxFrameSize = DefaultMaxFrameSize
	}
	return o
}

// WithAuthenticator sets the server's Authenticator. It is required by
// Listen, which returns ErrNoAuthenticator without one (closed by default).
func WithAuthenticator(a Authenticator) Option {
	return func(o *options) { o.authenticator = a }
}

// WithHandshakeTimeout bounds the time from accepting (or dialing) a TCP
// connection to the end of the CURVE handshake, authorization included.
// The default is 10 s.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.handshakeTimeout = d }
}

// WithMaxFrameSize sets the largest frame (decrypted message part) accepted
// from the peer or from zmq4. Longer declared lengths close the connection
// before anything is allocated for them. The default is 16 MiB.
func WithMaxFrameSize(n int64) Option {
	return func(o *options) { o.maxFrameSize = n }
}

// WithLogger sets the logger for handshake failures, refusals and protocol
// errors. Secret keys are never logged. By default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithSocketType sets our ZMTP "Socket-Type" metadata property. The default
// is "ROUTER" for Listen and "DEALER" for Dial. It must match the type given
// to zmq4.Open on the conn.
func WithSocketType(t string) Option {
	return func(o *options) { o.socketType = t }
}

// WithIdentity sets the "Identity" metadata property a client sends in
// INITIATE. The server records it in PeerInfo.Identity but routes by its own
// routing id.
func WithIdentity(id string) Option {
	return func(o *options) { o.identity = id }
}
