package admin

import (
	"log/slog"
	"net/http"
	"time"
)

// Defaults and limits.
const (
	// MinTokenLength is the shortest access token New accepts, in bytes.
	MinTokenLength = 16
	// SessionTTL is how long a console session lasts after login.
	SessionTTL = 12 * time.Hour
	// MaxSessions bounds the live console sessions; a login beyond it ends
	// the oldest session.
	MaxSessions = 64
	// FreeLoginFailures is how many failed logins a remote IP may make
	// before it must wait; the wait starts at LoginBackoff and doubles with
	// each further failure, up to MaxLoginBackoff.
	FreeLoginFailures = 5
	// LoginBackoff is the first wait after FreeLoginFailures failures.
	LoginBackoff = 30 * time.Second
	// MaxLoginBackoff caps the wait between failed logins.
	MaxLoginBackoff = 15 * time.Minute
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// once its context ends.
	ShutdownTimeout = 5 * time.Second
)

// Option configures a Server. Options are applied in order by New.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	token     string
	tokenFile string
	metrics   http.Handler
	logger    *slog.Logger
	hosts     []string
}

// WithToken sets the console's access token (at least MinTokenLength
// bytes). New requires WithToken or WithTokenFile.
func WithToken(secret string) Option {
	return optionFunc(func(c *config) { c.token = secret })
}

// WithTokenFile reads the access token from path (surrounding white space
// is ignored). If the file does not exist, New generates a random token (32
// bytes, base64url) and writes it there with mode 0600. New refuses a token
// file that group or others may read (ErrInsecureTokenFile). WithToken, if
// also given, wins.
func WithTokenFile(path string) Option {
	return optionFunc(func(c *config) { c.tokenFile = path })
}

// WithMetrics sets the handler of GET /metrics, for example promhttp's
// handler for the platform's registry. Without it /metrics is 404.
func WithMetrics(h http.Handler) Option {
	return optionFunc(func(c *config) { c.metrics = h })
}

// WithLogger sets the logger for logins, edits and server errors. The
// default discards.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithAllowedHosts adds host names (without port) that the Host header of
// a console or /metrics request may name, for example the name of a reverse
// proxy. Always allowed: localhost, 127.0.0.1, ::1 and the IP address the
// request arrived on (the listen host). Any other Host is refused with 421,
// which defeats DNS rebinding.
func WithAllowedHosts(hosts ...string) Option {
	return optionFunc(func(c *config) { c.hosts = append(c.hosts, hosts...) })
}
