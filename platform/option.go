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
	// DefaultShutdownTimeout bounds how long Run waits for connections to
	// flush their last message at shutdown before closing them.
	DefaultShutdownTimeout = 2 * time.Second
	// DefaultAuditMaxMB is the size at which the audit file is rotated.
	DefaultAuditMaxMB = 100
	// DefaultAuditBackups is how many rotated audit files are kept.
	DefaultAuditBackups = 5
)

// Option configures a Platform. Options are applied in order by New.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	address         string
	keyPair         *keys.Pair
	keystore        string
	authFile        string
	store           *auth.Store
	policy          *auth.Policy
	logger          *slog.Logger
	auditWriter     io.Writer
	auditFile       string
	auditMaxMB      int
	auditBackups    int
	auditAllowed    bool
	admission       AdmissionHook
	callHook        CallHook
	limits          Limits
	shutdownTimeout time.Duration
	version         string
	pendingKeysFile string // see WithPendingKeysFile
	configStore     string // the configuration store's file (config.go)
	adminAddress    string // the admin endpoint (console.go)
	adminTokenFile  string
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
// 0600), as JSON lines, rotated by size (see WithAuditRotation). Reload
// (SIGHUP in capbus platform run) reopens it, for external log rotation.
func WithAuditFile(path string) Option {
	return optionFunc(func(c *config) { c.auditFile = path })
}

// WithAuditRotation sets when the audit file is rotated (its size, in MB)
// and how many rotated files are kept. Defaults: DefaultAuditMaxMB and
// DefaultAuditBackups.
func WithAuditRotation(maxSizeMB, keep int) Option {
	return optionFunc(func(c *config) { c.auditMaxMB, c.auditBackups = maxSizeMB, keep })
}

// WithAuditAllowed records allowed calls, publishes and subscribes too
// (action "call", "publish" or "subscribe" with decision "allow"). Off by
// default: only refusals, admissions, disconnects, revocations, reloads
// and changes are recorded.
func WithAuditAllowed(on bool) Option {
	return optionFunc(func(c *config) { c.auditAllowed = on })
}

// WithAdmissionHook installs a hook run before an agent is admitted.
func WithAdmissionHook(h AdmissionHook) Option {
	return optionFunc(func(c *config) { c.admission = h })
}

// WithCallHook installs a hook run before an allowed call is forwarded.
func WithCallHook(h CallHook) Option {
	return optionFunc(func(c *config) { c.callHook = h })
}

// WithShutdownTimeout bounds how long Run waits at shutdown for each
// connection to be told and flushed. The default is DefaultShutdownTimeout.
func WithShutdownTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.shutdownTimeout = d })
}

func newConfig(opts []Option) config {
	c := config{
		address:         DefaultAddress,
		shutdownTimeout: DefaultShutdownTimeout,
		auditMaxMB:      DefaultAuditMaxMB,
		auditBackups:    DefaultAuditBackups,
		version:         Version,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.limits = c.limits.withDefaults()
	if c.shutdownTimeout <= 0 {
		c.shutdownTimeout = DefaultShutdownTimeout
	}
	return c
}
