package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/capbus/capbus/internal/vip"

	"github.com/capbus/capbus/keys"
)

// Defaults of the options.
const (
	// DefaultAddress is the platform address used without WithAddress.
	DefaultAddress = "tcp://127.0.0.1:22916"
	// DefaultCallTimeout bounds a call whose context has no deadline.
	DefaultCallTimeout = 30 * time.Second
	// DefaultConnectTimeout bounds one connection attempt: dial, CURVE
	// handshake, hello and welcome.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultConcurrency is how many handlers of exported methods run at
	// once.
	DefaultConcurrency = 64
	// DefaultQueue is how many incoming calls wait for a free handler slot
	// before further calls are refused with rpc.CodeOverloaded.
	DefaultQueue = 1024
	// DefaultHeartbeat is how often an agent pings the platform; a ping
	// unanswered for as long ends the connection.
	DefaultHeartbeat = 10 * time.Second
	// DefaultShutdownGrace is how long Run, once its context ends, lets
	// running handlers finish and reply before it disconnects.
	DefaultShutdownGrace = 5 * time.Second
	// DefaultMinBackoff is the first delay before reconnecting.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the longest delay between reconnection attempts.
	DefaultMaxBackoff = 5 * time.Second
)

// Option configures an Agent. Options are applied in order by New; an
// option that fails (an unreadable keystore, say) makes New return its
// error.
type Option interface {
	apply(*config) error
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config struct {
	keyPair        keys.Pair
	haveKeyPair    bool
	address        string
	serverKey      keys.Key
	knownHosts     string
	logger         *slog.Logger
	callTimeout    time.Duration
	connectTimeout time.Duration
	concurrency    int
	queue          int
	minBackoff     time.Duration
	maxBackoff     time.Duration
	meta           map[string]string
	heartbeat      time.Duration
	shutdownGrace  time.Duration
	dial           dialFunc // nil: CURVE over TCP

	waitForConnection bool
	connectAttempts   int // 0: retry until Run's context ends
	onConnect         func(Welcome)
	onDisconnect      func(error)
}

func defaultConfig() config {
	return config{
		address:        DefaultAddress,
		callTimeout:    DefaultCallTimeout,
		connectTimeout: DefaultConnectTimeout,
		concurrency:    DefaultConcurrency,
		queue:          DefaultQueue,
		minBackoff:     DefaultMinBackoff,
		maxBackoff:     DefaultMaxBackoff,
		heartbeat:      DefaultHeartbeat,
		shutdownGrace:  DefaultShutdownGrace,
		// The SDK has no use for peerlist add and drop: without them,
		// N agents connecting cost the platform N messages, not N(N-1)/2.
		meta: map[string]string{vip.MetaPeerlist: vip.PeerlistOff},
	}
}

// WithKeyPair sets the agent's CURVE key pair. Its public key must be in
// the platform's auth.json.
func WithKeyPair(kp keys.Pair) Option {
	return optionFunc(func(c *config) error {
		c.keyPair, c.haveKeyPair = kp, true
		return nil
	})
}

// WithKeystore loads the agent's key pair from a keystore file (see
// keys.Load).
func WithKeystore(path string) Option {
	return optionFunc(func(c *config) error {
		kp, err := keys.Load(path)
		if err != nil {
			return fmt.Errorf("agent: keystore: %w", err)
		}
		c.keyPair, c.haveKeyPair = kp, true
		return nil
	})
}

// WithAddress sets the platform's address, "tcp://host:port" or
// "host:port". The default is DefaultAddress.
func WithAddress(addr string) Option {
	return optionFunc(func(c *config) error {
		if addr == "" {
			return errors.New("agent: WithAddress: empty address")
		}
		c.address = addr
		return nil
	})
}

// WithServerKey pins the platform's public key: the agent talks only to a
// platform that proves it holds the matching secret key.
func WithServerKey(k keys.Key) Option {
	return optionFunc(func(c *config) error {
		if k.IsZero() {
			return errors.New("agent: WithServerKey: zero key")
		}
		c.serverKey = k
		return nil
	})
}

// WithPlatform is WithAddress and WithServerKey in one.
func WithPlatform(addr string, serverKey keys.Key) Option {
	return optionFunc(func(c *config) error {
		if err := WithAddress(addr).apply(c); err != nil {
			return err
		}
		return WithServerKey(serverKey).apply(c)
	})
}

// WithKnownHosts reads the platform's key from a known-hosts file when no
// WithServerKey is given: a text file of "address serverkey" lines, blank
// lines and lines starting with # ignored, keys in Z85 or base64url (see
// keys.LookupKnownHost: a malformed line is skipped with a warning). The
// line whose address matches the agent's address ("tcp://" optional on
// either side) is used; New fails when there is none.
func WithKnownHosts(path string) Option {
	return optionFunc(func(c *config) error {
		c.knownHosts = path
		return nil
	})
}

// WithLogger sets the logger of the agent; the default is slog.Default().
// Handler panics are logged at Error level with their stack.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) error {
		if l != nil {
			c.logger = l
		}
		return nil
	})
}

// WithCallTimeout bounds calls, publishes and queries whose context has no
// deadline (default DefaultCallTimeout). A context deadline always wins.
func WithCallTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("agent: WithCallTimeout(%v): must be positive", d)
		}
		c.callTimeout = d
		return nil
	})
}

// WithConnectTimeout bounds one connection attempt: TCP dial, CURVE
// handshake, hello and welcome (default DefaultConnectTimeout).
func WithConnectTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("agent: WithConnectTimeout(%v): must be positive", d)
		}
		c.connectTimeout = d
		return nil
	})
}

// WithConcurrency sets how many handlers of exported methods run at once
// (n >= 1) and how many incoming calls may wait for a slot (queue >= 0). A
// call arriving when the queue is full is refused at once with
// rpc.CodeOverloaded. Defaults: DefaultConcurrency and DefaultQueue.
// (Subscriptions are not counted: each handles its messages one at a time.)
// Handlers run on worker goroutines, started as calls need them, up to n;
// they stay while the agent is connected, so that a busy agent does not
// start a goroutine and grow its stack for every call.
func WithConcurrency(n, queue int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 || queue < 0 {
			return fmt.Errorf("agent: WithConcurrency(%d, %d): need n >= 1 and queue >= 0", n, queue)
		}
		c.concurrency, c.queue = n, queue
		return nil
	})
}

// WithBackoff bounds the delay between reconnection attempts: it starts at
// min and doubles, with jitter, up to max.
func WithBackoff(min, max time.Duration) Option {
	return optionFunc(func(c *config) error {
		if min <= 0 || max < min {
			return fmt.Errorf("agent: WithBackoff(%v, %v): need 0 < min <= max", min, max)
		}
		c.minBackoff, c.maxBackoff = min, max
		return nil
	})
}

// WithMeta adds a metadata entry to the hello message; the platform shows
// metadata to its admission hooks (for example "version"). The agent sends
// "peerlist": "off" unless told otherwise here: the platform then does not
// tell it of every peer that joins or leaves (which it would only log, at
// debug level).
func WithMeta(key, value string) Option {
	return optionFunc(func(c *config) error {
		c.meta[key] = value
		return nil
	})
}

// WithHeartbeat sets how often the agent pings the platform (default
// DefaultHeartbeat). A ping unanswered within the same interval ends the
// connection, failing calls in flight with rpc.ErrUnavailable, and the
// agent reconnects: this detects a platform host that vanished without
// closing its connections. Zero turns heartbeats off.
func WithHeartbeat(interval time.Duration) Option {
	return optionFunc(func(c *config) error {
		if interval < 0 {
			return fmt.Errorf("agent: WithHeartbeat(%v): must not be negative", interval)
		}
		c.heartbeat = interval
		return nil
	})
}

// WithShutdownGrace sets how long Run, once its context ends, lets the
// handlers of calls already received finish and send their replies before
// it disconnects and cancels their contexts (default DefaultShutdownGrace).
// Calls arriving meanwhile are refused with rpc.ErrUnavailable. Zero
// disconnects at once.
func WithShutdownGrace(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d < 0 {
			return fmt.Errorf("agent: WithShutdownGrace(%v): must not be negative", d)
		}
		c.shutdownGrace = d
		return nil
	})
}

// WithWaitForConnection makes calls, notifies, publishes and queries made
// while the agent is disconnected (before the first welcome, or while it
// reconnects) wait for the connection until their context ends, instead
// of failing at once with rpc.ErrUnavailable.
func WithWaitForConnection() Option {
	return optionFunc(func(c *config) error {
		c.waitForConnection = true
		return nil
	})
}

// WithOnConnect calls fn, on its own goroutine, each time the platform
// welcomes the agent: at the first connection and after each reconnection.
func WithOnConnect(fn func(Welcome)) Option {
	return optionFunc(func(c *config) error {
		c.onConnect = fn
		return nil
	})
}

// WithOnDisconnect calls fn, on its own goroutine, each time a welcomed
// connection ends, with the reason. Run reconnects unless its context
// ended.
func WithOnDisconnect(fn func(error)) Option {
	return optionFunc(func(c *config) error {
		c.onDisconnect = fn
		return nil
	})
}

// WithConnectAttempts makes Run give up after n failed connection attempts
// before the agent was first welcomed, returning the last attempt's
// diagnosis (WaitConnected then fails with it at once), instead of
// retrying until its context ends. A one-shot tool wants 1: when nothing
// listens at the address the dial fails at once (the error matches
// syscall.ECONNREFUSED), so the tool can say so without waiting. Once
// welcomed, the agent reconnects as usual. The default, 0, never gives up.
func WithConnectAttempts(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 0 {
			return fmt.Errorf("agent: WithConnectAttempts(%d): must not be negative", n)
		}
		c.connectAttempts = n
		return nil
	})
}
