package platform

import (
	"sort"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// hello handles ["", "VIP1", "", msg-id, "hello", HELLO]: identity binding,
// the admission hook, registration in the routing table, welcome, and the
// peerlist "add" broadcast. A refused hello closes the connection.
func (p *Platform) hello(pe *peer, frames [][]byte) {
	if pe.welcomed.Load() {
		p.protocolError(pe, frames, "second hello on one connection")
		return
	}
	msgID := frames[vip.FrameMsgID]
	refuse := func(e *wireError, identity string) {
		p.audit.record(auditRecord{Action: actRefuse, Decision: decDeny, UserID: pe.userID, Identity: identity,
			Key: pe.key.Z85(), Remote: pe.remoteAddr, Reason: e.text, Errno: int(e.code), Generation: p.policy().Generation()})
		pe.sendFinal(errorFrames(msgID, e, frames[vip.FramePeer], frames[vip.FrameSubsystem]), "hello refused: "+e.text)
	}
	if len(frames) <= vip.FrameArgs {
		refuse(errorf(rpc.CodeProtocol, "hello needs a HELLO frame"), "")
		return
	}
	var h vip.Hello
	if err := codec.Unmarshal(frames[vip.FrameArgs], &h); err != nil {
		refuse(errorf(rpc.CodeInvalidArgs, "HELLO must be a msgpack map with identity, exports and meta: "+err.Error()), "")
		return
	}
	if msg := checkIdentity(h.Identity); msg != "" {
		refuse(errorf(rpc.CodeInvalidArgs, msg), "")
		return
	}
	exports := make([]rpc.Export, len(h.Exports))
	for i, e := range h.Exports {
		exports[i] = e.Decl()
	}
	if e := validExports(exports); e != nil {
		refuse(e, h.Identity)
		return
	}
	pol := p.policy()
	if e := p.admit(pe, h.Identity, exports, h.Meta, false); e != nil {
		refuse(e, h.Identity)
		return
	}

	table := make(exportTable, len(exports))
	for _, e := range exports {
		table[e.Name] = p.newExport(h.Identity, e)
	}
	w, _ := codec.Marshal(vip.Welcome{Identity: h.Identity, UserID: pe.userID, Version: p.cfg.version,
		Generation: pol.Generation(), ServerKey: p.kp.Public.Z85()})
	p.mu.Lock()
	old := p.byIdentity[h.Identity]
	if old != nil && old.key != pe.key {
		p.mu.Unlock()
		refuse(errorf(rpc.CodeIdentityInUse, "identity "+strconv.Quote(h.Identity)+" is held by another live connection"), h.Identity)
		return
	}
	pe.identity = h.Identity
	pe.identityBytes = []byte(h.Identity)
	pe.meta = h.Meta
	pe.quiet = h.Meta[vip.MetaPeerlist] == vip.PeerlistOff
	pe.exports.Store(&table)
	pe.welcomed.Store(true)
	p.preHello--
	// Queue the welcome before the identity becomes routable, so that it
	// precedes every call for the new peer.
	p.reply(pe, [][]byte{vip.Empty, vip.SignatureFrame, pe.userBytes, msgID, []byte(vip.SubWelcome), w})
	p.byIdentity[h.Identity] = pe
	p.mu.Unlock()

	if old != nil {
		old.sendFinal(errorFrames(nil, errorf(rpc.CodeIdentityInUse, "identity "+strconv.Quote(h.Identity)+" taken over by a new connection of the same key"), nil, nil),
			"replaced by a new connection of the same key")
	}
	p.audit.record(auditRecord{Action: actAdmit, Decision: decAllow, UserID: pe.userID, Identity: h.Identity,
		Key: pe.key.Z85(), Remote: pe.remoteAddr, Generation: pol.Generation()})
	if old != nil {
		// Calls in flight to the replaced connection are lost: a drop
		// lets their callers fail at once instead of at their deadline.
		p.broadcastPeer(vip.OpDrop, pe)
	}
	p.broadcastPeer(vip.OpAdd, pe)
	// A reload that ran while this hello was decided did not see the claim.
	if reason := p.revokedNow(pe); reason != "" {
		p.revokeIfDenied(p.policy(), pe)
	}
}

// admit runs the checks of an identity claim with its exports, at hello
// and at every export change after it: the policy must allow the claim,
// then the admission hook, which sees the principal as the policy does,
// must accept it.
func (p *Platform) admit(pe *peer, identity string, exports []rpc.Export, meta map[string]string, afterHello bool) *wireError {
	pol := p.policy()
	if err := pol.CheckIdentity(pe.userID, identity); err != nil {
		next := p.fresher(pol)
		if next == nil || next.CheckIdentity(pe.userID, identity) != nil {
			return errorf(rpc.CodePermission, err.Error())
		}
		pol = next // a grant the watcher had not installed yet
	}
	if p.cfg.admission == nil {
		return nil
	}
	pr := rpc.Principal{UserID: pe.userID, Identity: identity, Key: pe.key}
	a := &Admission{Principal: pr, RemoteAddr: pe.remoteAddr, Exports: exports, Meta: meta, AfterHello: afterHello}
	if subj, err := pol.SubjectAt(pr, pe.remoteAddr); err == nil {
		a.Permissions = pol.Permissions(subj)
		a.Attributes = subj.Attributes()
	}
	if err := p.runAdmissionHook(a); err != nil {
		what := "identity " + strconv.Quote(identity)
		if afterHello {
			what = "exports of " + strconv.Quote(identity)
		}
		return errorf(rpc.CodePermission, what+" refused by the platform's admission hook: "+err.Error())
	}
	return nil
}

// checkIdentity validates an identity claim's form.
func checkIdentity(id string) string {
	if id == "" || len(id) > vip.MaxIdentity {
		return "identity must be 1..128 bytes"
	}
	if !utf8.ValidString(id) {
		return "identity must be UTF-8"
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return "identity must not contain control characters"
		}
	}
	return ""
}

// peerlist handles ["", "VIP1", "", msg-id, "peerlist", "list"].
func (p *Platform) peerlist(pe *peer, frames [][]byte) {
	if len(frames) <= vip.FrameArgs || string(frames[vip.FrameArgs]) != vip.OpList {
		p.protocolError(pe, frames, "peerlist accepts only \"list\"")
		return
	}
	p.mu.RLock()
	ids := make([]string, 0, len(p.byIdentity))
	for id := range p.byIdentity {
		ids = append(ids, id)
	}
	p.mu.RUnlock()
	sort.Strings(ids)
	out := [][]byte{vip.Empty, vip.SignatureFrame, vip.Empty, frames[vip.FrameMsgID], []byte(vip.SubPeerlist), []byte(vip.OpListing)}
	for _, id := range ids {
		out = append(out, []byte(id))
	}
	p.reply(pe, out)
}

// broadcastPeer tells every other welcomed peer that pe was added or
// dropped, but those whose hello asked for none ("peerlist": "off"): with
// N agents connecting, the broadcasts are N(N-1)/2 messages.
func (p *Platform) broadcastPeer(op string, pe *peer) {
	msg := [][]byte{vip.Empty, vip.SignatureFrame, vip.Empty, vip.Empty, []byte(vip.SubPeerlist), []byte(op), pe.identityBytes}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, other := range p.byIdentity {
		if other != pe && !other.quiet {
			_ = other.send(msg)
		}
	}
}
