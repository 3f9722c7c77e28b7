package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// Platform is a capbus platform: a CURVE-secured ROUTER that authenticates,
// routes and authorizes the messages of every connected agent. Create it
// with New and serve with Run.
type Platform struct {
	cfg   config
	kp    keys.Pair
	log   *slog.Logger
	audit *auditor

	ready chan struct{}
	addr  string // set before ready is closed
	ran   atomic.Bool
	ctx   context.Context // Run's context, for hooks

	pol         atomic.Pointer[auth.Policy]
	reloads     chan struct{}
	store       *auth.Store  // nil with WithPolicy
	lastRefresh atomic.Int64 // unix nanoseconds of the last reload forced by an unknown key

	mu         sync.RWMutex
	byIdentity map[string]*peer
	conns      map[*peer]struct{}
	nextID     atomic.Uint64

	subMu sync.RWMutex
	subs  map[string]map[*peer]struct{} // pattern -> subscribers

	stats stats

	config configService // the configuration store (config.go)

	wg sync.WaitGroup // connection goroutines
}

// New returns a Platform configured by opts. It loads (or creates) the
// keystore given by WithKeystore; the listener, the policy store and the
// audit file are opened by Run. New fails without a policy source.
func New(opts ...Option) (*Platform, error) {
	cfg := newConfig(opts)
	p := &Platform{
		cfg:        cfg,
		log:        cfg.logger,
		ready:      make(chan struct{}),
		reloads:    make(chan struct{}, 1),
		byIdentity: make(map[string]*peer),
		conns:      make(map[*peer]struct{}),
		subs:       make(map[string]map[*peer]struct{}),
		ctx:        context.Background(),
	}
	if cfg.authFile == "" && cfg.store == nil && cfg.policy == nil {
		return nil, ErrNoPolicy
	}
	switch {
	case cfg.keyPair != nil:
		p.kp = *cfg.keyPair
	case cfg.keystore != "":
		kp, created, err := keys.LoadOrCreate(cfg.keystore)
		if err != nil {
			return nil, fmt.Errorf("platform: %w", err)
		}
		if created {
			p.log.Info("created server keystore", "path", cfg.keystore, "public_key", kp.Public.Z85())
		}
		p.kp = kp
	default:
		kp, err := keys.Generate()
		if err != nil {
			return nil, fmt.Errorf("platform: %w", err)
		}
		p.kp = kp
	}
	if cfg.policy != nil {
		p.pol.Store(cfg.policy)
	}
	return p, nil
}

// ServerKey returns the platform's CURVE public key, which clients must know
// to connect.
func (p *Platform) ServerKey() keys.Key { return p.kp.Public }

// Ready returns a channel closed once Run listens (or has failed to).
func (p *Platform) Ready() <-chan struct{} { return p.ready }

// Addr returns the address Run listens on as "tcp://host:port", or "" before
// Ready is closed or when Run failed to listen.
func (p *Platform) Addr() string {
	select {
	case <-p.ready:
		return p.addr
	default:
		return ""
	}
}

// policy returns the policy in force.
func (p *Platform) policy() *auth.Policy { return p.pol.Load() }

// Run serves until ctx is cancelled, then tells every connection that the
// platform is shutting down, closes them and returns nil once every
// goroutine it started has ended. It returns an error if it cannot start.
// Run may be called once.
func (p *Platform) Run(ctx context.Context) (err error) {
	if !p.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	readyOnce := sync.OnceFunc(func() { close(p.ready) })
	defer readyOnce()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.ctx = ctx

	// Audit sinks.
	var sinks []io.Writer
	if p.cfg.auditWriter != nil {
		sinks = append(sinks, p.cfg.auditWriter)
	}
	if p.cfg.auditFile != "" {
		f, err := os.OpenFile(p.cfg.auditFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("platform: audit file: %w", err)
		}
		defer f.Close()
		sinks = append(sinks, f)
	}
	p.audit = newAuditor(p.log, sinks...)

	closeConfig, err := p.openConfigStore()
	if err != nil {
		return err
	}
	defer closeConfig()

	// Policy.
	store := p.cfg.store
	if p.cfg.authFile != "" && store == nil {
		s, err := auth.OpenStore(ctx, p.cfg.authFile, auth.WithLogger(p.log))
		if s == nil {
			return fmt.Errorf("platform: %w", err)
		}
		if err != nil {
			p.log.Warn("auth policy", "file", p.cfg.authFile, "error", err)
		}
		defer s.Close()
		store = s
	}
	if store != nil {
		p.store = store
		p.pol.Store(store.Policy())
		stop := store.Subscribe(p.onReload)
		defer stop()
	}

	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		p.reloadLoop(ctx)
	}()
	defer rwg.Wait()

	ln, err := curve.Listen(ctx, p.cfg.address, p.kp,
		curve.WithAuthenticator(curve.AuthenticatorFunc(p.authenticate)),
		curve.WithHandshakeTimeout(p.cfg.handshakeTimeout),
		curve.WithMaxFrameSize(p.cfg.maxFrameSize),
		curve.WithMessageLimits(p.cfg.maxFrames, p.cfg.maxFrameSize),
		curve.WithLogger(p.log),
	)
	if err != nil {
		cancel()
		return fmt.Errorf("platform: %w", err)
	}
	p.addr = "tcp://" + ln.Addr().String()
	readyOnce()
	p.log.Info("platform listening", "address", p.addr, "server_key", p.kp.Public.Z85(), "version", p.cfg.version)

	var awg sync.WaitGroup
	awg.Add(1)
	go func() {
		defer awg.Done()
		p.acceptLoop(ctx, ln)
	}()

	<-ctx.Done()
	_ = ln.Close()
	awg.Wait()
	p.shutdown()
	p.log.Info("platform stopped", "address", p.addr)
	return nil
}

func (p *Platform) acceptLoop(ctx context.Context, ln *curve.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			p.log.Warn("accept", "error", err)
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// authenticate is the curve Authenticator: the policy in force decides. An
// unknown key makes the platform re-read auth.json first (see refresh), so
// a key added just before its agent connects is admitted without waiting
// for the file watcher.
func (p *Platform) authenticate(_ context.Context, req curve.AuthRequest) (string, error) {
	pol := p.policy()
	user, err := pol.Authenticate(req.PublicKey, req.RemoteAddr)
	if err != nil && errors.Is(err, auth.ErrUnknownKey) {
		if next := p.refresh(pol); next != nil {
			pol = next
			user, err = pol.Authenticate(req.PublicKey, req.RemoteAddr)
		}
	}
	if err != nil {
		p.audit.record(auditRecord{Action: actHandshake, Decision: decDeny, Key: req.PublicKey.Z85(),
			Remote: req.RemoteAddr, Reason: err.Error(), Generation: pol.Generation()})
		return "", err
	}
	return user, nil
}

// serve runs one connection: a writer goroutine, and the read loop in
// this goroutine.
func (p *Platform) serve(c *curve.Conn) {
	info := c.Peer()
	pe := &peer{
		p:          p,
		id:         p.nextID.Add(1),
		key:        info.PublicKey,
		userID:     info.UserID,
		userBytes:  []byte(info.UserID),
		remoteAddr: info.RemoteAddr,
		since:      time.Now(),
		conn:       c,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		flushed:    make(chan struct{}),
	}
	pe.exports.Store(&exportTable{})

	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		_ = c.Close()
		return
	}
	p.conns[pe] = struct{}{}
	p.mu.Unlock()

	// A reload may have happened since the handshake.
	if reason := p.revoked(p.policy(), pe); reason != "" {
		pe.close(reason)
	}

	go pe.writeLoop()
	p.readLoop(pe)
	pe.flushTouched()
	pe.close("")
	<-pe.flushed
	p.drop(pe)
}

// readLoop reads and handles messages until the connection fails.
func (p *Platform) readLoop(pe *peer) {
	for {
		frames, err := pe.conn.ReadMsg()
		if err != nil {
			if errors.Is(err, curve.ErrMessageTooLarge) {
				pe.setReason(err.Error())
			}
			return
		}
		if !pe.closing.Load() {
			p.handle(pe, frames)
		}
		if pe.conn.Buffered() == 0 {
			// The burst of input received is handled: the next read
			// waits for the socket. Wake the writers of the peers the
			// burst queued messages for.
			pe.flushTouched()
		}
	}
}

// drop removes a closed connection from every table and tells the others.
func (p *Platform) drop(pe *peer) {
	p.mu.Lock()
	delete(p.conns, pe)
	dropped := false
	if pe.welcomed.Load() && p.byIdentity[pe.identity] == pe {
		delete(p.byIdentity, pe.identity)
		dropped = true
	}
	p.mu.Unlock()
	p.unsubscribeAll(pe)
	p.callsGone(pe)
	if dropped {
		p.broadcastPeer(vip.OpDrop, pe)
	}
	reason := pe.reason()
	if reason == "" {
		reason = "connection closed"
	}
	p.audit.record(auditRecord{Action: actDisconnect, UserID: pe.userID, Identity: pe.identity,
		Key: pe.key.Z85(), Remote: pe.remoteAddr, Reason: reason})
}

// shutdown tells every connection that the platform is shutting down and
// waits (up to the shutdown timeout) for them to close.
func (p *Platform) shutdown() {
	p.mu.RLock()
	peers := make([]*peer, 0, len(p.conns))
	for pe := range p.conns {
		peers = append(peers, pe)
	}
	p.mu.RUnlock()
	for _, pe := range peers {
		pe.sendFinal(errorFrames(nil, errorf(rpc.CodeUnavailable, "platform shutting down"), nil, nil), "platform shutting down")
	}
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(p.cfg.shutdownTimeout):
		for _, pe := range peers {
			pe.close("platform shutting down")
		}
		<-done
	}
}
