package agent

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// export is one exported method.
type export struct {
	decl rpc.Export
	h    rpc.Handler
}

// Export serves h as method name. The options declare what a caller must
// hold, all of it: rpc.Allow("can_read_temp") for capabilities,
// rpc.AllowRoles("admin") for roles; rpc.Params names the positional
// parameters (a handler made by rpc.Func on a struct names them itself).
// The platform enforces the declaration, together with what auth.json adds
// for the method, before the call reaches the agent.
//
// Exporting a name again replaces the previous export. Exports registered
// before Run are sent with the hello; while the agent is connected, Export
// also pushes the new declaration to the platform and waits (up to the call
// timeout) for it to be accepted, returning the platform's refusal if any.
// While disconnected it returns nil: the export is sent on the next
// connection.
func (a *Agent) Export(name string, h rpc.Handler, opts ...rpc.ExportOption) error {
	if name == "" || len(name) > vip.MaxMethodName {
		return fmt.Errorf("agent: Export(%q): a method name has 1 to 256 bytes", name)
	}
	if h == nil {
		return fmt.Errorf("agent: Export(%q): nil handler", name)
	}
	decl := rpc.NewExport(name, opts...)
	if len(decl.Params) == 0 {
		if pn, ok := h.(rpc.ParamNamer); ok {
			decl.Params = append(decl.Params, pn.ParamNames()...)
		}
	}
	a.mu.Lock()
	a.exports[name] = &export{decl: decl, h: h}
	a.exportsV++
	s := a.sess
	a.mu.Unlock()
	if s == nil {
		return nil
	}
	return a.pushExports(s, []rpc.Export{decl})
}

// exportTable returns the declarations of all exports, sorted by name.
// a.mu must be held.
func (a *Agent) exportTable() []rpc.Export {
	t := make([]rpc.Export, 0, len(a.exports))
	for _, e := range a.exports {
		t = append(t, e.decl)
	}
	slices.SortFunc(t, func(x, y rpc.Export) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	return t
}

// pushExports sends decls (all exports when nil) on s with RPC "export".
func (a *Agent) pushExports(s *session, decls []rpc.Export) error {
	if decls == nil {
		a.mu.Lock()
		decls = a.exportTable()
		a.mu.Unlock()
	}
	payload, err := rpc.Marshal(decls)
	if err != nil {
		return fmt.Errorf("agent: encode exports: %w", err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, a.cfg.callTimeout)
	defer cancel()
	_, err = s.request(ctx, &message{Subsys: vip.SubRPC, Args: [][]byte{[]byte(vip.OpExport), payload}})
	if err != nil {
		a.log.Error("capbus agent: platform refused exports", "err", err)
		return err
	}
	return nil
}

// serveCall admits an incoming call or notify, ["call"|"notify", method,
// ARGS]. If a handler slot is free it returns the call, with run true, for
// the reader to run (see session.read); otherwise the call goes to a
// handler goroutine (one waiting for work, or a new one), where it waits
// for a slot in a bounded queue; beyond the queue the call is refused with
// CodeOverloaded. It never blocks.
func (a *Agent) serveCall(s *session, m message) (j callJob, run bool) {
	if len(m.Args) <= vip.RPCArgMethod {
		a.log.Warn("capbus agent: dropping call without a method", "caller", m.Peer)
		return callJob{}, false
	}
	notify := m.arg(vip.RPCArgOp) == vip.OpNotify
	method := m.arg(vip.RPCArgMethod)
	var payload []byte
	if len(m.Args) > vip.RPCArgPayload {
		payload = m.Args[vip.RPCArgPayload]
	}
	caller := rpc.Caller{UserID: m.User, Identity: m.Peer}

	// Counted under callsMu, so that drain's Wait never races an Add.
	s.callsMu.Lock()
	draining := s.draining.Load()
	if !draining {
		s.calls.Add(1)
	}
	s.callsMu.Unlock()
	if draining {
		if !notify {
			a.sendReply(s, m, method, nil, rpc.NewError(rpc.CodeUnavailable, "agent "+a.identity+" is shutting down"))
		}
		return callJob{}, false
	}
	if !a.gate.admit() {
		s.calls.Done()
		a.log.Warn("capbus agent: handler queue full; refusing call", "method", method, "caller", caller.Identity)
		if !notify {
			a.sendReply(s, m, method, nil, rpc.NewError(rpc.CodeOverloaded, "agent "+a.identity+": too many calls in progress"))
		}
		return callJob{}, false
	}
	// Counted from now, not from when a goroutine runs it: handlers that
	// are ready to run together then send their replies together.
	s.busy.Add(1)
	j = callJob{s: s, m: m, method: method, notify: notify, caller: caller, payload: payload}
	if a.gate.tryAcquire() {
		return j, true // the reader runs it
	}
	handed := false
	s.workMu.Lock()
	if !s.workShut {
		select {
		case s.work <- j: // a waiting handler goroutine took it
			handed = true
		default:
		}
	}
	s.workMu.Unlock()
	if !handed {
		a.handlers.Add(1) // the reader calling holds a count
		go a.worker(j)
	}
	return callJob{}, false
}

// callJob is a call admitted for a handler.
type callJob struct {
	s       *session
	m       message
	method  string
	notify  bool
	caller  rpc.Caller
	payload []byte
}

// worker runs j, then, while fewer than the concurrency limit of handler
// goroutines are waiting, waits for the next call of j's session until the
// session ends (session.close closes its work channel). A waiting goroutine
// keeps the stack that handlers grew, which a new goroutine would have to
// grow again (runtime.newstack was 7% of a busy callee's CPU). It waits on
// that one channel only: a select that also watched the session's context
// cost the callee about 6% of its CPU in lock contention.
func (a *Agent) worker(j callJob) {
	defer a.handlers.Done()
	a.runCall(j)
	a.waitForCalls(j.s)
}

// waitForCalls runs the calls of s handed to it, while fewer than the
// concurrency limit of handler goroutines wait, until s ends.
func (a *Agent) waitForCalls(s *session) {
	for {
		if a.idleWorkers.Add(1) > int64(a.cfg.concurrency) {
			a.idleWorkers.Add(-1)
			return
		}
		j, ok := <-s.work
		a.idleWorkers.Add(-1)
		if !ok {
			return
		}
		a.runCall(j)
	}
}

// runCall runs the handler of an admitted call, once a slot is free, and
// sends its reply.
func (a *Agent) runCall(j callJob) {
	a.gate.acquire()
	a.runHolding(j.s.ctx, j)
}

// runHolding is runCall once the call holds a slot; the handler's context
// derives from ctx (the session's, or the reader's mark of it).
func (a *Agent) runHolding(ctx context.Context, j callJob) {
	s := j.s
	defer s.busy.Add(-1)
	defer s.calls.Done()
	defer a.gate.leave()
	defer a.gate.release()
	if s.ctx.Err() != nil {
		return // the session ended while the call waited for a slot
	}

	result, err := a.invoke(ctx, j.method, j.caller, j.payload)
	if j.notify {
		if err != nil {
			a.log.Warn("capbus agent: notify handler failed", "method", j.method, "caller", j.caller.Identity, "err", err)
		}
		return
	}
	a.sendReply(s, j.m, j.method, result, err)
}

// invoke decodes the arguments and runs the handler of method, turning a
// panic into a CodeInternal error. The result is msgpack-encoded.
func (a *Agent) invoke(ctx context.Context, method string, caller rpc.Caller, payload []byte) (result []byte, err error) {
	a.mu.RLock()
	e := a.exports[method]
	a.mu.RUnlock()
	if e == nil {
		return nil, rpc.Errorf(rpc.CodeNotFound, "agent %s does not export %q", a.identity, method)
	}
	req, err := rpc.DecodeCall(method, payload)
	if err != nil {
		return nil, err
	}
	req.Caller = caller
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("capbus agent: handler panicked", "method", method,
				"caller", caller.Identity, "user_id", caller.UserID,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			result, err = nil, rpc.Errorf(rpc.CodeInternal, "handler of %q panicked", method)
		}
	}()
	v, err := e.h.ServeRPC(rpc.WithCaller(ctx, caller), req)
	if err != nil {
		return nil, err
	}
	if result, err = rpc.Marshal(v); err != nil {
		return nil, rpc.Errorf(rpc.CodeInternal, "cannot encode the result of %q (%T): %v", method, v, err)
	}
	return result, nil
}

// sendReply answers call m with result or err.
func (a *Agent) sendReply(s *session, m message, method string, result []byte, err error) {
	r := message{Peer: m.Peer, RawID: m.RawID, Subsys: vip.SubRPC}
	if err != nil {
		payload, encErr := rpc.EncodeError(rpc.FromError(err))
		if encErr != nil {
			a.log.Error("capbus agent: cannot encode error reply", "method", method, "err", encErr)
			return
		}
		r.Args = [][]byte{frameError, m.Args[vip.RPCArgMethod], payload}
	} else {
		r.Args = [][]byte{frameResult, m.Args[vip.RPCArgMethod], result}
	}
	if err := s.send(s.ctx, &r); err != nil {
		a.log.Debug("capbus agent: reply not sent", "method", method, "caller", m.Peer, "err", err)
	}
}
