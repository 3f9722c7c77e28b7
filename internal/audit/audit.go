// Package audit writes the platform's audit log: one JSON line per event, to
// a rotating file, to other writers and to slog.
//
// A caller that is refused can repeat the refused request thousands of
// times a second. Such refusals are aggregated: within one window, the
// first of identical refusals is written at once and the further ones as
// one line with their count at the end of the window. Everything else
// (admissions, allowed calls, disconnects, revocations, reloads,
// configuration changes, start and stop) is written as it comes.
//
// A failed write is never silent: it is counted (Log.WriteErrors), passed
// to the WithOnWriteError callback, and logged at Error level at most once
// a second with the number of failures since the last such line.
//
// docs/AUDIT.md describes every kind of record.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Errors.
var (
	// ErrClosed is the error of a Record, Reopen or Rotate after Close.
	ErrClosed = errors.New("audit: log closed")
	// ErrInvalidOption is wrapped by New's errors for a bad option value.
	ErrInvalidOption = errors.New("audit: invalid option")
)

// errorLogInterval is the least time between two Error log lines about
// failed writes.
const errorLogInterval = time.Second

// Log is an audit log. It is safe for concurrent use.
type Log struct {
	now     func() time.Time
	window  time.Duration
	winText string
	limit   int
	logger  *slog.Logger // mirror of the lines; nil: none
	errLog  *slog.Logger // write failures
	onError func(error)
	file    *lumberjack.Logger // nil without WithFile
	sinks   []io.Writer        // file first

	writeErrors  atomic.Uint64
	unaggregated atomic.Uint64

	mu     sync.Mutex
	closed bool
	buf    bytes.Buffer
	enc    *json.Encoder // into buf
	// The refusals of the current window, in the order first seen.
	pending   map[aggKey]*aggregate
	order     []*aggregate
	windowEnd time.Time
	timer     *time.Timer // flushes at windowEnd; armed when the window opens
	// Rate limit of the Error lines about write failures.
	errLogged     time.Time
	errSuppressed uint64
}

// aggregate is a refusal seen in the current window.
type aggregate struct {
	first  Record // as written
	count  int    // further occurrences
	remote string // of the further occurrences, unless mixed
	mixed  bool
	key    string // of the further occurrences, unless keyMixed (handshakes)
	keyMix bool
}

// New returns a Log configured by opts. With WithFile it opens (creating,
// mode 0600) the file, and fails if it cannot.
func New(opts ...Option) (*Log, error) {
	c := config{
		maxSizeMB:  DefaultMaxSizeMB,
		maxBackups: DefaultMaxBackups,
		window:     DefaultWindow,
		limit:      DefaultAggregationLimit,
		now:        time.Now,
	}
	for _, o := range opts {
		o.apply(&c)
	}
	switch {
	case c.maxSizeMB <= 0:
		return nil, fmt.Errorf("%w: WithRotation: maxSizeMB is %d, want at least 1", ErrInvalidOption, c.maxSizeMB)
	case c.maxBackups < 0:
		return nil, fmt.Errorf("%w: WithRotation: maxBackups is %d, want 0 (keep all) or more", ErrInvalidOption, c.maxBackups)
	case c.window < 0:
		return nil, fmt.Errorf("%w: WithAggregation: window is %v, want 0 (off) or more", ErrInvalidOption, c.window)
	case c.limit <= 0:
		return nil, fmt.Errorf("%w: WithAggregationLimit: %d keys, want at least 1", ErrInvalidOption, c.limit)
	}
	l := &Log{
		now:     c.now,
		window:  c.window,
		winText: c.window.String(),
		limit:   c.limit,
		logger:  c.logger,
		errLog:  c.logger,
		onError: c.onError,
		pending: make(map[aggKey]*aggregate),
	}
	if l.errLog == nil {
		l.errLog = slog.Default()
	}
	l.enc = json.NewEncoder(&l.buf)
	l.enc.SetEscapeHTML(false) // Z85 keys contain < > &
	if c.path != "" {
		// Create it here rather than in lumberjack, for the error (an
		// *fs.PathError naming the file) and the mode.
		f, err := os.OpenFile(c.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: open the audit file: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("audit: open the audit file: %w", err)
		}
		l.file = &lumberjack.Logger{Filename: c.path, MaxSize: c.maxSizeMB, MaxBackups: c.maxBackups}
		if _, err := l.file.Write(nil); err != nil { // opens it
			return nil, fmt.Errorf("audit: open the audit file %s: %w", c.path, err)
		}
		l.sinks = append(l.sinks, l.file)
	}
	l.sinks = append(l.sinks, c.writers...)
	return l, nil
}

// Record writes r, or counts it into an aggregate when it repeats a
// refusal already written in the current window. It fills in a zero Time.
// It writes synchronously to the file and the writers and does no network
// I/O of its own; it never panics on a failed write. A Record after Close
// is not written: it counts as a write error (ErrClosed).
func (l *Log) Record(r Record) {
	var errs []error
	l.mu.Lock()
	if l.closed {
		errs = l.failedLocked(ErrClosed, errs)
		l.mu.Unlock()
		l.report(errs)
		return
	}
	now := l.now()
	if r.Time.IsZero() {
		r.Time = now
	}
	r.Time = r.Time.UTC()
	if len(l.order) > 0 && !now.Before(l.windowEnd) {
		errs = l.flushLocked(now, errs)
	}
	if l.window == 0 || !aggregated(&r) || !l.absorbLocked(&r, now) {
		errs = l.writeLocked(&r, errs)
	}
	l.mu.Unlock()
	l.report(errs)
}

// absorbLocked counts r into its aggregate and reports true, or opens an
// aggregate with r as its first occurrence (or finds the table full) and
// reports false: then r is to be written.
func (l *Log) absorbLocked(r *Record, now time.Time) bool {
	k := keyOf(r)
	if a := l.pending[k]; a != nil {
		switch {
		case a.count == 0:
			a.remote, a.key = r.Remote, r.Key
		default:
			a.mixed = a.mixed || a.remote != r.Remote
			a.keyMix = a.keyMix || a.key != r.Key
		}
		a.count++
		return true
	}
	if len(l.order) >= l.limit {
		l.unaggregated.Add(1)
		return false
	}
	if len(l.order) == 0 {
		l.windowEnd = now.Add(l.window)
		if l.timer == nil {
			l.timer = time.AfterFunc(l.window, l.tick)
		} else {
			l.timer.Reset(l.window)
		}
	}
	first := *r
	first.Required, first.Missing = slices.Clone(r.Required), slices.Clone(r.Missing)
	a := &aggregate{first: first}
	l.pending[k] = a
	l.order = append(l.order, a)
	return false
}

// tick runs when the window's timer fires: it writes the window's counts,
// or waits on if the clock says the window has not ended.
func (l *Log) tick() {
	var errs []error
	l.mu.Lock()
	if !l.closed && len(l.order) > 0 {
		if now := l.now(); now.Before(l.windowEnd) {
			l.timer.Reset(l.windowEnd.Sub(now))
		} else {
			errs = l.flushLocked(now, errs)
		}
	}
	l.mu.Unlock()
	l.report(errs)
}

// flushLocked writes a count line for each aggregate with further
// occurrences, in the order first seen, and empties the table. A count
// line carries its first occurrence's fields, the remote of the further
// ones if they share one, and the end of the window (or now, if earlier)
// as its time.
func (l *Log) flushLocked(now time.Time, errs []error) []error {
	at := now
	if l.windowEnd.Before(at) {
		at = l.windowEnd
	}
	for _, a := range l.order {
		if a.count == 0 {
			continue
		}
		r := a.first
		r.Time = at.UTC()
		r.Remote, r.Key = a.remote, a.key
		if a.mixed {
			r.Remote = ""
		}
		if a.keyMix {
			r.Key = ""
		}
		r.Count, r.Window = a.count, l.winText
		errs = l.writeLocked(&r, errs)
	}
	clear(l.pending)
	clear(l.order)
	l.order = l.order[:0]
	return errs
}

// writeLocked logs r and writes it as a JSON line to every sink.
func (l *Log) writeLocked(r *Record, errs []error) []error {
	if l.logger != nil && l.logger.Enabled(context.Background(), slog.LevelInfo) {
		l.logger.LogAttrs(context.Background(), slog.LevelInfo, "audit", attrs(r)...)
	}
	if len(l.sinks) == 0 {
		return errs
	}
	l.buf.Reset()
	if err := l.enc.Encode(r); err != nil {
		return l.failedLocked(fmt.Errorf("audit: encode a %s record: %w", r.Action, err), errs)
	}
	for _, w := range l.sinks {
		if _, err := w.Write(l.buf.Bytes()); err != nil {
			errs = l.failedLocked(fmt.Errorf("audit: write a %s record: %w", r.Action, err), errs)
		}
	}
	return errs
}

// attrs returns r's non-empty fields but its time.
func attrs(r *Record) []slog.Attr {
	as := make([]slog.Attr, 0, 12)
	for _, f := range [...]struct{ k, v string }{
		{"action", r.Action}, {"decision", r.Decision}, {"user_id", r.UserID},
		{"identity", r.Identity}, {"key", r.Key}, {"remote", r.Remote}, {"peer", r.Peer},
		{"method", r.Method}, {"topic", r.Topic}, {"reason", r.Reason}, {"file", r.File},
		{"window", r.Window}, {"version", r.Version}, {"address", r.Address}, {"by", r.By},
	} {
		if f.v != "" {
			as = append(as, slog.String(f.k, f.v))
		}
	}
	for _, f := range [...]struct {
		k string
		v int
	}{{"errno", r.Errno}, {"count", r.Count}, {"pid", r.PID}} {
		if f.v != 0 {
			as = append(as, slog.Int(f.k, f.v))
		}
	}
	if len(r.Required) > 0 {
		as = append(as, slog.Any("required", r.Required))
	}
	if len(r.Missing) > 0 {
		as = append(as, slog.Any("missing", r.Missing))
	}
	if r.Generation != 0 {
		as = append(as, slog.Uint64("generation", r.Generation))
	}
	return as
}

// failedLocked counts a failed write, logs it unless another was logged
// less than errorLogInterval ago, and adds it to errs for the callback.
func (l *Log) failedLocked(err error, errs []error) []error {
	l.writeErrors.Add(1)
	now := l.now()
	if !l.errLogged.IsZero() && now.Sub(l.errLogged) < errorLogInterval {
		l.errSuppressed++
	} else {
		l.errLog.LogAttrs(context.Background(), slog.LevelError, "audit: write failed",
			slog.String("err", err.Error()), slog.Uint64("failures", l.errSuppressed+1))
		l.errLogged, l.errSuppressed = now, 0
	}
	return append(errs, err)
}

// report passes errs to the WithOnWriteError callback, outside the lock.
func (l *Log) report(errs []error) {
	if l.onError == nil {
		return
	}
	for _, err := range errs {
		l.onError(err)
	}
}

// Reopen closes the file and opens the file at its path again, creating it
// with mode 0600 if it is gone: an external logrotate moved it away (on
// SIGHUP). Without a file it does nothing.
func (l *Log) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.file == nil {
		return nil
	}
	if err := l.file.Close(); err != nil {
		return fmt.Errorf("audit: reopen %s: %w", l.file.Filename, err)
	}
	if _, err := l.file.Write(nil); err != nil {
		return fmt.Errorf("audit: reopen %s: %w", l.file.Filename, err)
	}
	return nil
}

// Rotate rotates the file now, as if it had reached its maximum size.
// Without a file it does nothing.
func (l *Log) Rotate() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.file == nil {
		return nil
	}
	if err := l.file.Rotate(); err != nil {
		return fmt.Errorf("audit: rotate %s: %w", l.file.Filename, err)
	}
	return nil
}

// WriteErrors returns the number of failed writes: a line to one sink that
// could not be written, or a Record after Close.
func (l *Log) WriteErrors() uint64 { return l.writeErrors.Load() }

// Unaggregated returns the number of refusals written line by line because
// the aggregation table was full (WithAggregationLimit).
func (l *Log) Unaggregated() uint64 { return l.unaggregated.Load() }

// Close writes the counts of the current window, stops the window timer
// and closes the file. It returns the errors of those writes and of
// closing the file. A second Close does nothing.
func (l *Log) Close() error {
	var errs []error
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	errs = l.flushLocked(l.now(), errs)
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.errSuppressed > 0 {
		l.errLog.LogAttrs(context.Background(), slog.LevelError, "audit: write failed",
			slog.Uint64("failures", l.errSuppressed))
		l.errSuppressed = 0
	}
	l.closed = true
	var cerr error
	if l.file != nil {
		if err := l.file.Close(); err != nil {
			cerr = fmt.Errorf("audit: close %s: %w", l.file.Filename, err)
		}
	}
	l.mu.Unlock()
	l.report(errs)
	return errors.Join(append(errs, cerr)...)
}
