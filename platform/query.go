package platform

import (
	"sort"

	"github.com/capbus/capbus/rpc"
	"github.com/vmihailenco/msgpack/v5"
)

// whoamiMsg is the VALUE of query "whoami".
type whoamiMsg struct {
	UserID     string `msgpack:"user_id"`
	Identity   string `msgpack:"identity"`
	Key        string `msgpack:"key"`
	Generation uint64 `msgpack:"generation"`
}

// callableMsg is one element of the VALUE of query "callable".
type callableMsg struct {
	Peer        string `msgpack:"peer"`
	Method      string `msgpack:"method"`
	Conditional bool   `msgpack:"conditional,omitempty"`
}

// permissionsMsg is the VALUE of query "permissions".
type permissionsMsg struct {
	UserID       string   `msgpack:"user_id"`
	Identity     string   `msgpack:"identity"`
	Capabilities []string `msgpack:"capabilities"`
	Roles        []string `msgpack:"roles"`
	Restricted   []string `msgpack:"restricted"`
	Narrowed     bool     `msgpack:"narrowed"`
	Generation   uint64   `msgpack:"generation"`
}

// query handles ["", "VIP1", "", msg-id, "query", what].
func (p *Platform) query(pe *peer, frames [][]byte) {
	if len(frames) <= fArgs {
		p.protocolError(pe, frames, "query needs a what frame")
		return
	}
	what := string(frames[fArgs])
	pol := p.policy()
	var v any
	switch what {
	case "serverkey":
		v = p.kp.Public.Z85()
	case "version":
		v = p.cfg.version
	case "whoami":
		v = whoamiMsg{UserID: pe.userID, Identity: pe.identity, Key: pe.key.Z85(), Generation: pol.Generation()}
	case "callable", "permissions":
		if !pe.welcomed.Load() {
			p.reply(pe, errorFrames(frames[fMsgID], errorf(rpc.CodePermission, "say hello first"), frames[fRecipient], frames[fSubsystem]))
			return
		}
		subj, err := pe.subject(pol)
		if err != nil {
			p.reply(pe, errorFrames(frames[fMsgID], errorf(rpc.CodeUnauthorized, err.Error()), frames[fRecipient], frames[fSubsystem]))
			return
		}
		if what == "permissions" {
			perm := pol.Permissions(subj)
			m := permissionsMsg{UserID: pe.userID, Identity: pe.identity, Capabilities: []string{}, Roles: []string{},
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
		out := []callableMsg{}
		for _, t := range targets {
			for name, exp := range t.table {
				req := exp.requirement(pol, t.callee)
				d := pol.Decide(subj, req, nil)
				switch {
				case d.Allowed:
					out = append(out, callableMsg{Peer: t.callee.identity, Method: name})
				case req.NeedsArgs() && len(d.Missing()) == 0:
					out = append(out, callableMsg{Peer: t.callee.identity, Method: name, Conditional: true})
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
		p.reply(pe, errorFrames(frames[fMsgID], errorf(rpc.CodeInvalidArgs, "unknown query "+quote(frames[fArgs])), frames[fRecipient], frames[fSubsystem]))
		return
	}
	b, err := msgpack.Marshal(v)
	if err != nil {
		p.reply(pe, errorFrames(frames[fMsgID], errorf(rpc.CodeInternal, err.Error()), frames[fRecipient], frames[fSubsystem]))
		return
	}
	p.reply(pe, [][]byte{empty, sigVIP1, empty, frames[fMsgID], []byte(subQuery), frames[fArgs], b})
}
