package platform

import (
	"io"
	"log/slog"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/keys"
)

// Defaults of the options.
const (
	// DefaultAddress is VOLTTRON's default VIP address.
	DefaultAddress = "tcp://127.0.0.1:22916"
	// DefaultMaxFrameSize bounds one frame and one whole message (16 MiB).
	DefaultMaxFrameSize int64 = 16 << 20
	// DefaultMaxFrames bounds the frames of one message.
	DefaultMaxFrames = 64
	// DefaultQueueSize bounds the messages queued towards one connection.
	DefaultQueueSize = 256
	// DefaultQueueBytes bounds the bytes queued towards one connection.
	DefaultQueueBytes int64 = 64 << 20
	// DefaultHandshakeTimeout bounds the CURVE handshake of a connection.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultShutdownTimeout bounds how long Run waits for connections to
	// flush their last message at shutdown before closing them.
	DefaultShutdownTimeout = 2 * time.Second
	// DefaultMaxCallTime bounds how long the platform keeps a call awaiting
	// its reply (a call's own deadline, when shorter, wins).
	DefaultMaxCallTime = 10 * time.Minute
	// DefaultMaxCallsInFlight bounds the calls of one connection awaiting
	// replies.
	DefaultMaxCallsInFlight = 1024
)

// Option configures a Platform. Options are applied in order by New.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	address          string
	keyPair          *keys.Pair
	keystore         string
	authFile         string
	store            *auth.Store
	policy           *auth.Policy
	logger           *slog.Logger
	auditWriter      io.Writer
	auditFile        string
	admission        AdmissionHook
	callHook         CallHook
	maxFrameSize     int64
	maxFrames        int
	queueSize        int
	queueBytes       int64
	handshakeTimeout time.Duration
	shutdownTimeout  time.Duration
	maxCallTime      time.Duration
	maxCallsInFlight int
	version          string
	configStore      string // the configuration store's file (config.go)
}

// WithAddress sets the address to listen on, "tcp://host:port" or
// "host:port". Port 0 picks a free port; Addr tells which after Ready.
// The default is DefaultAddress.
func WithAddress(addr string) Option {
	return optionFunc(func(c *config) { c.address = addr })
}

// WithKeyPair sets the platform's CURVE server key pair.
func WithKeyPair(kp keys.Pair) Option {
	return optionFunc(func(c *config) { k := kp; c.keyPair = &k })
}

// WithKeystore loads the server key pair from a keystore file
// (VOLTTRON's keystore.json shape), creating it with mode 0600 if it does
// not exist. Without WithKeyPair or WithKeystore the platform generates an
// ephemeral key pair; ServerKey tells its public key.
func WithKeystore(path string) Option {
	return optionFunc(func(c *config) { c.keystore = path })
}

// WithAuthFile sets the auth.json file. Run watches it and applies every
// valid change live (auth.OpenStore). A missing or empty file admits nobody.
func WithAuthFile(path string) Option {
	return optionFunc(func(c *config) { c.authFile = path })
}

// WithPolicyStore uses a policy store the embedding program opened (and
// closes) itself. Reloads of the store are applied live.
func WithPolicyStore(s *auth.Store) Option {
	return optionFunc(func(c *config) { c.store = s })
}

// WithPolicy uses a fixed policy, never reloaded (tests, embedders that
// build their policy in memory).
func WithPolicy(p *auth.Policy) Option {
	return optionFunc(func(c *config) { c.policy = p })
}

// WithLogger sets the logger for operational messages. Audit records are
// also logged at Info level under the message "audit". The default logs
// nothing.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithAuditWriter writes the audit log to w as JSON lines (one record per
// line). Writes are serialized.
func WithAuditWriter(w io.Writer) Option {
	return optionFunc(func(c *config) { c.auditWriter = w })
}

// WithAuditFile appends the audit log to the file at path (created with mode
// 0600), as JSON lines.
func WithAuditFile(path string) Option {
	return optionFunc(func(c *config) { c.auditFile = path })
}

// WithAdmissionHook installs a hook run before an agent is admitted.
func WithAdmissionHook(h AdmissionHook) Option {
	return optionFunc(func(c *config) { c.admission = h })
}

// WithCallHook installs a hook run before an allowed call is forwarded.
func WithCallHook(h CallHook) Option {
	return optionFunc(func(c *config) { c.callHook = h })
}

// WithMaxFrameSize bounds one frame, and the total of one message's frames,
// received from a peer. A peer exceeding it is disconnected. The default is
// DefaultMaxFrameSize.
func WithMaxFrameSize(n int64) Option {
	return optionFunc(func(c *config) { c.maxFrameSize = n })
}

// WithMaxFrames bounds the number of frames of one message received from a
// peer. A peer exceeding it is disconnected. The default is DefaultMaxFrames.
func WithMaxFrames(n int) Option {
	return optionFunc(func(c *config) { c.maxFrames = n })
}

// WithQueueSize bounds the messages queued towards one connection. A message
// for a connection whose queue is full is refused with errno 105. The
// default is DefaultQueueSize.
func WithQueueSize(n int) Option {
	return optionFunc(func(c *config) { c.queueSize = n })
}

// WithHandshakeTimeout bounds the CURVE handshake of each connection. The
// default is DefaultHandshakeTimeout.
func WithHandshakeTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.handshakeTimeout = d })
}

// WithShutdownTimeout bounds how long Run waits at shutdown for each
// connection to be told and flushed. The default is DefaultShutdownTimeout.
func WithShutdownTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.shutdownTimeout = d })
}

// WithMaxCallTime bounds how long the platform keeps a call awaiting its
// reply; a call whose own deadline (its TIMEOUT frame) is shorter expires
// at that deadline. An expired call is answered with errno 110 and its late
// reply is dropped. The default is DefaultMaxCallTime.
func WithMaxCallTime(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxCallTime = d })
}

// WithMaxCallsInFlight bounds the calls of one connection that await
// replies; beyond it a call is refused with errno 105. The default is
// DefaultMaxCallsInFlight.
func WithMaxCallsInFlight(n int) Option {
	return optionFunc(func(c *config) { c.maxCallsInFlight = n })
}

func newConfig(opts []Option) config {
	c := config{
		address:          DefaultAddress,
		maxFrameSize:     DefaultMaxFrameSize,
		maxFrames:        DefaultMaxFrames,
		queueSize:        DefaultQueueSize,
		queueBytes:       DefaultQueueBytes,
		handshakeTimeout: DefaultHandshakeTimeout,
		shutdownTimeout:  DefaultShutdownTimeout,
		maxCallTime:      DefaultMaxCallTime,
		maxCallsInFlight: DefaultMaxCallsInFlight,
		version:          Version,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.maxFrameSize <= 0 {
		c.maxFrameSize = DefaultMaxFrameSize
	}
	if c.maxFrames < 5 {
		c.maxFrames = DefaultMaxFrames
	}
	if c.queueSize <= 0 {
		c.queueSize = DefaultQueueSize
	}
	if c.handshakeTimeout <= 0 {
		c.handshakeTimeout = DefaultHandshakeTimeout
	}
	if c.shutdownTimeout <= 0 {
		c.shutdownTimeout = DefaultShutdownTimeout
	}
	if c.maxCallTime <= 0 {
		c.maxCallTime = DefaultMaxCallTime
	}
	if c.maxCallsInFlight <= 0 {
		c.maxCallsInFlight = DefaultMaxCallsInFlight
	}
	return c
}
