package admin

import (
	"sync"
	"time"
)

// maxLimiterEntries bounds the remote IPs the login limiter remembers.
const maxLimiterEntries = 4096

// limiter slows down failed logins per remote IP: after free failures,
// each further attempt must wait base, doubling with every failure up to
// maxWait. A success forgets the IP; so does a quiet period of forget.
type limiter struct {
	mu      sync.Mutex
	m       map[string]*failures
	free    int
	base    time.Duration
	maxWait time.Duration
	forget  time.Duration
	now     func() time.Time
}

type failures struct {
	n     int       // failures so far
	last  time.Time // last failure
	until time.Time // no attempt before this
}

func newLimiter(free int, base, maxWait time.Duration, now func() time.Time) *limiter {
	return &limiter{m: make(map[string]*failures), free: free, base: base, maxWait: maxWait,
		forget: 2 * maxWait, now: now}
}

// wait returns how long ip must wait before its next login attempt; 0
// means it may try now.
func (l *limiter) wait(ip string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.m[ip]
	if !ok {
		return 0
	}
	now := l.now()
	if now.Sub(f.last) >= l.forget {
		delete(l.m, ip)
		return 0
	}
	if d := f.until.Sub(now); d > 0 {
		return d
	}
	return 0
}

// fail records a failed attempt by ip and returns the wait it now has.
func (l *limiter) fail(ip string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f, ok := l.m[ip]
	if !ok {
		if len(l.m) >= maxLimiterEntries {
			l.evictLocked(now)
		}
		f = &failures{}
		l.m[ip] = f
	}
	f.n++
	f.last = now
	if f.n < l.free {
		return 0
	}
	d := l.base
	for i := l.free; i < f.n && d < l.maxWait; i++ {
		d *= 2
	}
	d = min(d, l.maxWait)
	f.until = now.Add(d)
	return d
}

// succeed forgets ip's failures.
func (l *limiter) succeed(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, ip)
}

// evictLocked drops forgotten entries, and if none was, the one with the
// oldest failure.
func (l *limiter) evictLocked(now time.Time) {
	var oldest string
	for k, f := range l.m {
		if now.Sub(f.last) >= l.forget {
			delete(l.m, k)
			continue
		}
		if oldest == "" || f.last.Before(l.m[oldest].last) {
			oldest = k
		}
	}
	if len(l.m) >= maxLimiterEntries {
		delete(l.m, oldest)
	}
}
