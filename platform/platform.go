package platform

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/audit"
	"github.com/capbus/capbus/internal/pendingkeys"
	"github.com/capbus/capbus/internal/topictree"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// Platform is a capbus platform: a CURVE-secured ROUTER that authenticates,
// routes and authorizes the messages of every connected agent. Create it
// with New and serve with Run.
type Platform struct {
	cfg     config
	kp      keys.Pair
	unsaved bool // kp was generated for cfg.keystore and is not saved yet
	log     *slog.Logger
	audit   *auditor

	ready     chan struct{}
	addr      string // set before ready is closed
	adminAddr string // likewise
	ran       atomic.Bool
	ctx       context.Context // Run's context, for hooks

	pol     atomic.Pointer[auth.Policy]
	reloads chan struct{}
	store   *auth.Store           // nil with WithPolicy
	pending *pendingkeys.Recorder // nil without WithPendingKeysFile
	// When the policy in force was installed, and when the last edit was
	// rejected (for the console).
	polLoaded, polRejected atomic.Pointer[time.Time]

	// auth.json's state at the last read ahead of the watcher (fresher).
	peekMu     sync.Mutex
	peekedStat os.FileInfo

	mu         sync.RWMutex
	byIdentity map[string]*peer
	conns      map[*peer]struct{}
	users      map[string]*userState
	perKey     map[keys.Key]int // live connections of each key
	preHello   int              // connections not welcomed yet
	nextID     atomic.Uint64
	queued     atomic.Int64 // bytes queued towards every connection

	subMu sync.Mutex              // guards each peer's subs; held while changing the index
	subs  *topictree.Index[*peer] // pattern -> subscribers

	stats   stats
	metrics *metrics

	config configService // the configuration store (config.go)

	wg sync.WaitGroup // connection goroutines
}

// New returns a Platform configured by opts. It loads the keystore given
// by WithKeystore, or generates the key pair that Run saves there once it
// listens; the listener, the policy store and the audit file are opened by
// Run. New fails without a policy source.
func New(opts ...Option) (*Platform, error) {
	cfg := newConfig(opts)
	p := &Platform{
		cfg:        cfg,
		log:        cfg.logger,
		ready:      make(chan struct{}),
		reloads:    make(chan struct{}, 1),
		byIdentity: make(map[string]*peer),
		conns:      make(map[*peer]struct{}),
		users:      make(map[string]*userState),
		perKey:     make(map[keys.Key]int),
		subs:       topictree.New[*peer](),
		ctx:        context.Background(),
	}
	p.metrics = newMetrics(p)
	if cfg.authFile == "" && cfg.store == nil && cfg.policy == nil {
		return nil, ErrNoPolicy
	}
	switch {
	case cfg.keyPair != nil:
		p.kp = *cfg.keyPair
	case cfg.keystore != "":
		kp, err := keys.Load(cfg.keystore)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if kp, err = keys.Generate(); err != nil {
				return nil, fmt.Errorf("platform: %w", err)
			}
			p.unsaved = true // saved by Run, once it listens
		case err != nil:
			return nil, fmt.Errorf("platform: %w", err)
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
		now := time.Now()
		p.polLoaded.Store(&now)
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

	// Until the audit log is open (once listening), records only reach
	// the operators' list of denials.
	p.audit = &auditor{allowed: p.cfg.auditAllowed}
	// The keys refused as unknown; nothing is written before the first.
	if p.cfg.pendingKeysFile != "" {
		p.pending = pendingkeys.NewRecorder(p.cfg.pendingKeysFile, p.log)
		defer p.pending.Close()
	}

	// Policy. Opening it writes nothing.
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
		now := time.Now()
		p.polLoaded.Store(&now)
		stop := store.Subscribe(p.onReload)
		defer stop()
	}

	var rwg sync.WaitGroup
	rwg.Add(2)
	go func() {
		defer rwg.Done()
		p.reloadLoop(ctx)
	}()
	go func() {
		defer rwg.Done()
		p.expireLoop(ctx)
	}()
	defer rwg.Wait()

	ln, err := curve.Listen(ctx, p.cfg.address, p.kp,
		curve.WithAuthenticator(curve.AuthenticatorFunc(p.authenticate)),
		curve.WithHandshakeTimeout(p.cfg.limits.HandshakeTimeout),
		curve.WithMaxFrameSize(p.cfg.limits.MaxFrameSize),
		curve.WithMessageLimits(p.cfg.limits.MaxFrames, p.cfg.limits.MaxFrameSize),
		curve.WithMaxPendingHandshakes(p.cfg.limits.MaxPendingHandshakes),
		curve.WithFailureLimit(p.cfg.limits.HandshakeFailures),
		curve.WithHandshakeObserver(p.metrics.handshake),
		curve.WithLogger(p.log),
	)
	if err != nil {
		// A failed start writes nothing: no audit file, no keystore.
		cancel()
		return fmt.Errorf("platform: %w", err)
	}
	// Nothing is written until every address is bound: a failed start
	// leaves no file behind.
	fail := func(err error) error {
		cancel()
		_ = ln.Close()
		return err
	}
	adminLn, err := p.listenAdmin()
	if err != nil {
		return fail(err)
	}
	addr := "tcp://" + ln.Addr().String()
	if err := p.openAudit(); err != nil {
		closeListener(adminLn)
		return fail(err)
	}
	defer p.closeAudit()
	closeConfig, err := p.openConfigStore()
	if err != nil {
		closeListener(adminLn)
		return fail(err)
	}
	defer closeConfig()
	stopAdmin, err := p.serveAdmin(ctx, adminLn)
	if err != nil {
		return fail(err)
	}
	defer stopAdmin()
	if err := p.saveKeystore(); err != nil {
		return fail(err)
	}
	p.addr = addr
	p.audit.record(auditRecord{Action: actStart, Version: p.cfg.version, PID: os.Getpid(), Address: p.addr,
		Generation: p.policy().Generation(), Key: p.kp.Public.Z85()})
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
	p.audit.record(auditRecord{Action: actStop, Version: p.cfg.version, PID: os.Getpid(), Address: p.addr,
		Generation: p.policy().Generation()})
	p.log.Info("platform stopped", "address", p.addr)
	return nil
}

// saveKeystore writes a key pair New generated to the keystore file.
func (p *Platform) saveKeystore() error {
	if !p.unsaved {
		return nil
	}
	if err := keys.Save(p.cfg.keystore, p.kp); err != nil {
		return fmt.Errorf("platform: keystore: %w", err)
	}
	p.unsaved = false
	p.log.Info("created server keystore", "path", p.cfg.keystore, "public_key", p.kp.Public.Z85())
	return nil
}

// openAudit opens the audit log (file, writer, slog) once the platform
// listens.
func (p *Platform) openAudit() error {
	opts := []audit.Option{audit.WithLogger(p.log),
		audit.WithOnWriteError(func(error) { p.stats.auditWriteErrors.Add(1) })}
	if p.cfg.auditFile != "" {
		opts = append(opts, audit.WithFile(p.cfg.auditFile), audit.WithRotation(p.cfg.auditMaxMB, p.cfg.auditBackups))
	}
	if p.cfg.auditWriter != nil {
		opts = append(opts, audit.WithWriter(p.cfg.auditWriter))
	}
	l, err := audit.New(opts...)
	if err != nil {
		return fmt.Errorf("platform: audit log: %w", err)
	}
	p.audit.log = l
	return nil
}

func (p *Platform) closeAudit() {
	if err := p.audit.log.Close(); err != nil {
		p.log.Error("audit log", "err", err)
	}
}

// Reload reads auth.json again (even if the watcher saw no change) and
// reopens the audit file (after an external rotation moved it away): what
// capbus platform run does on SIGHUP. It returns the error of the file's
// content if it was rejected (the policy in force is then kept) or the
// audit file's if it cannot be reopened.
func (p *Platform) Reload() error {
	var errs []error
	// Reopen first, so that the reload's record goes to the new file.
	if p.audit != nil && p.audit.log != nil {
		if err := p.audit.log.Reopen(); err != nil {
			errs = append(errs, fmt.Errorf("platform: reopen the audit log: %w", err))
		}
	}
	if p.store != nil {
		if err := p.store.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
// unknown key is looked up in what auth.json holds now too (see fresher),
// so a key added just before its agent connects is admitted without
// waiting for the file watcher.
func (p *Platform) authenticate(_ context.Context, req curve.AuthRequest) (string, error) {
	if err := p.connectionLimits(req.PublicKey); err != nil {
		p.stats.refusedConns.Add(1)
		p.auditHandshake(req, err, p.policy())
		return "", err
	}
	pol := p.policy()
	user, err := pol.Authenticate(req.PublicKey, req.RemoteAddr)
	if err != nil && errors.Is(err, auth.ErrUnknownKey) {
		if next := p.fresher(pol); next != nil {
			if u, nerr := next.Authenticate(req.PublicKey, req.RemoteAddr); nerr == nil {
				user, err = u, nil
			}
		}
	}
	if err != nil {
		p.auditHandshake(req, err, pol)
		if p.pending != nil && errors.Is(err, auth.ErrUnknownKey) {
			p.pending.Record(req.PublicKey, req.RemoteAddr, time.Now())
		}
		return "", err
	}
	return user, nil
}

// auditHandshake records a refused handshake. The reason names the key
// only in the record's key field, so that the refusals of a flood of
// made-up keys aggregate into one count line.
func (p *Platform) auditHandshake(req curve.AuthRequest, err error, pol *auth.Policy) {
	z := req.PublicKey.Z85()
	reason := strings.ReplaceAll(err.Error(), "key "+z, "this key")
	p.audit.record(auditRecord{Action: actHandshake, Decision: decDeny, Key: z,
		Remote: req.RemoteAddr, Reason: reason, Generation: pol.Generation()})
}

// connectionLimits refuses a new connection of key beyond the limits of
// connections in all, of one key, and of those not welcomed yet.
func (p *Platform) connectionLimits(key keys.Key) error {
	lim := &p.cfg.limits
	p.mu.RLock()
	total, ofKey, pre := len(p.conns), p.perKey[key], p.preHello
	p.mu.RUnlock()
	switch {
	case total >= lim.MaxConnections:
		return &limitError{fmt.Sprintf("the platform has its maximum of %d connections", lim.MaxConnections)}
	case ofKey >= lim.MaxConnectionsPerKey:
		return &limitError{fmt.Sprintf("key %s has its maximum of %d connections", key.Z85(), lim.MaxConnectionsPerKey)}
	case pre >= lim.MaxPreHello:
		return &limitError{fmt.Sprintf("%d connections have not said hello yet, the maximum", lim.MaxPreHello)}
	}
	return nil
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
	pe.user = p.userOf(pe.userID)
	p.perKey[pe.key]++
	p.preHello++
	p.mu.Unlock()
	// A connection that does not say hello in time is closed.
	pe.helloTimer = time.AfterFunc(p.cfg.limits.HelloTimeout, func() {
		if !pe.welcomed.Load() {
			pe.close(fmt.Sprintf("no hello within %v", p.cfg.limits.HelloTimeout))
		}
	})

	// A reload may have happened since the handshake.
	if reason := p.revokedNow(pe); reason != "" {
		pe.close(reason)
	}

	go pe.writeLoop()
	// What the reader queued for other peers during a burst goes out
	// before it waits for more input.
	pe.conn.BeforeRead(pe.flushTouched)
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
	}
}

// drop removes a closed connection from every table and tells the others.
func (p *Platform) drop(pe *peer) {
	pe.helloTimer.Stop()
	p.mu.Lock()
	delete(p.conns, pe)
	p.leave(pe.userID)
	if p.perKey[pe.key]--; p.perKey[pe.key] <= 0 {
		delete(p.perKey, pe.key)
	}
	if !pe.welcomed.Load() {
		p.preHello--
	}
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
