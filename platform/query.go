package platform

import (
	"sort"
	"strconv"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// query handles ["", "VIP1", "", msg-id, "query", what].
func (p *Platform) query(pe *peer, frames [][]byte) {
	if len(frames) <= vip.FrameArgs {
		p.protocolError(pe, frames, "query needs a what frame")
		return
	}
	what := string(frames[vip.FrameArgs])
	pol := p.policy()
	if _, err := pe.subject(pol); err != nil && pe.welcomed.Load() {
		// A user the watcher has not installed yet (see fresher): the
		// CLI asks right after adding itself.
		if next := p.fresher(pol); next != nil {
			if _, err := pe.subject(next); err == nil {
				pol = next
			}
		}
	}
	var v any
	switch what {
	case vip.QueryServerKey:
		v = p.kp.Public.Z85()
	case vip.QueryVersion:
		v = p.cfg.version
	case vip.QueryWhoami:
		who := vip.Principal{UserID: pe.userID, Identity: pe.ident(), Key: pe.key.Z85(), Generation: pol.Generation()}
		if p.store != nil {
			if rej := p.store.Rejected(); rej != nil {
				who.Rejected = &vip.Rejected{File: rej.File, Line: rej.Line, Column: rej.Column, Path: rej.Path, Message: rej.Msg}
				older := "an older policy (generation " + strconv.FormatUint(pol.Generation(), 10) + ")"
				if pol.Closed() {
					older = "a closed policy (nobody is admitted)"
				}
				who.PolicyNote = "the auth.json on disk was rejected (" + rej.Error() + "); " + older + " is in force until it is fixed"
			}
		}
		v = who
	case vip.QueryDescribe:
		if !pe.welcomed.Load() {
			p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodePermission, "say hello first"), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
			return
		}
		d, e := p.describe(pe, pol, frames)
		if e != nil {
			p.reply(pe, errorFrames(frames[vip.FrameMsgID], e, frames[vip.FramePeer], frames[vip.FrameSubsystem]))
			return
		}
		v = d
	case vip.QueryCallable, vip.QueryPermissions:
		if !pe.welcomed.Load() {
			p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodePermission, "say hello first"), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
			return
		}
		subj, err := pe.subject(pol)
		if err != nil {
			p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodeUnauthorized, err.Error()), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
			return
		}
		if what == vip.QueryPermissions {
			perm := pol.Permissions(subj)
			m := vip.Permissions{UserID: pe.userID, Identity: pe.identity, Capabilities: []string{}, Roles: []string{},
				Restricted: []string{}, Narrowed: perm.Narrowed, Generation: perm.Generation}
			for _, g := range perm.Capabilities {
				m.Capabilities = append(m.Capabilities, g.Name)
				if g.Restricted {
					m.Restricted = append(m.Restricted, g.Name)
				}
			}
			for _, g := range perm.Roles {
				m.Roles = append(m.Roles, g.Name)
			}
			v = m
			break
		}
		type target struct {
			callee *peer
			table  exportTable
		}
		p.mu.RLock()
		targets := make([]target, 0, len(p.byIdentity))
		for _, c := range p.byIdentity {
			targets = append(targets, target{c, *c.exports.Load()})
		}
		p.mu.RUnlock()
		out := []vip.Method{}
		for _, t := range targets {
			for name, exp := range t.table {
				req := exp.requirement(pol, t.callee)
				d := pol.Decide(subj, req, nil)
				switch {
				case d.Allowed:
					out = append(out, vip.Method{Peer: t.callee.identity, Method: name})
				case req.NeedsArgs() && len(d.Missing()) == 0:
					out = append(out, vip.Method{Peer: t.callee.identity, Method: name, Conditional: true})
				}
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Peer != out[j].Peer {
				return out[i].Peer < out[j].Peer
			}
			return out[i].Method < out[j].Method
		})
		v = out
	default:
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodeInvalidArgs, "unknown query "+quote(frames[vip.FrameArgs])), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
		return
	}
	b, err := codec.Marshal(v)
	if err != nil {
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodeInternal, err.Error()), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
		return
	}
	p.reply(pe, [][]byte{vip.Empty, vip.SignatureFrame, vip.Empty, frames[vip.FrameMsgID], []byte(vip.SubQuery), frames[vip.FrameArgs], b})
}

// describe answers ["query", "describe", identity]: the methods of the
// connected agent identity, each with its requirement under pol and
// whether pe may call it.
func (p *Platform) describe(pe *peer, pol *auth.Policy, frames [][]byte) (vip.Description, *wireError) {
	if len(frames) <= vip.FrameArgs+1 || len(frames[vip.FrameArgs+1]) == 0 {
		return vip.Description{}, errorf(rpc.CodeInvalidArgs, "describe needs an identity frame")
	}
	identity := string(frames[vip.FrameArgs+1])
	p.mu.RLock()
	callee := p.byIdentity[identity]
	p.mu.RUnlock()
	if callee == nil {
		return vip.Description{}, errorf(rpc.CodeNoRoute, "no connected agent "+strconv.Quote(identity))
	}
	subj, err := pe.subject(pol)
	if err != nil {
		return vip.Description{}, errorf(rpc.CodeUnauthorized, err.Error())
	}
	table := *callee.exports.Load()
	out := vip.Description{Identity: identity, UserID: callee.userID, Generation: pol.Generation(),
		Methods: make([]vip.MethodDescription, 0, len(table))}
	for name, exp := range table {
		req := exp.requirement(pol, callee)
		d := pol.Decide(subj, req, nil)
		m := vip.MethodDescription{Name: name, Params: nonNil(exp.decl.Params),
			Capabilities: nonNil(req.Capabilities()), Roles: nonNil(req.Roles()),
			DeclaredCapabilities: nonNil(exp.decl.Capabilities), DeclaredRoles: nonNil(exp.decl.Roles),
			Allowed: d.Allowed, Missing: nonNil(d.Missing()), Warnings: []string{}}
		if !d.Allowed {
			m.Conditional = req.NeedsArgs() && len(m.Missing) == 0
			m.Reason = d.Reason()
		}
		for _, r := range m.Roles {
			if w := pol.RoleWarning(r, identity+"."+name); w != "" {
				m.Warnings = append(m.Warnings, w)
			}
		}
		out.Methods = append(out.Methods, m)
	}
	sort.Slice(out.Methods, func(i, j int) bool { return out.Methods[i].Name < out.Methods[j].Name })
	return out, nil
}
