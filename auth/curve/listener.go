package curve

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/capbus/capbus/keys"
)

// Listener accepts CURVE clients. Each accepted TCP connection is
// handshaken and authorized in its own goroutine, bounded by the handshake
// timeout; Accept returns only connections that completed both.
type Listener struct {
	ln     net.Listener
	kp     keys.Pair
	opts   options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan *Conn
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{} // handshakes in progress

	failures *failures // nil: no failure limit
	report   failureReport
}

// Listen listens on addr ("tcp://host:port" or "host:port"; port 0 picks a
// free port) as the CURVE server with key pair server. WithAuthenticator is
// required: without it Listen returns ErrNoAuthenticator. Listen also takes
// WithSocketType (default "ROUTER"), WithHandshakeTimeout, WithMaxFrameSize,
// WithMessageLimits, WithMaxPendingHandshakes, WithFailureLimit and
// WithLogger. The context bounds the listener's life: cancelling it closes
// the listener.
//
// Against floods: each handshake runs in its own goroutine, bounded in
// time and in number; a HELLO replayed from an earlier connection is
// refused before the key agreement; hosts that keep failing are refused
// for a growing backoff; each failure is logged at debug level, and a
// warning every ten seconds counts them.
func Listen(ctx context.Context, addr string, server keys.Pair, opts ...Option) (*Listener, error) {
	o := newOptions("ROUTER", opts)
	if o.authenticator == nil {
		return nil, ErrNoAuthenticator
	}
	hostport, err := tcpAddress(addr)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("curve: listen: %w", err)
	}
	l := &Listener{
		ln:      ln,
		kp:      server,
		opts:    o,
		log:     o.logger,
		ready:   make(chan *Conn),
		pending: make(map[net.Conn]struct{}),
	}
	l.opts.seen = newSeenKeys(seenKeysSize)
	if l.opts.serverPriv, err = ecdh.X25519().NewPrivateKey(server.Secret[:]); err != nil {
		ln.Close()
		return nil, fmt.Errorf("curve: server key: %w", err)
	}
	if o.failureLimit > 0 {
		l.failures = newFailures(o.failureLimit)
	}
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { l.Close() })
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		defer stop()
		l.acceptLoop()
	}()
	go func() {
		defer l.wg.Done()
		l.reportLoop()
	}()
	return l, nil
}

// count notes a failed handshake of this kind for the periodic warning
// and the observer.
func (l *Listener) count(kind string) {
	l.report.add(kind)
	if l.opts.observe != nil {
		l.opts.observe(kind)
	}
}

// reportLoop logs the count of failed handshakes every reportEvery.
func (l *Listener) reportLoop() {
	t := time.NewTicker(reportEvery)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			l.report.flush(l.log, reportEvery)
			return
		case <-t.C:
			l.report.flush(l.log, reportEvery)
		}
	}
}

// Addr returns the listener's network address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept waits for the next client whose handshake completed and who was
// authorized, and returns it as a *Conn. After Close it returns an error
// matching net.ErrClosed.
func (l *Listener) Accept() (*Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("curve: accept: %w", net.ErrClosed)
	}
}

// Close stops listening, interrupts the handshakes in progress and waits
// for their goroutines. Connections already returned by Accept stay open.
func (l *Listener) Close() error {
	l.cancel()
	err := l.ln.Close()
	l.mu.Lock()
	for raw := range l.pending {
		raw.SetDeadline(longAgo)
	}
	l.mu.Unlock()
	l.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil // already closed
	}
	return err
}

func (l *Listener) acceptLoop() {
	var backoff time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error (e.g. out of file descriptors): back off.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("curve: accept failed", "reason", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		remote := raw.RemoteAddr().String()
		busy, closeNow := l.failures.blocked(hostOf(remote))
		if closeNow {
			l.log.Debug("curve: connection closed: its host keeps failing handshakes", "remote", remote)
			l.count("busy_closed")
			raw.Close()
			continue
		}
		l.mu.Lock()
		if l.ctx.Err() != nil {
			l.mu.Unlock()
			raw.Close()
			return
		}
		if l.opts.maxPending > 0 && len(l.pending) >= l.opts.maxPending {
			l.mu.Unlock()
			l.log.Debug("curve: connection closed: too many handshakes in progress", "remote", remote, "limit", l.opts.maxPending)
			l.count("too_many_pending")
			raw.Close()
			continue
		}
		l.pending[raw] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(raw, busy)
	}
}

// serve runs one handshake and hands the conn to Accept. A connection
// from a host in its failure backoff (busy) is told so after its HELLO,
// with no key agreement.
func (l *Listener) serve(raw net.Conn, busy bool) {
	defer l.wg.Done()
	c, err := l.handshake(raw, busy)
	l.mu.Lock()
	delete(l.pending, raw)
	l.mu.Unlock()
	if err != nil {
		raw.Close()
		return
	}
	select {
	case l.ready <- c:
	case <-l.ctx.Done():
		c.Close()
	}
}

func (l *Listener) handshake(raw net.Conn, busy bool) (*Conn, error) {
	timeout := l.opts.handshakeTimeout
	if busy {
		timeout = min(timeout, busyTimeout)
	}
	ctx, cancel := context.WithTimeout(l.ctx, timeout)
	defer cancel()
	remote := raw.RemoteAddr().String()
	l.log.Debug("curve: handshake started", "remote", remote)
	if l.opts.wrapConn != nil {
		raw = l.opts.wrapConn(raw)
	}
	wr := &waitReader{r: raw}
	br := bufio.NewReaderSize(wr, readBufferSize)
	s, err := withDeadline(ctx, raw, func() (session, error) {
		return serverHandshake(ctx, raw, br, l.kp, &l.opts, remote, busy)
	})
	if err != nil {
		attrs := []any{"remote", remote, "reason", err}
		if !s.peer.PublicKey.IsZero() {
			attrs = append(attrs, "client_key", s.peer.PublicKey.Z85())
		}
		// At debug level: a flood must not flood the log. The periodic
		// warning counts them.
		if errors.Is(err, ErrRefused) {
			l.log.Debug("curve: client refused", attrs...)
		} else {
			l.log.Debug("curve: handshake failed", attrs...)
		}
		l.count(failureKind(err))
		if busy || errors.Is(err, ErrBusy) {
			// The server's limit, not the client's fault.
		} else if d, ok := l.failures.failed(hostOf(remote)); ok {
			l.log.Warn("curve: refusing a host that keeps failing handshakes", "host", hostOf(remote), "for", d)
		}
		return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	l.failures.succeeded(hostOf(remote))
	if l.opts.observe != nil {
		l.opts.observe("ok")
	}
	c := newConn(raw, br, s, &l.opts, true)
	c.wr = wr
	l.log.Debug("curve: client admitted", "remote", remote, "client_key", s.peer.PublicKey.Z85(),
		"user_id", s.peer.UserID, "identity", s.peer.Identity)
	return c, nil
}
