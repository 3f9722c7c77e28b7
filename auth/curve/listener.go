package curve

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/capbus/capbus/auth"
)

// Listener accepts CURVE clients. Each accepted TCP connection is
// handshaken and authorized in its own goroutine, bounded by the handshake
// timeout; Accept returns only connections that completed both. It
// implements net.Listener.
type Listener struct {
	ln     net.Listener
	kp     auth.KeyPair
	opts   options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan *Conn
	wg     sync.WaitGroup

	mu      sync.Mutex
	peers   map[string]PeerInfo   // routing id -> live conn
	pending map[net.Conn]struct{} // handshakes in progress
}

// Listen listens on addr ("tcp://host:port" or "host:port"; port 0 picks a
// free port) as the CURVE server with key pair server. WithAuthenticator is
// required: without it Listen returns ErrNoAuthenticator. Listen also takes
// WithSocketType (default "ROUTER"), WithHandshakeTimeout, WithMaxFrameSize
// and WithLogger. The context bounds the listener's life: cancelling it
// closes the listener.
func Listen(ctx context.Context, addr string, server auth.KeyPair, opts ...Option) (*Listener, error) {
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
		peers:   make(map[string]PeerInfo),
		pending: make(map[net.Conn]struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { l.Close() })
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer stop()
		l.acceptLoop()
	}()
	return l, nil
}

// Addr returns the listener's network address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept waits for the next client whose handshake completed and who was
// authorized, and returns it as a *Conn. After Close it returns an error
// matching net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptConn()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptConn is Accept returning the *Conn type.
func (l *Listener) AcceptConn() (*Conn, error) {
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

// Lookup returns what the listener knows about the live connection with the
// given routing id (the Identity zmq4 sees for the peer). The entry is
// removed when the conn closes.
func (l *Listener) Lookup(routingID string) (PeerInfo, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.peers[routingID]
	return p, ok
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
		l.mu.Lock()
		if l.ctx.Err() != nil {
			l.mu.Unlock()
			raw.Close()
			return
		}
		l.pending[raw] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(raw)
	}
}

// serve runs one handshake and hands the conn to Accept.
func (l *Listener) serve(raw net.Conn) {
	defer l.wg.Done()
	c, err := l.handshake(raw)
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

func (l *Listener) handshake(raw net.Conn) (*Conn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.handshakeTimeout)
	defer cancel()
	remote := raw.RemoteAddr().String()
	l.log.Debug("curve: handshake started", "remote", remote)
	if l.opts.wrapConn != nil {
		raw = l.opts.wrapConn(raw)
	}
	br := bufio.NewReaderSize(raw, readBufferSize)
	s, err := withDeadline(ctx, raw, func() (session, error) {
		return serverHandshake(ctx, raw, br, l.kp, &l.opts, remote)
	})
	if err != nil {
		attrs := []any{"remote", remote, "reason", err}
		if !s.peer.PublicKey.IsZero() {
			attrs = append(attrs, "client_key", s.peer.PublicKey.Z85())
		}
		if errors.Is(err, ErrUnauthorized) {
			l.log.Warn("curve: client refused", attrs...)
		} else {
			l.log.Warn("curve: handshake failed", attrs...)
		}
		return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	l.mu.Lock()
	for {
		id, err := newRoutingID()
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		if _, taken := l.peers[id]; !taken {
			s.peer.RoutingID = id
			break
		}
	}
	c := newConn(raw, br, s, &l.opts, true)
	l.peers[s.peer.RoutingID] = s.peer
	l.mu.Unlock()
	c.onClose = func() {
		l.mu.Lock()
		delete(l.peers, s.peer.RoutingID)
		l.mu.Unlock()
	}
	l.log.Info("curve: client admitted", "remote", remote, "client_key", s.peer.PublicKey.Z85(),
		"user_id", s.peer.UserID, "routing_id", s.peer.RoutingID, "identity", s.peer.Identity)
	return c, nil
}

// newRoutingID returns a fresh random routing id (16 hex characters).
func newRoutingID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
