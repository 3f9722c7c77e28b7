package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// Agent is one participant on a capbus platform: it holds an identity,
// serves exported methods, calls other agents and publishes and subscribes
// to topics, all through the platform, which authenticates it by its CURVE
// key and authorizes every call against auth.json.
//
// Create an Agent with New (or FromEnv), register exports and
// subscriptions, then call Run, which connects and serves until its
// context ends. All methods are safe for concurrent use.
type Agent struct {
	identity string
	cfg      config
	log      *slog.Logger
	dial     dialFunc

	running  atomic.Bool
	nextID   atomic.Uint64
	idPrefix string
	timers   sync.Pool // *time.Timer for calls without a deadline
	requests sync.Pool // *request, with its reply channel

	// handlers counts the goroutines that run handlers and message
	// handlers; Run waits for them before it returns.
	handlers sync.WaitGroup

	mu       sync.RWMutex
	sess     *session      // the welcomed session, nil while disconnected
	ready    chan struct{} // closed while sess != nil
	lastErr  error         // why the last connection attempt or session failed
	stopped  bool          // Run returned
	failed   bool          // and returned an error (not ended by its context)
	stateCh  chan struct{} // closed and replaced by every state change
	exports  map[string]*export
	subs     map[*Subscription]struct{}
	exportsV uint64 // bumped by every change to exports
	subsV    uint64 // bumped by every change to subs

	config *Config // the agent's configuration store (config.go)
}

// Welcome is what the platform said when it admitted the agent.
type Welcome struct {
	// Identity is the identity as admitted.
	Identity string
	// UserID is the user id of the agent's key in auth.json.
	UserID string
	// Version is the platform's version.
	Version string
	// Generation is the policy generation in force.
	Generation uint64
	// ServerKey is the platform's public key.
	ServerKey keys.Key
}

// New returns an agent that will claim identity on the platform. It does
// not connect: Run does. The options must give the agent a key pair
// (WithKeyPair or WithKeystore) and the platform's key (WithServerKey,
// WithPlatform or WithKnownHosts); FromEnv finds both the way a local
// platform lays them out.
func New(identity string, opts ...Option) (*Agent, error) {
	if err := checkIdentity(identity); err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	cfg.logger = cfg.logger.With("agent", identity)
	dial := cfg.dial
	if dial == nil {
		if !cfg.haveKeyPair {
			return nil, errors.New("agent: no key pair: use WithKeyPair or WithKeystore")
		}
		if cfg.serverKey.IsZero() && cfg.knownHosts != "" {
			k, err := keys.LookupKnownHost(cfg.knownHosts, cfg.address, cfg.logger)
			if err != nil {
				return nil, fmt.Errorf("agent: %w", err)
			}
			cfg.serverKey = k
		}
		if cfg.serverKey.IsZero() {
			return nil, errors.New("agent: no server key: use WithServerKey, WithPlatform or WithKnownHosts")
		}
		dial = dialCurve(cfg.address, cfg.keyPair, cfg.serverKey, identity, &cfg)
	}
	a := &Agent{
		idPrefix: strconv.FormatUint(rand.Uint64(), 36) + ".",
		identity: identity,
		cfg:      cfg,
		log:      cfg.logger,
		dial:     dial,
		ready:    make(chan struct{}),
		stateCh:  make(chan struct{}),
		exports:  make(map[string]*export),
		subs:     make(map[*Subscription]struct{}),
	}
	a.config = newConfig(a)
	return a, nil
}

func checkIdentity(id string) error {
	if id == "" || len(id) > vip.MaxIdentity {
		return fmt.Errorf("agent: identity %q: must be 1 to 128 bytes", id)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("agent: identity %q: contains a control character", id)
		}
	}
	return nil
}

// Identity returns the identity the agent claims.
func (a *Agent) Identity() string { return a.identity }

// Ready returns a channel that is closed while the agent is connected and
// welcomed by the platform. While the agent is disconnected it returns a
// channel that the next welcome closes. WaitConnected is the same wait with
// a deadline and the reason when it fails.
func (a *Agent) Ready() <-chan struct{} {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.ready
}

// WaitConnected waits until the agent is connected and welcomed (Run must
// be running, or about to: after a Run has returned it waits for the
// next), and returns nil. It fails when ctx ends first, with the reason the
// last connection attempt failed, such as "the platform refused this
// agent's key" or "wrong server key?", or when Run returns without
// connecting.
func (a *Agent) WaitConnected(ctx context.Context) error {
	moved := false // the state changed while waiting
	for {
		// The state and the channel that announces its next change are
		// read together: a change in between would otherwise go unseen.
		a.mu.RLock()
		ready, last, stopped, failed, changed := a.ready, a.lastErr, a.stopped, a.failed, a.stateCh
		a.mu.RUnlock()
		select {
		case <-ready:
			return nil
		default:
		}
		// A stop seen on entry, with Run not running, of a Run that its
		// context ended is an earlier Run's: wait for the next one ("go
		// a.Run(ctx)" just before). A Run that failed fails this at once.
		if stopped && (moved || failed || a.running.Load()) {
			if last == nil {
				last = errors.New("agent stopped")
			}
			return rpc.NewError(rpc.CodeUnavailable, "not connected: "+last.Error()).WithCause(last)
		}
		select {
		case <-ready:
			return nil
		case <-changed:
			moved = true // look again
		case <-ctx.Done():
			msg := "not connected to the platform at " + a.cfg.address
			if last != nil {
				msg += ": last attempt: " + last.Error()
			}
			return rpc.NewError(rpc.CodeUnavailable, msg).WithCause(errors.Join(ctx.Err(), last))
		}
	}
}

// Welcome returns what the platform said when it last admitted the agent,
// and false while the agent is not connected.
func (a *Agent) Welcome() (Welcome, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.sess == nil {
		return Welcome{}, false
	}
	return a.sess.welcome, true
}

// current returns the welcomed session. Without one it fails at once with
// rpc.ErrUnavailable, unless WithWaitForConnection is set: it then waits
// for the next welcome until ctx ends.
func (a *Agent) current(ctx context.Context) (*session, error) {
	moved := false // the state changed while this call waited
	for {
		a.mu.RLock()
		s, ready, stopped, failed, changed := a.sess, a.ready, a.stopped, a.failed, a.stateCh
		a.mu.RUnlock()
		if s != nil {
			return s, nil
		}
		// Waiting, a call made right after "go a.Run(ctx)" waits for that
		// Run, as WaitConnected does: a stop seen on entry of a Run that
		// its context ended is an earlier Run's.
		if !a.cfg.waitForConnection || stopped && (moved || failed || a.running.Load()) {
			return nil, rpc.NewError(rpc.CodeUnavailable, "not connected to the platform")
		}
		select {
		case <-ready:
		case <-changed:
			moved = true
		case <-ctx.Done():
			return nil, rpc.NewError(rpc.CodeUnavailable, "not connected to the platform before the deadline").WithCause(ctx.Err())
		}
	}
}

// appendID appends a fresh msg-id to b: a random prefix chosen by New, so
// that msg-ids differ from those of other agents, and a counter.
func (a *Agent) appendID(b []byte, n uint64) []byte {
	b = append(b, a.idPrefix...)
	return strconv.AppendUint(b, n, 36)
}

// parseID returns the number of a msg-id this agent made (appendID), and
// false for any other.
func (a *Agent) parseID(id []byte) (uint64, bool) {
	if len(id) <= len(a.idPrefix) || string(id[:len(a.idPrefix)]) != a.idPrefix {
		return 0, false
	}
	var n uint64
	for _, c := range id[len(a.idPrefix):] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'z':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		if n > (1<<64-1-uint64(d))/36 {
			return 0, false // more than a uint64: not ours
		}
		n = n*36 + uint64(d)
	}
	return n, true
}

// noteState records err as the latest connection failure (nil: connected)
// and wakes those waiting on changed. a.mu must be held.
func (a *Agent) noteState(err error) {
	if err != nil {
		a.lastErr = err
	}
	close(a.stateCh)
	a.stateCh = make(chan struct{})
}
