package platform

import (
	"context"
	"errors"
	"os"
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
	var ve *auth.ValidationError
	switch {
	case errors.As(ev.Err, &ve):
		now := time.Now()
		p.polRejected.Store(&now)
		p.metrics.reloads.WithLabelValues("rejected").Inc()
	case ev.Err == nil:
		p.metrics.reloads.WithLabelValues("ok").Inc()
	}
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
			now := time.Now()
			p.polLoaded.Store(&now)
			return true
		}
	}
}

// fresher reads auth.json ahead of the watcher, before a refusal: when
// the file changed since the last such read (size, modification time or
// inode), the Store reloads it now, as its watcher would 40 ms later, and
// fresher returns the policy then in force if it is not pol (the policy
// that refused); nil otherwise. So a key, a grant or an identity written
// to auth.json just before the refused request is honoured at once, and
// the policy it was honoured under is the one in force from then on (a
// later broken edit keeps it). An empty or missing file is handled as by
// the watcher (kept until confirmed); an invalid one is rejected, keeping
// the policy in force.
func (p *Platform) fresher(pol *auth.Policy) *auth.Policy {
	if p.store == nil {
		return nil
	}
	if cur := p.policy(); cur != pol {
		return cur // installed meanwhile
	}
	st, err := os.Stat(p.store.Path())
	p.peekMu.Lock()
	changed := err == nil && (p.peekedStat == nil || !sameFile(st, p.peekedStat))
	if changed {
		p.peekedStat = st
	}
	p.peekMu.Unlock()
	if !changed {
		return nil
	}
	_ = p.store.Reload() // a rejection is logged and audited by onReload
	if cur := p.policy(); cur != pol {
		return cur
	}
	return nil
}

// sameFile reports whether a and b describe the same unchanged file.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
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

// revokedNow is revoked under the policy in force, unless what auth.json
// holds now (see fresher) admits pe: a peer admitted by a grant the
// watcher has not installed yet is not closed by the older policy.
func (p *Platform) revokedNow(pe *peer) string {
	pol := p.policy()
	reason := p.revoked(pol, pe)
	if reason != "" {
		if next := p.fresher(pol); next != nil && p.revoked(next, pe) == "" {
			return ""
		}
	}
	return reason
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
	p.subMu.Lock()
	patterns := make([]string, 0, len(pe.subs))
	for pat := range pe.subs {
		patterns = append(patterns, pat)
	}
	p.subMu.Unlock()
	if len(patterns) == 0 {
		return
	}
	subj, err := pol.SubjectAt(pe.principal(), pe.remoteAddr)
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
