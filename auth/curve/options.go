package curve

import (
	"crypto/ecdh"
	"io"
	"log/slog"
	"net"
	"time"
)

// Defaults of the options.
const (
	DefaultHandshakeTimeout       = 10 * time.Second
	DefaultMaxFrameSize     int64 = 16 << 20
)

// Option configures Listen or Dial.
type Option func(*options)

type options struct {
	authenticator    Authenticator
	handshakeTimeout time.Duration
	maxFrameSize     int64
	maxMsgFrames     int
	maxMsgBytes      int64
	logger           *slog.Logger
	socketType       string
	identity         string
	maxPending       int                     // handshakes in progress at once (0: no limit)
	failureLimit     int                     // failed handshakes per host per minute before a backoff (0: no limit)
	observe          func(outcome string)    // told the outcome of every handshake (nil: nobody)
	seen             *seenKeys               // set by Listen
	serverPriv       *ecdh.PrivateKey        // the server's long-term key, parsed once by Listen
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

// WithMessageLimits bounds what ReadMsg accepts in one message from the
// peer: at most frames frames and bytes bytes of frame data (zero: no
// limit). A message over either limit fails ReadMsg with
// ErrMessageTooLarge, which closes the conn, as soon as the limit is
// passed. Limits apply to ReadMsg only, not to the byte stream zmq4 reads.
func WithMessageLimits(frames int, bytes int64) Option {
	return func(o *options) { o.maxMsgFrames, o.maxMsgBytes = frames, bytes }
}

// WithLogger sets the logger for handshake failures, refusals and protocol
// errors. Secret keys are never logged. By default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithMaxPendingHandshakes bounds the handshakes a Listener runs at once:
// beyond n, a new TCP connection is closed at once (and counted in the
// listener's periodic warning). Zero means no bound.
func WithMaxPendingHandshakes(n int) Option {
	return func(o *options) { o.maxPending = n }
}

// WithFailureLimit rate-limits addresses that keep failing handshakes:
// after n failures (refusals included, ErrBusy ones not) from one host
// within a minute, the Listener answers that host's HELLOs with ERROR
// "300" (the client's error matches ErrBusy), before any key agreement,
// for a backoff of one second, doubling to a minute; past ten such answers
// in a second, the host's connections are closed at once. Zero means no
// limit.
func WithFailureLimit(n int) Option {
	return func(o *options) { o.failureLimit = n }
}

// WithHandshakeObserver makes a Listener call fn with the outcome of every
// handshake: "ok", or the kind of failure as its periodic warning counts
// them ("refused", "busy", "replayed_hello", "bad_box", "timeout",
// "malformed", "too_many_pending", "busy_closed", "other"). fn runs on the handshake's
// goroutine (or the accept loop's, for "too_many_pending") and must not
// block. The platform counts them in its metrics.
func WithHandshakeObserver(fn func(outcome string)) Option {
	return func(o *options) { o.observe = fn }
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
