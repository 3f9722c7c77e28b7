package platform

import (
	"bytes"
	"strconv"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// handle dispatches one message received from pe. frames are as the client
// sent them: [recipient, "VIP1", user, msg-id, subsystem, args...].
func (p *Platform) handle(pe *peer, frames [][]byte) {
	if len(frames) < vip.MinFrames || !bytes.Equal(frames[vip.FrameSignature], vip.SignatureFrame) {
		p.protocolError(pe, frames, "message must be [recipient, \"VIP1\", user, msg-id, subsystem, args...]")
		return
	}
	if len(frames[vip.FrameMsgID]) > vip.MaxMsgID {
		p.protocolError(pe, frames, "msg-id longer than 64 bytes")
		return
	}
	if len(frames[vip.FramePeer]) == 0 {
		p.handlePlatform(pe, frames)
		return
	}
	if !pe.welcomed.Load() {
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodePermission, "say hello first"), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
		return
	}
	if string(frames[vip.FrameSubsystem]) != vip.SubRPC {
		p.protocolError(pe, frames, "only the RPC subsystem can be addressed to a peer")
		return
	}
	p.routeRPC(pe, frames)
}

// handlePlatform serves a message addressed to the platform itself.
func (p *Platform) handlePlatform(pe *peer, frames [][]byte) {
	sub := string(frames[vip.FrameSubsystem])
	switch sub {
	case vip.SubHello:
		p.hello(pe, frames)
		return
	case vip.SubPing:
		if msg := p.pingTooLarge(pe, frames); msg != "" {
			p.protocolError(pe, frames, msg)
			return
		}
		out := make([][]byte, len(frames))
		copy(out, frames)
		out[vip.FrameUser] = vip.Empty
		out[vip.FrameSubsystem] = []byte(vip.SubPong)
		p.reply(pe, out)
		return
	case vip.SubQuery:
		p.query(pe, frames)
		return
	}
	if !pe.welcomed.Load() {
		p.reply(pe, errorFrames(frames[vip.FrameMsgID], errorf(rpc.CodePermission, "say hello first"), frames[vip.FramePeer], frames[vip.FrameSubsystem]))
		return
	}
	switch sub {
	case vip.SubPeerlist:
		p.peerlist(pe, frames)
	case vip.SubRPC:
		p.export(pe, frames)
	case vip.SubPubsub:
		p.pubsub(pe, frames)
	case vip.SubConfig:
		p.configOp(pe, frames)
	default:
		p.protocolError(pe, frames, "unknown subsystem "+quote(frames[vip.FrameSubsystem]))
	}
}

// pingTooLarge says why a ping's arguments are over the limit (MaxPing,
// or MaxPingBeforeHello before the peer has been welcomed), or "".
func (p *Platform) pingTooLarge(pe *peer, frames [][]byte) string {
	var n int
	for _, f := range frames[vip.FrameArgs:] {
		n += len(f)
	}
	limit, when := p.cfg.limits.MaxPing, ""
	if !pe.welcomed.Load() {
		limit, when = p.cfg.limits.MaxPingBeforeHello, " before hello"
	}
	if n <= limit {
		return ""
	}
	return "ping arguments of " + strconv.Itoa(n) + " bytes are over the limit of " + strconv.Itoa(limit) + when
}

// routeRPC enforces and forwards an RPC message addressed to a peer.
func (p *Platform) routeRPC(pe *peer, frames [][]byte) {
	if len(frames) < vip.FrameArgs+1 {
		p.protocolError(pe, frames, "RPC needs an operation frame")
		return
	}
	op := frames[vip.FrameArgs]
	switch string(op) {
	case vip.OpCall, vip.OpNotify:
		p.call(pe, frames, string(op) == vip.OpNotify)
	case vip.OpResult, vip.OpError:
		p.replyTo(pe, frames)
	case vip.OpCancel:
		p.cancelCall(pe, frames)
	default:
		p.protocolError(pe, frames, "unknown RPC operation "+quote(op))
	}
}

// forward stamps the sender's identity and user on frames and queues them
// towards to, and reports whether it did. A full queue is reported to the
// sender with errno 105.
func (p *Platform) forward(from, to *peer, frames [][]byte) bool {
	recipient := frames[vip.FramePeer]
	frames[vip.FramePeer] = from.identityBytes
	frames[vip.FrameUser] = from.userBytes
	err := to.sendFrom(from, frames)
	if err == nil {
		return true
	}
	if full(err) {
		p.stats.dropped.Add(1)
	}
	if len(frames[vip.FrameMsgID]) > 0 {
		var e *wireError
		switch err {
		case errQueueFull:
			e = errorf(rpc.CodeOverloaded, "queue of "+quote(to.identityBytes)+" is full")
		case errUserBudget, errPlatformBudget:
			e = errorf(rpc.CodeOverloaded, quote(to.identityBytes)+" cannot take more now: "+err.Error())
		default:
			e = errorf(rpc.CodeNoRoute, quote(to.identityBytes)+" is disconnecting")
		}
		p.reply(from, errorFrames(frames[vip.FrameMsgID], e, recipient, frames[vip.FrameSubsystem]))
	}
	return false
}

// reply sends a message from the platform to pe. If pe's queue is full the
// message is dropped: the platform never blocks on a slow peer.
func (p *Platform) reply(pe *peer, frames [][]byte) {
	if err := pe.sendFrom(pe, frames); full(err) {
		p.stats.dropped.Add(1)
		p.log.Debug("dropped reply to a full queue", "identity", pe.identity, "user_id", pe.userID, "reason", err)
	}
}

// protocolError answers a malformed message with errno 71 and closes the
// connection after maxProtocolErrors of them.
func (p *Platform) protocolError(pe *peer, frames [][]byte, text string) {
	pe.protoErrs++
	var msgID, recipient, subsystem []byte
	if len(frames) >= vip.MinFrames {
		msgID, recipient, subsystem = frames[vip.FrameMsgID], frames[vip.FramePeer], frames[vip.FrameSubsystem]
		if len(msgID) > vip.MaxMsgID {
			msgID = nil
		}
	}
	e := errorFrames(msgID, errorf(rpc.CodeProtocol, text), recipient, subsystem)
	if pe.protoErrs >= maxProtocolErrors {
		pe.sendFinal(e, "too many protocol errors")
		return
	}
	p.reply(pe, e)
}

// quote formats a peer-supplied name for an error text, bounded in length.
func quote(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strconv.Quote(string(b))
}
