package platform

import (
	"sync/atomic"
	"time"
)

// Limits bound every resource one peer, one user or all of them can take
// from the platform. A zero field takes its default (DefaultLimits);
// docs/PROTOCOL.md says what happens beyond each.
type Limits struct {
	// MaxFrameSize bounds one frame, and the frames of one message
	// together, received from a peer; beyond it the connection is closed.
	MaxFrameSize int64
	// MaxFrames bounds the frames of one message received from a peer;
	// beyond it the connection is closed.
	MaxFrames int

	// QueueMessages and QueueBytes bound what is queued towards one
	// connection. A message larger than QueueBytes is still taken when
	// nothing else is queued.
	QueueMessages int
	QueueBytes    int64
	// UserQueueBytes bounds what is queued towards all the connections of
	// one user together.
	UserQueueBytes int64
	// TotalQueueBytes bounds what is queued towards all connections.
	TotalQueueBytes int64
	// SlowConsumer is how long a connection may leave its queue full, or
	// take to accept one write, before the platform closes it.
	SlowConsumer time.Duration

	// MaxConnections bounds the connections of the platform,
	// MaxConnectionsPerKey those of one key, and MaxPreHello those that
	// have not been welcomed yet. Beyond each, the handshake is refused.
	MaxConnections       int
	MaxConnectionsPerKey int
	MaxPreHello          int
	// HelloTimeout is how long a connection may take to say hello.
	HelloTimeout time.Duration

	// HandshakeTimeout bounds one CURVE handshake, MaxPendingHandshakes
	// those in progress at once (beyond it new TCP connections are closed
	// at once). HandshakeFailures failed handshakes from one address
	// within a minute make the platform refuse that address for a backoff
	// that starts at one second and doubles, up to a minute.
	HandshakeTimeout     time.Duration
	MaxPendingHandshakes int
	HandshakeFailures    int

	// MaxCallsInFlight bounds the calls of one connection awaiting
	// replies; MaxCallTime how long the platform keeps one (a call's own
	// deadline, when shorter, wins).
	MaxCallsInFlight int
	MaxCallTime      time.Duration

	// MaxSubscriptions bounds the subscriptions of one connection,
	// MaxUserSubscriptions those of all the connections of one user.
	MaxSubscriptions     int
	MaxUserSubscriptions int

	// MaxPing bounds the arguments of a ping after hello, MaxPingBeforeHello
	// before it (bytes).
	MaxPing            int
	MaxPingBeforeHello int
}

// DefaultLimits returns the limits a platform has unless told otherwise.
//
// QueueBytes is 2 MiB: about 7,000 VIP calls of 300 bytes, more than
// 100 ms of the busiest connection's traffic; a peer that far behind is
// not keeping up, and 2 MiB for each of 10,000 connections is bounded
// anyway by UserQueueBytes (16 MiB, eight such connections) and
// TotalQueueBytes (128 MiB), so one admitted key can no longer take the
// machine's memory by not reading.
func DefaultLimits() Limits {
	return Limits{
		MaxFrameSize:         16 << 20,
		MaxFrames:            64,
		QueueMessages:        4096,
		QueueBytes:           2 << 20,
		UserQueueBytes:       16 << 20,
		TotalQueueBytes:      128 << 20,
		SlowConsumer:         5 * time.Second,
		MaxConnections:       20000,
		MaxConnectionsPerKey: 64,
		MaxPreHello:          1024,
		HelloTimeout:         10 * time.Second,
		HandshakeTimeout:     10 * time.Second,
		MaxPendingHandshakes: 256,
		HandshakeFailures:    100,
		MaxCallsInFlight:     1024,
		MaxCallTime:          10 * time.Minute,
		MaxSubscriptions:     4096,
		MaxUserSubscriptions: 16384,
		MaxPing:              64 << 10,
		MaxPingBeforeHello:   256,
	}
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	set64 := func(v *int64, dv int64) {
		if *v <= 0 {
			*v = dv
		}
	}
	setD := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	set64(&l.MaxFrameSize, d.MaxFrameSize)
	set(&l.MaxFrames, d.MaxFrames)
	if l.MaxFrames < 5 {
		l.MaxFrames = d.MaxFrames
	}
	set(&l.QueueMessages, d.QueueMessages)
	set64(&l.QueueBytes, d.QueueBytes)
	set64(&l.UserQueueBytes, d.UserQueueBytes)
	set64(&l.TotalQueueBytes, d.TotalQueueBytes)
	setD(&l.SlowConsumer, d.SlowConsumer)
	set(&l.MaxConnections, d.MaxConnections)
	set(&l.MaxConnectionsPerKey, d.MaxConnectionsPerKey)
	set(&l.MaxPreHello, d.MaxPreHello)
	setD(&l.HelloTimeout, d.HelloTimeout)
	setD(&l.HandshakeTimeout, d.HandshakeTimeout)
	set(&l.MaxPendingHandshakes, d.MaxPendingHandshakes)
	set(&l.HandshakeFailures, d.HandshakeFailures)
	set(&l.MaxCallsInFlight, d.MaxCallsInFlight)
	setD(&l.MaxCallTime, d.MaxCallTime)
	set(&l.MaxSubscriptions, d.MaxSubscriptions)
	set(&l.MaxUserSubscriptions, d.MaxUserSubscriptions)
	set(&l.MaxPing, d.MaxPing)
	set(&l.MaxPingBeforeHello, d.MaxPingBeforeHello)
	return l
}

// WithLimits sets the platform's limits; zero fields keep their defaults.
func WithLimits(l Limits) Option {
	return optionFunc(func(c *config) { c.limits = l })
}

// userState is what the connections of one user share: their memory
// budget and their counts.
type userState struct {
	queued atomic.Int64 // bytes queued towards the user's connections
	conns  int          // guarded by Platform.mu
	subs   atomic.Int64 // subscriptions of the user's connections
}

// userOf returns the state of user id, counting one more connection.
// p.mu must be held.
func (p *Platform) userOf(id string) *userState {
	u := p.users[id]
	if u == nil {
		u = &userState{}
		p.users[id] = u
	}
	u.conns++
	return u
}

// leave counts a connection of user id out. p.mu must be held.
func (p *Platform) leave(id string) {
	if u := p.users[id]; u != nil {
		if u.conns--; u.conns <= 0 {
			delete(p.users, id)
		}
	}
}
