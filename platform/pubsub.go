package platform

import (
	"strconv"
	"strings"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// pubsub handles the pubsub subsystem: subscribe, unsubscribe, publish.
func (p *Platform) pubsub(pe *peer, frames [][]byte) {
	if len(frames) < vip.FrameArgs+2 {
		p.protocolError(pe, frames, "pubsub needs an operation and a topic")
		return
	}
	topic := string(frames[vip.FrameArgs+1])
	switch string(frames[vip.FrameArgs]) {
	case vip.OpSubscribe:
		p.subscribe(pe, frames, topic)
	case vip.OpUnsubscribe:
		p.unsubscribe(pe, topic)
		p.ok(pe, frames)
	case vip.OpPublish:
		p.publish(pe, frames, topic)
	default:
		p.protocolError(pe, frames, "unknown pubsub operation "+quote(frames[vip.FrameArgs]))
	}
}

func (p *Platform) ok(pe *peer, frames [][]byte) {
	p.reply(pe, [][]byte{vip.Empty, vip.SignatureFrame, vip.Empty, frames[vip.FrameMsgID], []byte(vip.SubPubsub), []byte(vip.OpOK)})
}

// topicDenied decides op on topic for pe and, when denied, audits and
// answers errno 13.
func (p *Platform) topicDenied(pe *peer, frames [][]byte, op auth.TopicOp, topic string) bool {
	pol := p.policy()
	var reason string
	subj, err := pe.subject(pol)
	if err != nil {
		reason = err.Error()
	} else if d := pol.DecideTopic(subj, op, topic); !d.Allowed {
		reason = d.Reason()
	} else {
		p.auditAllowedTopic(pe, op, topic, pol)
		return false
	}
	// A grant written to auth.json just before applies now (see fresher).
	if next := p.fresher(pol); next != nil {
		if nsubj, err := pe.subject(next); err == nil && next.DecideTopic(nsubj, op, topic).Allowed {
			if op == auth.Subscribe {
				p.grantedAhead()
			}
			p.auditAllowedTopic(pe, op, topic, next)
			return false
		}
	}
	name, act := "publish to", actPublish
	if op == auth.Subscribe {
		name, act = "subscribe to", actSubscribe
	}
	e := errorf(rpc.CodeUnauthorized, name+" "+strconv.Quote(topic)+" refused: "+reason)
	e.data = map[string]any{"topic": topic, "operation": strings.Fields(name)[0], "reason": reason, "generation": pol.Generation()}
	p.audit.record(auditRecord{Action: act, Decision: decDeny, UserID: pe.userID, Identity: pe.identity,
		Key: pe.key.Z85(), Topic: topic, Reason: reason, Errno: int(rpc.CodeUnauthorized), Generation: pol.Generation()})
	p.reply(pe, errorFrames(frames[vip.FrameMsgID], e, frames[vip.FramePeer], frames[vip.FrameSubsystem]))
	return true
}

// auditAllowedTopic records an allowed publish or subscribe when the
// operator asked for allowed decisions (WithAuditAllowed).
func (p *Platform) auditAllowedTopic(pe *peer, op auth.TopicOp, topic string, pol *auth.Policy) {
	if !p.audit.allowed {
		return
	}
	act := actPublish
	if op == auth.Subscribe {
		act = actSubscribe
	}
	p.audit.record(auditRecord{Action: act, Decision: decAllow, UserID: pe.userID, Identity: pe.identity,
		Key: pe.key.Z85(), Topic: topic, Generation: pol.Generation()})
}

func (p *Platform) subscribe(pe *peer, frames [][]byte, pattern string) {
	if msg := vip.CheckTopic(pattern, true); msg != "" {
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodeInvalidArgs, msg), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
		return
	}
	if p.topicDenied(pe, frames, auth.Subscribe, pattern) {
		return
	}
	p.subMu.Lock()
	if pe.subs == nil {
		pe.subs = make(map[string]struct{})
	}
	if len(pe.subs) >= maxSubscriptions {
		p.subMu.Unlock()
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodeOverloaded, "too many subscriptions"), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
		return
	}
	pe.subs[pattern] = struct{}{}
	set := p.subs[pattern]
	if set == nil {
		set = make(map[*peer]struct{})
		p.subs[pattern] = set
	}
	set[pe] = struct{}{}
	p.subMu.Unlock()
	p.ok(pe, frames)
}

// maxSubscriptions bounds the patterns one connection may subscribe to.
const maxSubscriptions = 4096

func (p *Platform) unsubscribe(pe *peer, pattern string) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	p.unsubscribeLocked(pe, pattern)
}

func (p *Platform) unsubscribeLocked(pe *peer, pattern string) {
	delete(pe.subs, pattern)
	if set := p.subs[pattern]; set != nil {
		delete(set, pe)
		if len(set) == 0 {
			delete(p.subs, pattern)
		}
	}
}

func (p *Platform) unsubscribeAll(pe *peer) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	for pattern := range pe.subs {
		p.unsubscribeLocked(pe, pattern)
	}
}

// publish delivers [publisher, "VIP1", publisher-user, "", "pubsub",
// "message", topic, VALUE] to each subscriber once.
func (p *Platform) publish(pe *peer, frames [][]byte, topic string) {
	if msg := vip.CheckTopic(topic, false); msg != "" {
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodeInvalidArgs, msg), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
		return
	}
	if p.topicDenied(pe, frames, auth.Publish, topic) {
		return
	}
	value := vip.Empty
	if len(frames) > vip.FrameArgs+2 {
		value = frames[vip.FrameArgs+2]
	}
	msg := [][]byte{pe.identityBytes, vip.SignatureFrame, pe.userBytes, vip.Empty, []byte(vip.SubPubsub), []byte(vip.OpMessage), frames[vip.FrameArgs+1], value}
	var sent []*peer
	p.subMu.RLock()
	for pattern, set := range p.subs {
		if !vip.MatchTopic(pattern, topic) {
			continue
		}
	next:
		for sub := range set {
			for _, s := range sent {
				if s == sub {
					continue next
				}
			}
			sent = append(sent, sub)
			_ = sub.send(msg) // a full subscriber queue drops the message
		}
	}
	p.subMu.RUnlock()
	if len(frames[vip.FrameMsgID]) > 0 {
		p.ok(pe, frames)
	}
}
