package agent

import (
	"context"
	"errors"
	"time"

	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// Constant frames shared by every message sent: the transport only reads
// the frames it is given.
var (
	frameCall   = []byte(vip.OpCall)
	frameNotify = []byte(vip.OpNotify)
	frameResult = []byte(vip.OpResult)
	frameRPC    = []byte(vip.SubRPC)
	frameError  = []byte(vip.OpError)
	frameCancel = []byte(vip.OpCancel)
)

// Call calls method on the agent peer through the platform and returns its
// result, still encoded; decode it with rpc.Raw.Decode, or use CallAs.
//
// args are the positional arguments; a trailing rpc.Kwargs holds keyword
// arguments. The call ends with the context: its deadline, or the agent's
// call timeout (WithCallTimeout) when it has none. The deadline travels
// with the call, so the callee's handler stops at it too; cancelling ctx
// cancels the handler's context at the callee.
//
// Errors are *rpc.Error values, matched with errors.Is against the rpc
// sentinels and read with errors.As:
//
//   - rpc.ErrNoRoute: no connected agent is called peer;
//   - rpc.ErrNotFound: peer does not export method;
//   - rpc.ErrUnauthorized: the caller lacks what method requires
//     (Required and Missing say what);
//   - rpc.ErrInvalidArgs: the arguments do not fit the method;
//   - rpc.ErrApplication: the handler returned an error (its text is the
//     Message), unless it returned an *rpc.Error of its own;
//   - rpc.ErrInternal: the handler panicked;
//   - rpc.ErrTimeout, rpc.ErrCanceled: the context ended first (the error
//     also matches context.DeadlineExceeded or context.Canceled);
//   - rpc.ErrUnavailable: the agent is not connected, its connection was
//     lost or the callee disconnected while the call was in flight (the call
//     may or may not have run), or the callee is shutting down;
//   - rpc.ErrOverloaded: the callee's handler queue, or a queue of the
//     platform, is full.
func (a *Agent) Call(ctx context.Context, peer, method string, args ...any) (rpc.Raw, error) {
	if err := checkTarget(peer, method); err != nil {
		return nil, err
	}
	payload, err := encodeCall(args)
	if err != nil {
		return nil, located(err, peer, method)
	}
	var timeout time.Duration
	if _, ok := ctx.Deadline(); !ok {
		timeout = a.cfg.callTimeout
	}
	s, err := a.current(ctx)
	if err != nil {
		return nil, located(err, peer, method)
	}
	// One slice for the frames of ARGS, room left for the TIMEOUT frame.
	fargs := make([][]byte, 3, 4)
	fargs[0], fargs[1], fargs[2] = frameCall, []byte(method), payload
	r, err := s.request(ctx, &message{Peer: peer, Subsys: vip.SubRPC, Args: fargs}, timeout)
	if err != nil {
		return nil, located(err, peer, method)
	}
	var op []byte
	if len(r.Args) > vip.RPCArgOp {
		op = r.Args[vip.RPCArgOp]
	}
	switch string(op) {
	case vip.OpResult:
		if len(r.Args) <= vip.RPCArgPayload {
			return nil, nil
		}
		return rpc.Raw(r.Args[vip.RPCArgPayload]), nil
	case vip.OpError:
		var p []byte
		if len(r.Args) > vip.RPCArgPayload {
			p = r.Args[vip.RPCArgPayload]
		}
		return nil, located(rpcError(p), peer, method)
	}
	return nil, located(rpc.Errorf(rpc.CodeProtocol, "unexpected RPC reply %q", r.arg(0)), peer, method)
}

// CallAs calls method on peer like Agent.Call and decodes the result into
// an R. A result that does not decode into R is an *rpc.Error with
// rpc.CodeInternal that also matches rpc.ErrResultType: the call ran, its
// result is of another type.
//
//	t, err := agent.CallAs[float64](ctx, a, "weather", "temperature", "Paris")
func CallAs[R any](ctx context.Context, a *Agent, peer, method string, args ...any) (R, error) {
	var r R
	raw, err := a.Call(ctx, peer, method, args...)
	if err != nil {
		return r, err
	}
	if err := raw.Decode(&r); err != nil {
		return r, located(rpc.Errorf(rpc.CodeInternal, "result (%s) does not decode into %T: %w",
			codec.Kind(raw), r, rpc.ErrResultType), peer, method)
	}
	return r, nil
}

// Notify calls method on peer without waiting for a reply or an error: the
// platform drops (and audits) a notification it refuses, and the callee
// does not answer. It returns once the notification is queued for sending,
// or an error when the agent is not connected or an argument cannot be
// encoded.
func (a *Agent) Notify(ctx context.Context, peer, method string, args ...any) error {
	if err := checkTarget(peer, method); err != nil {
		return err
	}
	payload, err := encodeCall(args)
	if err != nil {
		return located(err, peer, method)
	}
	ctx, cancel := a.bound(ctx)
	defer cancel()
	s, err := a.current(ctx)
	if err != nil {
		return located(err, peer, method)
	}
	err = s.send(ctx, &message{Peer: peer, Subsys: vip.SubRPC,
		Args: [][]byte{frameNotify, []byte(method), payload}})
	return located(err, peer, method)
}

// encodeCall encodes the arguments of a call; a trailing rpc.Kwargs holds
// the keyword arguments.
func encodeCall(args []any) ([]byte, error) {
	var kw map[string]any
	if n := len(args); n > 0 {
		if k, ok := args[n-1].(rpc.Kwargs); ok {
			kw, args = k, args[:n-1]
			if kw == nil {
				kw = map[string]any{}
			}
		}
	}
	b, err := codec.EncodeCall(args, kw)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeInvalidArgs, "cannot encode the arguments: %v", err)
	}
	return b, nil
}

// bound applies the call timeout to a context without a deadline.
func (a *Agent) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, a.cfg.callTimeout)
}

// getTimer returns a timer from the agent's pool, set to fire after d.
func (a *Agent) getTimer(d time.Duration) *time.Timer {
	if t, ok := a.timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and returns it to the pool. Since Go 1.23 a stopped
// timer's channel holds no stale value, so a later Reset is clean.
func (a *Agent) putTimer(t *time.Timer) {
	t.Stop()
	a.timers.Put(t)
}

// located names the call in an *rpc.Error.
func located(err error, peer, method string) error {
	var e *rpc.Error
	if errors.As(err, &e) {
		e.WithCall(peer, method)
	}
	return err
}

// checkTarget refuses an empty peer (which would address the platform) or
// method.
func checkTarget(peer, method string) error {
	if peer == "" || method == "" {
		return located(rpc.NewError(rpc.CodeInvalidArgs, "peer and method must not be empty"), peer, method)
	}
	return nil
}
