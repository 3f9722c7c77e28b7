package admin

import (
	"sync"
	"time"
)

// session is one logged-in operator.
type session struct {
	name    string    // operator's name, from the login form
	csrf    string    // the CSRF token of the session's forms
	created time.Time // login time
	expires time.Time
	flash   string // message for the next page, shown once
}

// sessions holds the live sessions, bounded by max.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session // by session id (the cookie's value)
	max int
	ttl time.Duration
	now func() time.Time
}

func newSessions(max int, ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: make(map[string]*session), max: max, ttl: ttl, now: now}
}

// create starts a session for name and returns its id. When the store is
// full it drops expired sessions, then the oldest one; evicted tells
// whether a live session was ended to make room.
func (s *sessions) create(name string) (id string, sess session, evicted bool) {
	now := s.now()
	id = newSecret(32)
	sess = session{name: name, csrf: newSecret(32), created: now, expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		s.sweepLocked(now)
	}
	if len(s.m) >= s.max {
		var oldest string
		for k, v := range s.m {
			if oldest == "" || v.created.Before(s.m[oldest].created) {
				oldest = k
			}
		}
		delete(s.m, oldest)
		evicted = true
	}
	s.m[id] = &sess
	return id, sess, evicted
}

// take returns the live session with the given id and clears its flash
// message (the returned copy keeps it).
func (s *sessions) take(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	if !s.now().Before(v.expires) {
		delete(s.m, id)
		return session{}, false
	}
	c := *v
	v.flash = ""
	return c, true
}

// get returns the live session with the given id, leaving its flash.
func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok || !s.now().Before(v.expires) {
		return session{}, false
	}
	return *v, true
}

// setFlash sets the message shown by the session's next page.
func (s *sessions) setFlash(id, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[id]; ok {
		v.flash = msg
	}
}

// remove ends a session.
func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// len returns the number of stored sessions, expired or not.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *sessions) sweepLocked(now time.Time) {
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
}
