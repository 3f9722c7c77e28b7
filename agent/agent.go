package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

var noDeadline time.Time

// Agent is one participant on a capbus platform: it holds an identity,
// serves exported methods, calls other agents and publishes and subscribes
// to topics, all through the platform, which authenticates it by its CURVE
// key and authorizes every call against auth.json.
//
// Create an Agent with New, register exports and subscriptions, then call
// Run, which connects and serves until its context ends. All methods are
// safe for concurrent use.
type Agent struct {
	identity string
	cfg      config
	log      *slog.Logger
	dial     dialFunc

	running  atomic.Bool
	nextID   atomic.Uint64
	idPrefix string
	timers   sync.Pool // *time.Timer for calls without a deadline
	replies  sync.Pool // chan message (capacity 1) for requests

	// gate bounds handlers running or waiting, and those running.
	gate     *gate
	handlers sync.WaitGroup // goroutines running handlers or waiting for one
	// idleWorkers counts handler goroutines waiting for a call (on their
	// session's work channel).
	idleWorkers atomic.Int64
	// takeovers counts the goroutines that took over receiving from one
	// that ran a handler (which then waits for calls like a handler
	// goroutine).
	takeovers atomic.Int64

	mu       sync.RWMutex
	sess     *session      // the welcomed session, nil while disconnected
	ready    chan struct{} // closed while sess != nil
	exports  map[string]*export
	subs     map[*Subscription]struct{}
	exportsV uint64 // bumped by every change to exports
	subsV    uint64 // bumped by every change to subs
}

// Welcome is what the platform said when it admitted the agent: Identity,
// the identity as admitted; UserID, the user id of the agent's key in
// auth.json; Version, the platform's version; Generation, the policy
// generation in force; ServerKey, the platform's public key in Z85.
type Welcome = vip.Welcome

// New returns an agent that will claim identity on the platform. It does
// not connect: Run does. The options must give the agent a key pair
// (WithKeyPair or WithKeystore) and the platform's key (WithServerKey,
// WithPlatform or WithKnownHosts).
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
	log := cfg.logger.With("agent", identity)
	dial := cfg.dial
	if dial == nil {
		if !cfg.haveKeyPair {
			return nil, errors.New("agent: no key pair: use WithKeyPair or WithKeystore")
		}
		if cfg.serverKey.IsZero() && cfg.knownHosts != "" {
			k, err := lookupKnownHost(cfg.knownHosts, cfg.address)
			if err != nil {
				return nil, err
			}
			cfg.serverKey = k
		}
		if cfg.serverKey.IsZero() {
			return nil, errors.New("agent: no server key: use WithServerKey, WithPlatform or WithKnownHosts")
		}
		dial = dialCurve(cfg.address, cfg.keyPair, cfg.serverKey, identity, log)
	}
	return &Agent{
		idPrefix: strconv.FormatUint(rand.Uint64(), 36) + ".",
		identity: identity,
		cfg:      cfg,
		log:      log,
		dial:     dial,
		gate:     newGate(cfg.concurrency, cfg.queue),
		ready:    make(chan struct{}),
		exports:  make(map[string]*export),
		subs:     make(map[*Subscription]struct{}),
	}, nil
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
// channel that will be closed by the next welcome. Wait on it before the
// first call:
//
//	go a.Run(ctx)
//	<-a.Ready()
//
// Run returns an error without ever closing the channel when the platform
// refuses the agent (see Run); a program that must not hang then waits on
// both:
//
//	errc := make(chan error, 1)
//	go func() { errc <- a.Run(ctx) }()
//	select {
//	case <-a.Ready():
//	case err := <-errc:
//		return err
//	}
func (a *Agent) Ready() <-chan struct{} {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.ready
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

// current returns the welcomed session, or an rpc.ErrUnavailable error.
func (a *Agent) current() (*session, error) {
	a.mu.RLock()
	s := a.sess
	a.mu.RUnlock()
	if s == nil {
		return nil, rpc.NewError(rpc.CodeUnavailable, "not connected to the platform")
	}
	return s, nil
}

// newID returns a fresh msg-id: a random prefix chosen by New, so that
// msg-ids differ from those of other agents, and a counter.
func (a *Agent) newID() string {
	b := make([]byte, 0, 32)
	b = append(b, a.idPrefix...)
	return string(strconv.AppendUint(b, a.nextID.Add(1), 36))
}
