package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// ErrRunning is returned by Run when the agent is already running.
var ErrRunning = errors.New("agent: already running")

// Run connects to the platform, says hello with the agent's identity and
// exports, subscribes its subscriptions and serves calls and messages until
// ctx ends. It then stops: calls that arrive are refused with
// rpc.ErrUnavailable, the handlers of calls already received get up to the
// shutdown grace period (WithShutdownGrace) to finish and reply, then the
// agent disconnects, cancels the contexts of handlers still running, waits
// for them to return and returns nil.
//
// When the connection is lost, calls in flight fail at once with
// rpc.ErrUnavailable and Run reconnects with exponential backoff and
// jitter (see WithBackoff), re-registering identity, exports and
// subscriptions.
//
// Before the agent has been welcomed once, a refusal that retrying cannot
// fix (the platform refuses the key, the identity claim, or another
// connection holds the identity) makes Run return that error. After that,
// every failure is logged and retried, so an agent survives a platform
// restart while auth.json is being fixed; except that when another
// connection with the same key takes the identity over, Run returns an
// error matching rpc.ErrIdentityInUse rather than take it back.
func (a *Agent) Run(ctx context.Context) (err error) {
	if !a.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	a.mu.Lock()
	a.stopped = false
	a.mu.Unlock()
	defer func() {
		a.handlers.Wait()
		a.mu.Lock()
		a.stopped, a.failed = true, err != nil
		a.noteState(nil)
		a.mu.Unlock()
		a.running.Store(false)
	}()

	delay := a.cfg.minBackoff
	welcomed := false
	attempts := 0
	for {
		s, err := a.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			err = diagnose(err, a)
			a.mu.Lock()
			a.noteState(err)
			a.mu.Unlock()
			attempts++
			if !welcomed && (permanent(err) || attempts == a.cfg.connectAttempts) {
				return err
			}
			wait := fullJitter(delay)
			a.log.Warn("capbus agent: cannot connect; retrying", "address", a.cfg.address, "err", err, "in", wait)
			if !sleep(ctx, wait) {
				return nil
			}
			delay = min(2*delay, a.cfg.maxBackoff)
			continue
		}
		welcomed = true
		since := time.Now()
		a.log.Info("capbus agent: connected", "address", a.cfg.address, "user_id", s.welcome.UserID)
		if fn := a.cfg.onConnect; fn != nil {
			w := s.welcome
			go fn(w)
		}
		if a.declaresRoles() {
			a.handlers.Go(func() { a.warnRoles(s, nil) })
		}

		stopped := !a.serve(ctx, s)
		if fn := a.cfg.onDisconnect; fn != nil {
			err := s.err
			go fn(err)
		}
		if stopped {
			a.log.Info("capbus agent: stopped")
			return nil
		}
		if errors.Is(s.err, rpc.ErrIdentityInUse) {
			// Another connection of our key claimed the identity:
			// reconnecting would only take it back and forth.
			a.log.Error("capbus agent: identity taken over; stopping", "err", s.err)
			return s.err
		}
		// Many agents losing one platform must not come back in lockstep:
		// each waits a random time up to the delay ("full jitter"). A
		// platform that closes connections right after welcome must not
		// make the agent spin: the delay starts over only after a session
		// that lasted.
		if time.Since(since) >= a.cfg.maxBackoff {
			delay = a.cfg.minBackoff
		}
		wait := fullJitter(delay)
		delay = min(2*delay, a.cfg.maxBackoff)
		a.log.Warn("capbus agent: connection lost; reconnecting", "err", s.err, "in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// serve waits while session s lives, pinging the platform when heartbeats
// are on. It reports false when ctx ended (s is then closed), true when the
// session ended by itself.
func (a *Agent) serve(ctx context.Context, s *session) bool {
	var tick <-chan time.Time
	if a.cfg.heartbeat > 0 {
		t := time.NewTicker(a.cfg.heartbeat)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.done:
			s.close(nil)
			return true
		case <-ctx.Done():
			a.drain(s)
			s.close(rpc.NewError(rpc.CodeUnavailable, "agent stopped"))
			return false
		case <-tick:
			pctx, cancel := context.WithTimeout(ctx, a.cfg.heartbeat)
			_, err := s.request(pctx, &message{Subsys: vip.SubPing}, 0)
			cancel()
			if err != nil && ctx.Err() == nil && errors.Is(err, rpc.ErrTimeout) {
				s.fail(fmt.Errorf("no answer to a heartbeat ping within %v", a.cfg.heartbeat))
			}
		}
	}
}

// drain refuses new calls on s and gives the handlers of the calls already
// received up to the shutdown grace period to finish and send their replies.
func (a *Agent) drain(s *session) {
	s.qmu.Lock()
	s.draining = true
	s.qmu.Unlock()
	if a.cfg.shutdownGrace <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.shutdownGrace)
	defer cancel()
	idle := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		s.flush(ctx) // the last replies are queued: send them
	case <-s.done:
	case <-ctx.Done():
		a.log.Warn("capbus agent: handlers still running at the end of the shutdown grace period; cancelling them")
	}
}

// connect opens a transport, says hello, waits for welcome, asks for the
// agent's configuration (config.go), subscribes, waits for the
// configuration and publishes the session.
func (a *Agent) connect(ctx context.Context) (*session, error) {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.connectTimeout)
	defer cancel()
	tr, err := a.dial(cctx)
	if err != nil {
		return nil, err
	}
	s := newSession(a, tr)
	fail := func(err error) (*session, error) {
		s.close(err)
		return nil, err
	}
	configured := a.config.arm(s) // calls wait for the configuration

	a.mu.Lock()
	hello := vip.Hello{Identity: a.identity, Exports: a.exportTable(), Meta: a.cfg.meta}
	exportsV, subsV := a.exportsV, a.subsV
	subs := a.patterns()
	a.mu.Unlock()

	payload, err := codec.Marshal(&hello)
	if err != nil {
		return fail(fmt.Errorf("agent: encode hello: %w", err))
	}
	r, err := s.request(cctx, &message{Subsys: vip.SubHello, Args: [][]byte{payload}}, 0)
	if err != nil {
		return fail(err)
	}
	if r.Subsys != vip.SubWelcome {
		return fail(rpc.Errorf(rpc.CodeProtocol, "hello answered with %q, want %q", r.Subsys, vip.SubWelcome))
	}
	if len(r.Args) > 0 {
		var w vip.Welcome
		if err := codec.Unmarshal(r.Args[0], &w); err != nil {
			return fail(rpc.Errorf(rpc.CodeProtocol, "undecodable welcome: %v", err))
		}
		s.welcome = Welcome{Identity: w.Identity, UserID: w.UserID, Version: w.Version, Generation: w.Generation}
		s.welcome.ServerKey, _ = keys.Parse(w.ServerKey)
	}
	if err := a.config.watch(cctx, s); err != nil {
		return fail(err)
	}
	for _, p := range subs {
		if err := s.subscribe(cctx, p); err != nil {
			if ctx.Err() != nil || errors.Is(err, rpc.ErrUnavailable) {
				return fail(err)
			}
			a.log.Error("capbus agent: subscription refused", "pattern", p, "err", err)
		}
	}
	select {
	case <-configured:
	case <-s.done:
		return fail(s.unavailable())
	case <-cctx.Done():
		return fail(rpc.NewError(rpc.CodeTimeout, "no configuration from the platform before the connect timeout").WithCause(cctx.Err()))
	}

	a.mu.Lock()
	a.sess = s
	close(a.ready)
	a.noteState(nil)
	resendExports := a.exportsV != exportsV
	resendSubs := a.subsV != subsV
	a.mu.Unlock()

	// Exports and subscriptions added while we were saying hello.
	if resendExports {
		a.handlers.Go(func() { _ = a.pushExports(s, nil) })
	}
	if resendSubs {
		a.handlers.Go(func() { a.resubscribe(s, subs) })
	}
	return s, nil
}

// unpublish forgets s as the current session, so that new calls fail fast
// and Ready waits for the next welcome.
func (a *Agent) unpublish(s *session) {
	a.mu.Lock()
	if a.sess == s {
		a.sess = nil
		a.ready = make(chan struct{})
		a.noteState(s.err)
	}
	a.mu.Unlock()
}

// permanent reports whether err is a refusal that retrying cannot fix.
func permanent(err error) bool {
	if errors.Is(err, curve.ErrBusy) {
		return false // a connection limit or a backoff: later, it may work
	}
	return errors.Is(err, curve.ErrRefused) ||
		errors.Is(err, rpc.ErrPermission) ||
		errors.Is(err, rpc.ErrIdentityInUse) ||
		errors.Is(err, rpc.ErrProtocol)
}

// declaresRoles reports whether an export requires a role.
func (a *Agent) declaresRoles() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, e := range a.exports {
		if len(e.decl.Roles) > 0 {
			return true
		}
	}
	return false
}

// warnRoles asks the platform to describe this agent and logs a warning
// for each method (of names; nil: every method) whose requirement auth.json
// cannot meet, such as a role that nobody holds: the agent's author learns
// that every call of it will be refused. A platform that cannot describe
// is not an error.
func (a *Agent) warnRoles(s *session, names []string) {
	ctx, cancel := context.WithTimeout(s.ctx, a.cfg.callTimeout)
	defer cancel()
	var d vip.Description
	if err := s.query(ctx, vip.QueryDescribe, &d, a.identity); err != nil {
		a.log.Debug("capbus agent: could not check the exports' requirements", "err", err)
		return
	}
	for _, m := range d.Methods {
		if names != nil && !slices.Contains(names, m.Name) {
			continue
		}
		for _, w := range m.Warnings {
			a.log.Warn("capbus agent: export "+m.Name+": "+w+"; every call of it will be refused", "method", m.Name)
		}
	}
}

// diagnose says what a failed connection attempt means for the operator.
func diagnose(err error, a *Agent) error {
	switch {
	case errors.Is(err, curve.ErrBusy):
		return fmt.Errorf("the platform at %s takes no connection from this agent for now (a connection limit, or too many failed handshakes from this host): %w",
			a.cfg.address, err)
	case errors.Is(err, curve.ErrRefused):
		return fmt.Errorf("the platform at %s refused this agent's key %s: it is not in auth.json, disabled or denied (add it: capbus auth add USER --credentials '%s'): %w",
			a.cfg.address, a.cfg.keyPair.Public.Z85(), a.cfg.keyPair.Public.Z85(), err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing is listening at %s (connection refused): is the platform running? %w", a.cfg.address, err)
	case errors.Is(err, curve.ErrServerKey):
		return fmt.Errorf("the platform at %s does not hold the server key %s: wrong or stale server key (known_hosts?): %w",
			a.cfg.address, a.cfg.serverKey.Z85(), err)
	}
	return err
}

// fullJitter returns a random duration in [0, d]: with exponential
// backoff it spreads the reconnections of many agents best (Brooker,
// "Exponential Backoff And Jitter").
func fullJitter(d time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// sleep waits d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
