package platform

import (
	"context"
	"strconv"
	"time"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// Every message between peers is authorized, or answers a call that was:
// the platform keeps each call it forwards (caller, callee, msg-id) until
// the callee replies, either side disconnects, or the call expires, and
// forwards a reply only when it matches such a call. A reply that matches
// none is dropped, counted and audited.
//
// The table lives in the callee: its reader looks its replies up there, and
// callers' readers add their calls to it, under the callee's pmu. A caller
// counts its calls awaiting replies (outstanding), which bounds them and
// tells a disconnecting caller whether it has calls to cancel.

// callKey identifies a call forwarded to a peer: its caller and msg-id.
type callKey struct {
	caller *peer
	id     string
}

// pendingCall is a forwarded call awaiting its reply.
type pendingCall struct {
	method   string
	deadline time.Time
	start    time.Time      // when it was forwarded, for the call latency metric
	m        *methodMetrics // the callee method's counters
}

// callDeadline returns the deadline of a call: now plus the TIMEOUT frame
// (decimal milliseconds) capped by the maximum call time, or now plus the
// maximum when the frame is absent. ok is false when the frame is
// malformed; expired is true when the time left is zero or less.
func (p *Platform) callDeadline(frames [][]byte, now time.Time) (deadline time.Time, expired, ok bool) {
	limit := now.Add(p.cfg.limits.MaxCallTime)
	if len(frames) <= fTimeout || len(frames[fTimeout]) == 0 {
		return limit, false, true
	}
	ms, err := strconv.ParseInt(string(frames[fTimeout]), 10, 64)
	if err != nil {
		return time.Time{}, false, false
	}
	if ms <= 0 {
		return now, true, true
	}
	if ms > int64(p.cfg.limits.MaxCallTime/time.Millisecond) {
		return limit, false, true
	}
	return now.Add(time.Duration(ms) * time.Millisecond), false, true
}

// track records a call from caller to callee before it is forwarded. It
// fails when the caller has too many calls awaiting replies, or already
// has one with this msg-id to this callee.
func (p *Platform) track(caller, callee *peer, id []byte, c pendingCall) *wireError {
	if caller.outstanding.Add(1) > int64(p.cfg.limits.MaxCallsInFlight) {
		caller.outstanding.Add(-1)
		return errorf(rpc.CodeOverloaded, "too many calls awaiting replies on this connection (limit "+strconv.Itoa(p.cfg.limits.MaxCallsInFlight)+")")
	}
	k := callKey{caller, string(id)}
	callee.pmu.Lock()
	if _, dup := callee.inbound[k]; dup {
		callee.pmu.Unlock()
		caller.outstanding.Add(-1)
		return errorf(rpc.CodeProtocol, "msg-id "+quote(id)+" is already awaiting a reply from "+quote(callee.identityBytes))
	}
	if callee.inbound == nil {
		callee.inbound = make(map[callKey]pendingCall)
	}
	callee.inbound[k] = c
	callee.pmu.Unlock()
	return nil
}

// untrack forgets a call that was not forwarded after all.
func (p *Platform) untrack(caller, callee *peer, id []byte) {
	callee.pmu.Lock()
	_, ok := callee.inbound[callKey{caller, string(id)}]
	delete(callee.inbound, callKey{caller, string(id)})
	callee.pmu.Unlock()
	if ok {
		caller.outstanding.Add(-1)
	}
}

// reply forwards ["RPC", "result"|"error", ...] from callee pe to the
// caller it names, when it answers a call pe received; anything else is
// dropped, counted and audited.
func (p *Platform) replyTo(pe *peer, frames [][]byte) {
	p.mu.RLock()
	caller := p.byIdentity[string(frames[vip.FramePeer])]
	p.mu.RUnlock()
	matched := false
	var c pendingCall
	if caller != nil {
		pe.pmu.Lock()
		k := callKey{caller, string(frames[vip.FrameMsgID])}
		if c, matched = pe.inbound[k]; matched {
			delete(pe.inbound, k)
		}
		pe.pmu.Unlock()
	}
	if !matched {
		p.stats.unmatchedReplies.Add(1)
		p.audit.record(auditRecord{Action: actReply, Decision: decDeny, UserID: pe.userID, Identity: pe.identity,
			Key: pe.key.Z85(), Peer: string(frames[vip.FramePeer]), Reason: "no call awaits this reply"})
		return
	}
	caller.outstanding.Add(-1)
	p.metrics.callTime.Observe(time.Since(c.start).Seconds())
	if string(frames[vip.FrameArgs]) == vip.OpResult {
		c.m.inc(outcomeOK)
	} else {
		c.m.inc(outcomeError)
	}
	p.forward(pe, caller, frames)
}

// cancelCall forwards ["RPC", "cancel", method] from caller pe to the
// callee of its call with that msg-id, if the call awaits a reply; the
// callee's SDK cancels the handler's context. An unmatched cancel (the
// reply crossed it) is dropped.
func (p *Platform) cancelCall(pe *peer, frames [][]byte) {
	p.mu.RLock()
	callee := p.byIdentity[string(frames[vip.FramePeer])]
	p.mu.RUnlock()
	if callee == nil {
		return
	}
	callee.pmu.Lock()
	_, ok := callee.inbound[callKey{pe, string(frames[vip.FrameMsgID])}]
	callee.pmu.Unlock()
	if ok {
		frames[vip.FramePeer] = pe.identityBytes
		frames[vip.FrameUser] = pe.userBytes
		_ = callee.send(frames)
	}
}

// cancelFrames builds the cancel the platform sends a callee for a call
// whose caller is gone: [caller, "VIP1", caller-user, msg-id, "RPC",
// "cancel", method].
func cancelFrames(caller *peer, id, method string) [][]byte {
	return [][]byte{caller.identityBytes, vip.SignatureFrame, caller.userBytes, []byte(id), []byte(vip.SubRPC),
		[]byte(vip.OpCancel), []byte(method)}
}

// callsGone settles the calls of a peer that left: each call it made that
// awaits a reply is cancelled at its callee, and each call made to it is
// answered at once with errno 107, so its caller need not wait for its
// own timeout.
func (p *Platform) callsGone(pe *peer) {
	// Calls made to pe.
	pe.pmu.Lock()
	inbound := pe.inbound
	pe.inbound = nil
	pe.pmu.Unlock()
	for k, c := range inbound {
		c.m.inc(outcomeUnavailable)
		k.caller.outstanding.Add(-1)
		e := errorf(rpc.CodeUnavailable, "peer "+strconv.Quote(pe.identity)+" disconnected while the call of "+
			strconv.Quote(c.method)+" was in flight; it may or may not have run")
		_ = k.caller.send(errorFrames([]byte(k.id), e, pe.identityBytes, []byte(vip.SubRPC)))
	}
	// Calls pe made.
	if pe.outstanding.Load() == 0 {
		return
	}
	for _, callee := range p.livePeers() {
		callee.pmu.Lock()
		var gone []callKey
		for k := range callee.inbound {
			if k.caller == pe {
				gone = append(gone, k)
			}
		}
		methods := make([]string, len(gone))
		for i, k := range gone {
			c := callee.inbound[k]
			c.m.inc(outcomeCancelled)
			methods[i] = c.method
			delete(callee.inbound, k)
		}
		callee.pmu.Unlock()
		for i, k := range gone {
			pe.outstanding.Add(-1)
			_ = callee.send(cancelFrames(pe, k.id, methods[i]))
		}
	}
}

// expireEvery is how often the platform looks for calls past their
// deadline: an expired call is answered within this of its deadline.
const expireEvery = 250 * time.Millisecond

// expireLoop expires calls until ctx ends.
func (p *Platform) expireLoop(ctx context.Context) {
	t := time.NewTicker(expireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.expireCalls(now)
		}
	}
}

// expireCalls forgets the calls whose deadline passed before their reply,
// answering each caller with errno 110 (its SDK has usually given up at the
// same moment; a client in another language learns it here).
func (p *Platform) expireCalls(now time.Time) {
	for _, callee := range p.livePeers() {
		callee.pmu.Lock()
		var expired []callKey
		for k, c := range callee.inbound {
			if now.After(c.deadline) {
				expired = append(expired, k)
			}
		}
		methods := make([]string, len(expired))
		for i, k := range expired {
			c := callee.inbound[k]
			c.m.inc(outcomeTimeout)
			methods[i] = c.method
			delete(callee.inbound, k)
		}
		callee.pmu.Unlock()
		for i, k := range expired {
			k.caller.outstanding.Add(-1)
			e := errorf(rpc.CodeTimeout, "no reply from "+strconv.Quote(callee.identity)+" to the call of "+
				strconv.Quote(methods[i])+" before its deadline")
			_ = k.caller.send(errorFrames([]byte(k.id), e, callee.identityBytes, []byte(vip.SubRPC)))
		}
	}
}

// livePeers returns every connection.
func (p *Platform) livePeers() []*peer {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*peer, 0, len(p.conns))
	for pe := range p.conns {
		out = append(out, pe)
	}
	return out
}
