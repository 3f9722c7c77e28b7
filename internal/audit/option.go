package audit

import (
	"io"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	// DefaultMaxSizeMB is the size in megabytes at which the file rotates.
	DefaultMaxSizeMB = 100
	// DefaultMaxBackups is how many rotated files are kept.
	DefaultMaxBackups = 5
	// DefaultWindow is the aggregation period of repeated refusals.
	DefaultWindow = time.Second
	// DefaultAggregationLimit bounds the refusals aggregated at once.
	DefaultAggregationLimit = 10000
)

// Option configures a Log. Options are applied in order by New.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	path       string
	maxSizeMB  int
	maxBackups int
	writers    []io.Writer
	logger     *slog.Logger
	window     time.Duration
	limit      int
	now        func() time.Time
	onError    func(error)
}

// WithFile appends the log to the file at path as JSON lines. New creates
// the file with mode 0600 if it does not exist (an existing file keeps its
// mode) and fails if it cannot open it. The file rotates by size (see
// WithRotation); rotated files keep the mode of the file they were.
func WithFile(path string) Option {
	return optionFunc(func(c *config) { c.path = path })
}

// WithRotation rotates the file when a write would take it past maxSizeMB
// megabytes, renaming it to "name-<UTC time>.ext" beside it, and keeps
// the newest maxBackups rotated files (0 keeps them all). The defaults are
// DefaultMaxSizeMB and DefaultMaxBackups. Without WithFile it has no
// effect.
func WithRotation(maxSizeMB, maxBackups int) Option {
	return optionFunc(func(c *config) { c.maxSizeMB, c.maxBackups = maxSizeMB, maxBackups })
}

// WithWriter also writes each line to w (it may be given several times).
// Writes happen in Record, under the Log's lock: w must not block for long,
// so a network sink belongs behind a buffer of its own.
func WithWriter(w io.Writer) Option {
	return optionFunc(func(c *config) {
		if w != nil {
			c.writers = append(c.writers, w)
		}
	})
}

// WithLogger also logs each line at Info level under the message "audit",
// with its non-empty fields as attributes, and reports write failures on
// it at Error level. Without it lines are not logged, and write failures
// are reported on slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithAggregation sets the aggregation window of repeated refusals
// (DefaultWindow); 0 turns aggregation off.
func WithAggregation(window time.Duration) Option {
	return optionFunc(func(c *config) { c.window = window })
}

// WithAggregationLimit bounds how many distinct refusals are aggregated at
// once (DefaultAggregationLimit); further ones are written line by line
// and counted by Log.Unaggregated.
func WithAggregationLimit(keys int) Option {
	return optionFunc(func(c *config) { c.limit = keys })
}

// WithClock sets the source of the time of records, of aggregation windows
// and of the error-log rate limit (time.Now). Tests use it to move time
// without waiting.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithOnWriteError calls fn with the error of each failed write (of a line
// to one sink), after the Log's lock is released; fn must not block. The
// platform counts them in a metric.
func WithOnWriteError(fn func(error)) Option {
	return optionFunc(func(c *config) { c.onError = fn })
}
