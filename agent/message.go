package agent

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// message is one VIP message. Peer is the recipient of an outgoing message
// and the sender of an incoming one; User is the sender's user id stamped
// by the platform (incoming only). ID is the msg-id.
type message struct {
	Peer   string
	User   string
	ID     []byte
	Subsys string
	Args   [][]byte

	peerFrame []byte // incoming: the sender's frame, to address a reply
}

// frames returns the frames of an outgoing message:
// [recipient, "VIP1", "", msg-id, subsystem, args...].
func (m *message) frames() [][]byte {
	f := make([][]byte, 0, vip.FrameArgs+len(m.Args))
	f = append(f, []byte(m.Peer), vip.SignatureFrame, vip.Empty, m.ID, subsystemFrame(m.Subsys))
	return append(f, m.Args...)
}

var subsystemFrames = func() map[string][]byte {
	m := make(map[string][]byte, len(vip.Subsystems))
	for _, s := range vip.Subsystems {
		m[s] = []byte(s)
	}
	return m
}()

func subsystemFrame(s string) []byte {
	if f, ok := subsystemFrames[s]; ok {
		return f
	}
	return []byte(s)
}

// parseMessage parses the frames of an incoming message:
// [sender, "VIP1", user, msg-id, subsystem, args...]. names interns the
// sender and user.
func parseMessage(frames [][]byte, names interner) (message, error) {
	if len(frames) < vip.MinFrames {
		return message{}, fmt.Errorf("%d frames, want at least %d", len(frames), vip.MinFrames)
	}
	if !bytes.Equal(frames[vip.FrameSignature], vip.SignatureFrame) {
		return message{}, fmt.Errorf("signature %q, want %q", frames[vip.FrameSignature], vip.Signature)
	}
	m := message{Args: frames[vip.FrameArgs:], ID: frames[vip.FrameMsgID]}
	m.Peer = names.str(frames[vip.FramePeer])
	m.peerFrame = frames[vip.FramePeer]
	m.User = names.str(frames[vip.FrameUser])
	m.Subsys = internSubsystem(frames[vip.FrameSubsystem])
	return m, nil
}

func internSubsystem(b []byte) string {
	for _, s := range vip.Subsystems {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// interner turns the peer and user names of incoming messages into strings
// without allocating for the ones seen before. Only the reader goroutine
// uses it.
type interner map[string]string

// maxInterned bounds the names an interner keeps.
const maxInterned = 4096

func (in interner) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < maxInterned {
		in[s] = s
	}
	return s
}

// arg returns Args[i] as a string, "" when absent.
func (m *message) arg(i int) string {
	if i < len(m.Args) {
		return string(m.Args[i])
	}
	return ""
}

// errorOf converts an incoming error-subsystem message,
// [errno, text, recipient, subsystem, DATA], to an *rpc.Error.
func (m *message) errorOf() *rpc.Error {
	code, _ := strconv.Atoi(m.arg(vip.ErrArgErrno))
	e := rpc.NewError(rpc.Code(code), m.arg(vip.ErrArgText))
	if len(m.Args) > vip.ErrArgData && len(m.Args[vip.ErrArgData]) > 0 {
		var data map[string]any
		if err := codec.Unmarshal(m.Args[vip.ErrArgData], &data); err == nil {
			for k, v := range data {
				e.WithData(k, v)
			}
		}
	}
	return withContextCause(e)
}

// rpcError decodes the ERROR payload of an RPC error reply.
func rpcError(payload []byte) *rpc.Error {
	p, err := codec.DecodeError(payload)
	if err != nil {
		return rpc.Errorf(rpc.CodeProtocol, "undecodable error reply: %v", err)
	}
	e := rpc.NewError(rpc.Code(p.Code), p.Message)
	for k, v := range p.Data {
		e.WithData(k, v)
	}
	return withContextCause(e)
}

// withContextCause makes a timeout or a cancellation reported by the other
// side match the context errors too, as the caller's own do: the call's
// deadline (which travelled with it) passed, or the call was cancelled.
func withContextCause(e *rpc.Error) *rpc.Error {
	switch e.Code() {
	case rpc.CodeTimeout:
		return e.WithCause(context.DeadlineExceeded)
	case rpc.CodeCanceled:
		return e.WithCause(context.Canceled)
	}
	return e
}

// errorPayload encodes err as the ERROR payload of an RPC error reply.
func errorPayload(err error) []byte {
	e := rpc.FromError(err)
	return codec.EncodeError(codec.ErrorPayload{Code: int(e.Code()), Message: e.Message(), Data: e.Data()})
}
