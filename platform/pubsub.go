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
	if msg := p.addSubscription(pe, pattern); msg != "" {
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodeOverloaded, msg), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
		return
	}
	p.ok(pe, frames)
}

// addSubscription subscribes pe to pattern within the connection's and
// the user's bounds, or says which bound refused it.
func (p *Platform) addSubscription(pe *peer, pattern string) string {
	lim := &p.cfg.limits
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if _, ok := pe.subs[pattern]; ok {
		return ""
	}
	if len(pe.subs) >= lim.MaxSubscriptions {
		return "too many subscriptions: this connection has " + strconv.Itoa(len(pe.subs)) +
			" (the limit is " + strconv.Itoa(lim.MaxSubscriptions) + "); unsubscribe from some first"
	}
	if n := pe.user.subs.Add(1); n > int64(lim.MaxUserSubscriptions) {
		pe.user.subs.Add(-1)
		return "too many subscriptions: the connections of user " + strconv.Quote(pe.userID) + " have " +
			strconv.FormatInt(n-1, 10) + " (the limit is " + strconv.Itoa(lim.MaxUserSubscriptions) + ")"
	}
	if pe.subs == nil {
		pe.subs = make(map[string]struct{})
	}
	pe.subs[pattern] = struct{}{}
	p.subs.Add(pattern, pe)
	return ""
}

func (p *Platform) unsubscribe(pe *peer, pattern string) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if _, ok := pe.subs[pattern]; !ok {
		return
	}
	delete(pe.subs, pattern)
	pe.user.subs.Add(-1)
	p.subs.Remove(pattern, pe)
}

func (p *Platform) unsubscribeAll(pe *peer) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if len(pe.subs) == 0 {
		return
	}
	patterns := make([]string, 0, len(pe.subs))
	for pattern := range pe.subs {
		patterns = append(patterns, pattern)
	}
	pe.subs = nil
	pe.user.subs.Add(-int64(len(patterns)))
	p.subs.RemoveAll(pe, patterns)
}

// publish delivers [publisher, "VIP1", publisher-user, "", "pubsub",
// "message", topic, VALUE] to each subscriber once. Finding them costs
// what matches (see internal/topictree) and takes no lock the publisher's
// other traffic needs; a subscriber whose queue is full misses the
// message, which is counted.
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
	p.metrics.published.Add(1)
	p.subs.Match(topic, func(sub *peer) {
		if err := sub.sendFrom(pe, msg); err != nil {
			p.stats.dropped.Add(1)
			p.metrics.pubDropped.Add(1)
		} else {
			p.metrics.delivered.Add(1)
		}
	})
	if len(frames[vip.FrameMsgID]) > 0 {
		p.ok(pe, frames)
	}
}
