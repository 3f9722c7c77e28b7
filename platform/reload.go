package platform

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// onReload is the policy store's subscriber: it installs the new policy at
// once (so every later decision uses it) and wakes reloadLoop to re-check
// the live connections.
func (p *Platform) onReload(ev auth.ReloadEvent) {
	rec := auditRecord{Action: actReload, Decision: decAllow, File: ev.File, Generation: ev.Generation}
	if ev.Err != nil {
		rec.Decision, rec.Reason = decDeny, ev.Err.Error()
		if errors.Is(ev.Err, auth.ErrNoPolicy) {
			rec.Reason = "closed policy installed: " + ev.Err.Error()
		}
	}
	p.audit.record(rec)
	if ev.Policy != nil {
		p.install(ev.Policy)
	}
	select {
	case p.reloads <- struct{}{}:
	default: // a re-check is already pending; it will see this policy
	}
}

// install makes pol the policy in force unless a newer one already is.
func (p *Platform) install(pol *auth.Policy) bool {
	for {
		cur := p.pol.Load()
		if cur == pol || (cur != nil && cur.Generation() > pol.Generation()) {
			return false
		}
		if p.pol.CompareAndSwap(cur, pol) {
			return true
		}
	}
}

// refreshInterval bounds how often a refusal may make the platform re-read
// auth.json ahead of the file watcher.
const refreshInterval = 10 * time.Millisecond

// refresh re-reads auth.json now, ahead of the watcher's debounce, when
// something was refused under pol: a grant or a key written just before
// the refused call or connection then takes effect at once. It returns the
// newer policy in force, or nil when there is none (or a refresh ran less
// than refreshInterval ago, or the policy is fixed). An unchanged file costs
// one read.
func (p *Platform) refresh(pol *auth.Policy) *auth.Policy {
	if p.store == nil {
		return nil
	}
	now := time.Now().UnixNano()
	last := p.lastRefresh.Load()
	if now-last < int64(refreshInterval) || !p.lastRefresh.CompareAndSwap(last, now) {
		return nil
	}
	_ = p.store.Reload() // a rejected edit keeps the policy in force; subscribers are told
	next := p.store.Policy()
	p.install(next)
	if cur := p.policy(); cur != pol {
		return cur
	}
	return nil
}

// reloadLoop re-checks every connection after each reload until ctx ends.
func (p *Platform) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.reloads:
			p.recheck(p.policy())
		}
	}
}

// revoked says why pe may no longer be connected under pol ("" if it may).
func (p *Platform) revoked(pol *auth.Policy, pe *peer) string {
	user, err := pol.Authenticate(pe.key, pe.remoteAddr)
	if err != nil {
		return "access revoked: " + err.Error()
	}
	if user != pe.userID {
		return "access revoked: the key now belongs to user " + user + ", not " + pe.userID
	}
	if pe.welcomed.Load() {
		if err := pol.CheckIdentity(pe.userID, pe.identity); err != nil {
			return "identity claim revoked: " + err.Error()
		}
	}
	return ""
}

// recheck applies pol to every live connection: connections whose key was
// removed, disabled or denied, or whose identity claim is no longer
// allowed, are told and closed; subscriptions no longer allowed are dropped.
func (p *Platform) recheck(pol *auth.Policy) {
	p.mu.RLock()
	peers := make([]*peer, 0, len(p.conns))
	for pe := range p.conns {
		peers = append(peers, pe)
	}
	p.mu.RUnlock()
	for _, pe := range peers {
		if !p.revokeIfDenied(pol, pe) {
			p.recheckSubscriptions(pol, pe)
		}
	}
}

// revokeIfDenied tells and closes pe if pol no longer admits it, and
// reports whether it did.
func (p *Platform) revokeIfDenied(pol *auth.Policy, pe *peer) bool {
	reason := p.revoked(pol, pe)
	if reason == "" {
		return false
	}
	p.audit.record(auditRecord{Action: actRevoke, Decision: decDeny, UserID: pe.userID, Identity: pe.ident(),
		Key: pe.key.Z85(), Remote: pe.remoteAddr, Reason: reason, Errno: int(rpc.CodePermission), Generation: pol.Generation()})
	pe.sendFinal(errorFrames(nil, errorf(rpc.CodePermission, reason), nil, nil), reason)
	return true
}

// recheckSubscriptions drops pe's subscriptions that pol no longer allows.
func (p *Platform) recheckSubscriptions(pol *auth.Policy, pe *peer) {
	p.subMu.RLock()
	patterns := make([]string, 0, len(pe.subs))
	for pat := range pe.subs {
		patterns = append(patterns, pat)
	}
	p.subMu.RUnlock()
	if len(patterns) == 0 {
		return
	}
	subj, err := pol.Subject(pe.principal())
	for _, pat := range patterns {
		reason := ""
		if err != nil {
			reason = err.Error()
		} else if d := pol.DecideTopic(subj, auth.Subscribe, pat); !d.Allowed {
			reason = d.Reason()
		}
		if reason == "" {
			continue
		}
		p.unsubscribe(pe, pat)
		p.audit.record(auditRecord{Action: actSubscribe, Decision: decDeny, UserID: pe.userID, Identity: pe.identity,
			Key: pe.key.Z85(), Topic: pat, Reason: "subscription dropped by reload: " + reason, Generation: pol.Generation()})
		e := errorf(rpc.CodeUnauthorized, "subscription to "+strconv.Quote(pat)+" dropped: "+reason)
		_ = pe.send(errorFrames(nil, e, nil, []byte(vip.SubPubsub)))
	}
}
