package platform

import (
	"bytes"
	"strconv"

	"github.com/capbus/capbus/rpc"
)

// handle dispatches one message received from pe. frames are as the client
// sent them: [recipient, "VIP1", user, msg-id, subsystem, args...].
func (p *Platform) handle(pe *peer, frames [][]byte) {
	if len(frames) < minFrames || !bytes.Equal(frames[fSignature], sigVIP1) {
		p.protocolError(pe, frames, "message must be [recipient, \"VIP1\", user, msg-id, subsystem, args...]")
		return
	}
	if len(frames[fMsgID]) > maxMsgID {
		p.protocolError(pe, frames, "msg-id longer than 64 bytes")
		return
	}
	if len(frames[fRecipient]) == 0 {
		p.handlePlatform(pe, frames)
		return
	}
	if !pe.welcomed.Load() {
		p.reply(pe, errorFrames(frames[fMsgID], errorf(rpc.CodePermission, "say hello first"), frames[fRecipient], frames[fSubsystem]))
		return
	}
	if string(frames[fSubsystem]) != subRPC {
		p.protocolError(pe, frames, "only the RPC subsystem can be addressed to a peer")
		return
	}
	p.routeRPC(pe, frames)
}

// handlePlatform serves a message addressed to the platform itself.
func (p *Platform) handlePlatform(pe *peer, frames [][]byte) {
	sub := string(frames[fSubsystem])
	switch sub {
	case subHello:
		p.hello(pe, frames)
		return
	case subPing:
		out := make([][]byte, len(frames))
		copy(out, frames)
		out[fUser] = empty
		out[fSubsystem] = []byte(subPong)
		p.reply(pe, out)
		return
	case subQuery:
		p.query(pe, frames)
		return
	}
	if !pe.welcomed.Load() {
		p.reply(pe, errorFrames(frames[fMsgID], errorf(rpc.CodePermission, "say hello first"), frames[fRecipient], frames[fSubsystem]))
		return
	}
	switch sub {
	case subPeerlist:
		p.peerlist(pe, frames)
	case subRPC:
		p.export(pe, frames)
	case subPubsub:
		p.pubsub(pe, frames)
	default:
		p.protocolError(pe, frames, "unknown subsystem "+quote(frames[fSubsystem]))
	}
}

// routeRPC enforces and forwards an RPC message addressed to a peer.
func (p *Platform) routeRPC(pe *peer, frames [][]byte) {
	if len(frames) < fArgs+1 {
		p.protocolError(pe, frames, "RPC needs an operation frame")
		return
	}
	op := frames[fArgs]
	switch string(op) {
	case "call", "notify":
		p.call(pe, frames, string(op) == "notify")
	case "result", "error":
		p.mu.RLock()
		to := p.byIdentity[string(frames[fRecipient])]
		p.mu.RUnlock()
		if to == nil {
			p.reply(pe, errorFrames(frames[fMsgID], errorf(rpc.CodeNoRoute, "no route to "+quote(frames[fRecipient])), frames[fRecipient], frames[fSubsystem]))
			return
		}
		p.forward(pe, to, frames)
	default:
		p.protocolError(pe, frames, "unknown RPC operation "+quote(op))
	}
}

// forward stamps the sender's identity and user on frames and queues them
// towards to. A full queue is reported to the sender with errno 105.
func (p *Platform) forward(from, to *peer, frames [][]byte) {
	frames[fRecipient] = from.identityBytes
	frames[fUser] = from.userBytes
	if err := to.send(frames); err != nil && len(frames[fMsgID]) > 0 {
		e := errorf(rpc.CodeOverloaded, "queue of "+quote(to.identityBytes)+" is full")
		if err != errQueueFull {
			e = errorf(rpc.CodeNoRoute, quote(to.identityBytes)+" is disconnecting")
		}
		p.reply(from, errorFrames(frames[fMsgID], e, to.identityBytes, frames[fSubsystem]))
	}
}

// reply queues a message from the platform towards pe. If pe's queue is full
// the message is dropped: the platform never blocks on a slow peer.
func (p *Platform) reply(pe *peer, frames [][]byte) {
	if err := pe.send(frames); err == errQueueFull {
		p.log.Debug("dropped reply to a full queue", "identity", pe.identity, "user_id", pe.userID)
	}
}

// protocolError answers a malformed message with errno 71 and closes the
// connection after maxProtocolErrors of them.
func (p *Platform) protocolError(pe *peer, frames [][]byte, text string) {
	pe.protoErrs++
	var msgID, recipient, subsystem []byte
	if len(frames) >= minFrames {
		msgID, recipient, subsystem = frames[fMsgID], frames[fRecipient], frames[fSubsystem]
		if len(msgID) > maxMsgID {
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
