package curve

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ErrReplay is wrapped by the error of a handshake whose HELLO carries a
// client transient key the listener has seen before: a replayed HELLO,
// refused before the key agreement it would cost.
var ErrReplay = errors.New("curve: replayed HELLO")

// seenKeys remembers the client transient keys of the last HELLOs that
// opened, so that a replayed HELLO (which costs its sender nothing) is
// refused without a key agreement (which costs the server one). A client
// makes a new transient key for every connection (RFC 26), so a key seen
// twice is a replay. Bounded: the oldest keys are forgotten first.
type seenKeys struct {
	mu   sync.Mutex
	set  map[[32]byte]struct{}
	ring [][32]byte
	next int
}

// seenKeysSize bounds the transient keys remembered.
const seenKeysSize = 1 << 16

func newSeenKeys(n int) *seenKeys {
	return &seenKeys{set: make(map[[32]byte]struct{}, n), ring: make([][32]byte, 0, n)}
}

func (s *seenKeys) contains(k [32]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.set[k]
	return ok
}

func (s *seenKeys) add(k [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.set[k]; ok {
		return
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, k)
	} else {
		delete(s.set, s.ring[s.next])
		s.ring[s.next] = k
		s.next = (s.next + 1) % len(s.ring)
	}
	s.set[k] = struct{}{}
}

// failures rate-limits the handshakes of addresses that keep failing them:
// after limit failures from one host within a minute, the handshakes of
// its new connections are refused after their HELLO, with ERROR "300" and
// no key agreement, for a backoff that starts at one second and doubles,
// up to a minute. A successful handshake from the host forgets
// its failures. Bounded in hosts tracked.
type failures struct {
	limit int
	now   func() time.Time

	mu    sync.Mutex
	hosts map[string]*hostFailures
}

type hostFailures struct {
	count   int
	since   time.Time // start of the counting window
	until   time.Time // refused until then
	backoff time.Duration
	// The busy answers given in the current second of the backoff: past
	// busyAnswersPerSecond, the host's connections are closed at once.
	busySecond time.Time
	busy       int
}

const (
	// busyTimeout bounds the exchange with a host in its backoff: its
	// greeting and HELLO, answered with ERROR "300".
	busyTimeout    = time.Second
	failureWindow  = time.Minute
	minBackoff     = time.Second
	maxBackoff     = time.Minute
	maxHostsWithin = 10000
)

func newFailures(limit int) *failures {
	return &failures{limit: limit, now: time.Now, hosts: make(map[string]*hostFailures)}
}

// busyAnswersPerSecond bounds the handshakes of a host in its backoff that
// are answered ERROR "300" (a greeting, a HELLO read, an ERROR written: no
// key agreement, but a goroutine and the kernel's work of a connection)
// in one second; beyond, its connections are closed at once. A legitimate
// client retrying with backoff stays far below and gets its diagnosis; a
// flood does not get an answer per connection.
const busyAnswersPerSecond = 10

// blocked reports whether host is in its backoff, and whether its
// connection should be closed at once rather than answered busy.
func (f *failures) blocked(host string) (blocked, closeNow bool) {
	if f == nil {
		return false, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hosts[host]
	now := f.now()
	if h == nil || !now.Before(h.until) {
		return false, false
	}
	if now.Sub(h.busySecond) >= time.Second {
		h.busySecond, h.busy = now, 0
	}
	h.busy++
	return true, h.busy > busyAnswersPerSecond
}

// failed counts a failed handshake from host and reports whether the host
// just entered a backoff, and for how long.
func (f *failures) failed(host string) (time.Duration, bool) {
	if f == nil {
		return 0, false
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hosts[host]
	if h == nil {
		if len(f.hosts) >= maxHostsWithin {
			f.forgetIdle(now)
			if len(f.hosts) >= maxHostsWithin {
				return 0, false // too many hosts to track: the cap on handshakes still holds
			}
		}
		h = &hostFailures{since: now}
		f.hosts[host] = h
	}
	if now.Sub(h.since) > failureWindow {
		h.count, h.since = 0, now
	}
	h.count++
	if h.count < f.limit {
		return 0, false
	}
	h.backoff = min(max(2*h.backoff, minBackoff), maxBackoff)
	h.until = now.Add(h.backoff)
	h.count, h.since = 0, now
	return h.backoff, true
}

// succeeded forgets host's failures.
func (f *failures) succeeded(host string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	delete(f.hosts, host)
	f.mu.Unlock()
}

// forgetIdle drops hosts neither in a backoff nor failing lately. f.mu is
// held.
func (f *failures) forgetIdle(now time.Time) {
	for host, h := range f.hosts {
		if now.After(h.until) && now.Sub(h.since) > failureWindow {
			delete(f.hosts, host)
		}
	}
}

// hostOf returns the host of a "host:port" address.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// failureReport counts what the listener refused or failed since its last
// report, which it logs as one warning at most every reportEvery: under a
// flood the log gets a count, not a line per connection (each is logged at
// debug level).
type failureReport struct {
	mu      sync.Mutex
	counts  map[string]int
	changed bool
}

// reportEvery is how often the listener logs the count of failed
// handshakes, when there were any.
const reportEvery = 10 * time.Second

func (r *failureReport) add(kind string) {
	r.mu.Lock()
	if r.counts == nil {
		r.counts = map[string]int{}
	}
	r.counts[kind]++
	r.changed = true
	r.mu.Unlock()
}

// flush logs and resets the counts, if any.
func (r *failureReport) flush(log *slog.Logger, every time.Duration) {
	r.mu.Lock()
	counts, changed := r.counts, r.changed
	r.counts, r.changed = nil, false
	r.mu.Unlock()
	if !changed {
		return
	}
	attrs := []any{"period", every}
	total := 0
	for kind, n := range counts {
		attrs = append(attrs, kind, n)
		total += n
	}
	attrs = append([]any{"total", total}, attrs...)
	log.Warn("curve: handshakes failed or refused", attrs...)
}

// failureKind classifies a handshake error for the report.
func failureKind(err error) string {
	switch {
	case errors.Is(err, ErrReplay):
		return "replayed_hello"
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrRefused):
		return "refused"
	case errors.Is(err, ErrDecrypt):
		return "bad_box"
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return "other"
}
