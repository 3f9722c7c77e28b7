package platform

import (
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// Frame indexes of an RPC call: [recipient, "VIP1", user, msg-id, "RPC",
// "call", method, ARGS].
const (
	fMethod  = vip.FrameArgs + vip.RPCArgMethod
	fPayload = vip.FrameArgs + vip.RPCArgPayload
	fTimeout = vip.FrameArgs + vip.RPCArgTimeout
)

// export is one method a peer exports, with its requirement compiled
// against the policy in force (recompiled when the policy changes).
type export struct {
	decl     rpc.Export
	declared auth.Declared
	cache    atomic.Pointer[reqCache]
	m        *methodMetrics // its calls, by outcome
}

type reqCache struct {
	pol *auth.Policy
	req *auth.Requirement
}

func (p *Platform) newExport(identity string, e rpc.Export) *export {
	return &export{decl: e, declared: auth.Declared{Capabilities: e.Capabilities, Roles: e.Roles, Params: e.Params},
		m: p.metrics.method(identity, e.Name)}
}

// requirement returns the export's requirement under pol, the callee's
// declaration plus what auth.json adds for "callee.method".
func (e *export) requirement(pol *auth.Policy, callee *peer) *auth.Requirement {
	if e == nil {
		return nil
	}
	if c := e.cache.Load(); c != nil && c.pol == pol {
		return c.req
	}
	r := pol.Requirement(callee.principal(), e.decl.Name, e.declared)
	e.cache.Store(&reqCache{pol: pol, req: r})
	return r
}

// call enforces a call or notify and forwards it to the callee. Checks, in
// order: callee connected, method exported, policy decision, call hook,
// deadline, calls in flight, the callee's queue.
func (p *Platform) call(pe *peer, frames [][]byte, notify bool) {
	if len(frames) <= fMethod || len(frames[fMethod]) == 0 {
		p.protocolError(pe, frames, "RPC call needs a method frame")
		return
	}
	method := frames[fMethod]
	p.mu.RLock()
	callee := p.byIdentity[string(frames[vip.FramePeer])]
	p.mu.RUnlock()
	if callee == nil {
		p.metrics.other.inc(outcomeRefused)
		p.refuseCall(pe, frames, notify, errorf(rpc.CodeNoRoute, "no route to "+quote(frames[vip.FramePeer])))
		return
	}
	exp := (*callee.exports.Load())[string(method)]
	if exp == nil {
		p.metrics.other.inc(outcomeRefused)
		p.refuseCall(pe, frames, notify, errorf(rpc.CodeNotFound, "peer "+quote(frames[vip.FramePeer])+" does not export method "+quote(method)))
		return
	}
	pol := p.policy()
	subj, err := pe.subject(pol)
	if err != nil {
		// A user the watcher has not installed yet (see fresher).
		next := p.fresher(pol)
		if next == nil {
			p.denyCall(pe, callee, frames, notify, pol, errorf(rpc.CodeUnauthorized, err.Error()))
			return
		}
		if subj, err = pe.subject(next); err != nil {
			p.denyCall(pe, callee, frames, notify, next, errorf(rpc.CodeUnauthorized, err.Error()))
			return
		}
		pol = next
	}
	req := exp.requirement(pol, callee)
	var args map[string]any
	if req.NeedsArgs() {
		var payload []byte
		if len(frames) > fPayload {
			payload = frames[fPayload]
		}
		c, err := codec.DecodeCall(payload)
		if err == nil {
			args, err = codec.NamedArgs(c, exp.decl.Params)
		}
		if err != nil {
			exp.m.inc(outcomeRefused)
			p.refuseCall(pe, frames, notify, errorf(rpc.CodeInvalidArgs, exp.decl.Name+": "+err.Error()))
			return
		}
	}
	d := pol.Decide(subj, req, args)
	if !d.Allowed {
		// A grant written to auth.json just before this call applies now;
		// what it holds may only allow what was refused (see fresher).
		// A refusal under both is explained by the newer: it is what
		// the file says now.
		if next := p.fresher(pol); next != nil {
			if nsubj, err := pe.subject(next); err == nil {
				nreq := exp.requirement(next, callee)
				pol, req, d = next, nreq, next.Decide(nsubj, nreq, args)
			}
		}
	}
	if !d.Allowed {
		exp.m.inc(outcomeDenied)
		p.denyCall(pe, callee, frames, notify, pol, unauthorized(callee.identity, exp.decl.Name, req, d))
		return
	}
	if p.cfg.callHook != nil {
		c := &Call{
			Caller:   pe.principal(),
			Callee:   callee.principal(),
			Method:   exp.decl.Name,
			Notify:   notify,
			Payload:  payloadOf(frames),
			Required: req.Capabilities(),
		}
		if err := p.runCallHook(c); err != nil {
			e := errorf(rpc.CodeUnauthorized, "call of "+strconv.Quote(exp.decl.Name)+" on "+strconv.Quote(callee.identity)+" refused by the platform's call hook: "+err.Error())
			e.data = map[string]any{"method": exp.decl.Name, "peer": callee.identity, "required": req.Capabilities(), "missing": []string{}, "hook": err.Error(), "generation": pol.Generation()}
			exp.m.inc(outcomeDenied)
			p.denyCall(pe, callee, frames, notify, pol, e)
			return
		}
	}
	msgID := frames[vip.FrameMsgID]
	if notify || len(msgID) == 0 {
		// No reply is expected: nothing to track.
		if p.forward(pe, callee, frames) {
			exp.m.inc(outcomeNotify)
			pe.callsOut.Add(1)
			callee.callsIn.Add(1)
			p.auditAllowedCall(pe, callee, exp.decl.Name, pol)
		} else {
			exp.m.inc(outcomeOverloaded)
		}
		return
	}
	now := time.Now()
	deadline, expired, ok := p.callDeadline(frames, now)
	switch {
	case !ok:
		exp.m.inc(outcomeRefused)
		p.refuseCall(pe, frames, notify, errorf(rpc.CodeInvalidArgs, "the TIMEOUT frame must be decimal milliseconds"))
		return
	case expired:
		exp.m.inc(outcomeTimeout)
		p.refuseCall(pe, frames, notify, errorf(rpc.CodeTimeout, "the deadline of the call of "+
			strconv.Quote(exp.decl.Name)+" passed before it reached the platform"))
		return
	}
	if e := p.track(pe, callee, msgID, pendingCall{method: exp.decl.Name, deadline: deadline, start: now, m: exp.m}); e != nil {
		if e.code == rpc.CodeOverloaded {
			exp.m.inc(outcomeOverloaded)
		} else {
			exp.m.inc(outcomeRefused)
		}
		p.refuseCall(pe, frames, notify, e)
		return
	}
	if !p.forward(pe, callee, frames) {
		exp.m.inc(outcomeOverloaded)
		p.untrack(pe, callee, msgID)
		return
	}
	pe.callsOut.Add(1)
	callee.callsIn.Add(1)
	p.auditAllowedCall(pe, callee, exp.decl.Name, pol)
}

// auditAllowedCall records an allowed call when the operator asked for
// allowed decisions (WithAuditAllowed).
func (p *Platform) auditAllowedCall(pe, callee *peer, method string, pol *auth.Policy) {
	if p.audit.allowed {
		p.audit.record(auditRecord{Action: actCall, Decision: decAllow, UserID: pe.userID, Identity: pe.identity,
			Key: pe.key.Z85(), Peer: callee.identity, Method: method, Generation: pol.Generation()})
	}
}

func payloadOf(frames [][]byte) []byte {
	if len(frames) > fPayload {
		return frames[fPayload]
	}
	return nil
}

// refuseCall answers a call the platform cannot route (no route, not found,
// bad arguments). A notify gets no answer.
func (p *Platform) refuseCall(pe *peer, frames [][]byte, notify bool, e *wireError) {
	if notify || len(frames[vip.FrameMsgID]) == 0 {
		return
	}
	p.reply(pe, errorFrames(frames[vip.FrameMsgID], e, frames[vip.FramePeer], frames[vip.FrameSubsystem]))
}

// denyCall refuses a call that the policy or the call hook denied: an audit
// record, and errno 13 to the caller (not for a notify).
func (p *Platform) denyCall(pe, callee *peer, frames [][]byte, notify bool, pol *auth.Policy, e *wireError) {
	required, _ := e.data["required"].([]string)
	missing, _ := e.data["missing"].([]string)
	p.audit.record(auditRecord{Action: actCall, Decision: decDeny, UserID: pe.userID, Identity: pe.identity,
		Key: pe.key.Z85(), Peer: callee.identity, Method: string(frames[fMethod]), Reason: e.text,
		Errno: int(e.code), Required: required, Missing: missing, Generation: pol.Generation()})
	p.refuseCall(pe, frames, notify, e)
}

// unauthorized builds the errno-13 refusal of a denied call: VOLTTRON's
// message made exact, plus structured data.
func unauthorized(callee, method string, req *auth.Requirement, d auth.Decision) *wireError {
	required := req.Capabilities()
	for _, r := range req.Roles() {
		required = append(required, "role:"+r)
	}
	missing := d.Missing()
	var text string
	if len(missing) > 0 {
		text = unauthorizedText(callee, method, req, missing)
	} else {
		text = "call of method " + strconv.Quote(method) + " of " + strconv.Quote(callee) + " denied: " + d.Reason()
	}
	e := errorf(rpc.CodeUnauthorized, text)
	e.data = map[string]any{
		"method":     method,
		"peer":       callee,
		"required":   nonNil(required),
		"missing":    nonNil(missing),
		"reason":     d.Reason(),
		"generation": d.Generation,
	}
	return e
}

// unauthorizedText formats:
//
//	method "temperature" of "weather" requires capabilities [can_read_temp], but capabilities [] were provided; missing [can_read_temp]
//
// "provided" lists the required capabilities (and roles) the caller holds.
func unauthorizedText(callee, method string, req *auth.Requirement, missing []string) string {
	miss := make(map[string]bool, len(missing))
	for _, m := range missing {
		miss[m] = true
	}
	held := func(names []string, prefix string) []string {
		out := []string{}
		for _, n := range names {
			if !miss[prefix+n] {
				out = append(out, n)
			}
		}
		return out
	}
	caps, roles := req.Capabilities(), req.Roles()
	var b strings.Builder
	b.WriteString("method ")
	b.WriteString(strconv.Quote(method))
	b.WriteString(" of ")
	b.WriteString(strconv.Quote(callee))
	b.WriteString(" requires ")
	var parts, given []string
	if len(caps) > 0 || len(roles) == 0 {
		parts = append(parts, "capabilities "+list(caps))
		given = append(given, "capabilities "+list(held(caps, "")))
	}
	if len(roles) > 0 {
		parts = append(parts, "roles "+list(roles))
		given = append(given, "roles "+list(held(roles, "role:")))
	}
	b.WriteString(strings.Join(parts, " and "))
	b.WriteString(", but ")
	b.WriteString(strings.Join(given, " and "))
	b.WriteString(" were provided; missing ")
	b.WriteString(list(missing))
	return b.String()
}

func list(names []string) string { return "[" + strings.Join(names, ", ") + "]" }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// export handles ["", "VIP1", "", msg-id, "RPC", "export", EXPORTS]: it
// adds or replaces methods of the sender. The change is judged as hello's
// exports are (the identity claim still allowed, the admission hook with
// every export the agent would have); a refused change changes nothing.
func (p *Platform) export(pe *peer, frames [][]byte) {
	if len(frames) < vip.FrameArgs+2 || string(frames[vip.FrameArgs]) != vip.OpExport {
		p.protocolError(pe, frames, "platform RPC accepts only [\"export\", EXPORTS]")
		return
	}
	refuse := func(e *wireError) {
		p.audit.record(auditRecord{Action: actExport, Decision: decDeny, UserID: pe.userID, Identity: pe.identity,
			Key: pe.key.Z85(), Remote: pe.remoteAddr, Reason: e.text, Errno: int(e.code), Generation: p.policy().Generation()})
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], e, frames[vip.FramePeer], frames[vip.FrameSubsystem]))
	}
	var wire []vip.Export
	if err := codec.Unmarshal(frames[vip.FrameArgs+1], &wire); err != nil {
		refuse(errorf(rpc.CodeInvalidArgs, "EXPORTS must be a msgpack array of export maps: "+err.Error()))
		return
	}
	list := make([]rpc.Export, len(wire))
	for i, w := range wire {
		list[i] = w.Decl()
	}
	if e := validExports(list); e != nil {
		refuse(e)
		return
	}
	old := *pe.exports.Load()
	next := make(exportTable, len(old)+len(list))
	for k, v := range old {
		next[k] = v
	}
	for _, e := range list {
		next[e.Name] = p.newExport(pe.identity, e)
	}
	all := make([]rpc.Export, 0, len(next))
	for _, e := range next {
		all = append(all, e.decl)
	}
	slices.SortFunc(all, func(x, y rpc.Export) int { return strings.Compare(x.Name, y.Name) })
	if e := p.admit(pe, pe.identity, all, pe.meta, true); e != nil {
		refuse(e)
		return
	}
	pe.exports.Store(&next) // only pe's reader changes pe's exports
	p.reply(pe, [][]byte{vip.Empty, vip.SignatureFrame, vip.Empty, frames[vip.FrameMsgID], []byte(vip.SubRPC), []byte(vip.OpExported)})
}

// validExports checks export names.
func validExports(list []rpc.Export) *wireError {
	for _, e := range list {
		if e.Name == "" || len(e.Name) > vip.MaxMethodName {
			return errorf(rpc.CodeInvalidArgs, "an export needs a name of 1..256 bytes")
		}
	}
	return nil
}
