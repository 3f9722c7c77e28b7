package platform

import (
	"errors"
	"strconv"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
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
	// ErrConnectionLimit is matched by the reason a handshake was refused
	// for a connection limit (Limits). That reason matches curve.ErrBusy
	// too: the client is told to try again later (ERROR "300"), and the
	// refusal does not count against its address.
	ErrConnectionLimit = errors.New("connection limit")
)

// maxProtocolErrors is how many protocol errors a connection may make
// before it is closed.
const maxProtocolErrors = 16

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
	// The args follow vip.ErrArgErrno, vip.ErrArgText, vip.ErrArgRecipient,
	// vip.ErrArgSubsystem and vip.ErrArgData.
	out := [][]byte{vip.Empty, vip.SignatureFrame, vip.Empty, clone(msgID), []byte(vip.SubError),
		[]byte(strconv.Itoa(int(e.code))), []byte(e.text), clone(recipient), clone(subsystem)}
	if len(e.data) > 0 {
		if data, err := codec.Marshal(e.data); err == nil {
			out = append(out, data)
		}
	}
	return out
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return vip.Empty
	}
	return append([]byte(nil), b...)
}

// limitError is the reason a handshake was refused for a connection
// limit: it matches ErrConnectionLimit and curve.ErrBusy.
type limitError struct{ msg string }

func (e *limitError) Error() string { return "connection limit: " + e.msg }

func (e *limitError) Is(target error) bool {
	return target == ErrConnectionLimit || target == curve.ErrBusy
}
