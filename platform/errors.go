package platform

import (
	"errors"

	"github.com/capbus/capbus/rpc"
	"github.com/vmihailenco/msgpack/v5"
)

// Version is the platform version reported by welcome and query "version".
const Version = "capbus/0.1.0"

// Errors returned by New and Run.
var (
	// ErrNoPolicy is returned by New when no policy source was given
	// (WithAuthFile, WithPolicyStore or WithPolicy).
	ErrNoPolicy = errors.New("platform: no policy: use WithAuthFile, WithPolicyStore or WithPolicy")
	// ErrAlreadyRun is returned by a second call of Run.
	ErrAlreadyRun = errors.New("platform: Run called twice")
)

// Wire constants of docs/PROTOCOL.md. They are never modified.
var (
	sigVIP1 = []byte("VIP1")
	empty   = []byte{}
)

// Subsystem and operation names.
const (
	subHello    = "hello"
	subWelcome  = "welcome"
	subPing     = "ping"
	subPong     = "pong"
	subPeerlist = "peerlist"
	subRPC      = "RPC"
	subPubsub   = "pubsub"
	subQuery    = "query"
	subError    = "error"
)

// Frame indexes of a message as a client sends it.
const (
	fRecipient = 0
	fSignature = 1
	fUser      = 2
	fMsgID     = 3
	fSubsystem = 4
	fArgs      = 5
	minFrames  = 5
	maxMsgID   = 64
	maxIdent   = 128
	// maxProtocolErrors is how many protocol errors a connection may make
	// before it is closed.
	maxProtocolErrors = 16
)

// wireError is a refusal by the platform, sent on the error subsystem.
type wireError struct {
	code rpc.Code
	text string
	data map[string]any
}

func (e *wireError) Error() string { return e.code.String() + ": " + e.text }

func errorf(code rpc.Code, text string) *wireError { return &wireError{code: code, text: text} }

// errorFrames builds ["", "VIP1", "", msg-id, "error", errno, text,
// recipient, subsystem, DATA].
func errorFrames(msgID []byte, e *wireError, recipient, subsystem []byte) [][]byte {
	out := [][]byte{empty, sigVIP1, empty, clone(msgID), []byte(subError),
		[]byte(e.code.Wire()), []byte(e.text), clone(recipient), clone(subsystem)}
	if len(e.data) > 0 {
		if data, err := msgpack.Marshal(e.data); err == nil {
			out = append(out, data)
		}
	}
	return out
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return empty
	}
	return append([]byte(nil), b...)
}
