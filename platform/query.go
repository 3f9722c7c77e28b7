package platform

import (
	"sort"

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
	var v any
	switch what {
	case vip.QueryServerKey:
		v = p.kp.Public.Z85()
	case vip.QueryVersion:
		v = p.cfg.version
	case vip.QueryWhoami:
		v = vip.Principal{UserID: pe.userID, Identity: pe.identity, Key: pe.key.Z85(), Generation: pol.Generation()}
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
