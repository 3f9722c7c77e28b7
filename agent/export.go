package agent

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/capbus/capbus/internal/codec"
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
// timeout) for it to be accepted, returning the platform's refusal if any
// (the platform's policy and admission hook judge exports made after hello
// as they judge those of hello). While disconnected it returns nil: the
// export is sent on the next connection.
func (a *Agent) Export(name string, h rpc.Handler, opts ...rpc.ExportOption) error {
	if name == "" || len(name) > vip.MaxMethodName {
		return fmt.Errorf("agent: Export(%q): a method name has 1 to 256 bytes", name)
	}
	if h == nil {
		return fmt.Errorf("agent: Export(%q): nil handler", name)
	}
	decl := rpc.NewExport(name, opts...)
	if slices.Contains(decl.Capabilities, "") || slices.Contains(decl.Roles, "") || slices.Contains(decl.Params, "") {
		return fmt.Errorf("agent: Export(%q): an empty name in rpc.Allow, rpc.AllowRoles or rpc.Params (capabilities %q, roles %q, params %q)", name, decl.Capabilities, decl.Roles, decl.Params)
	}
	if pn, ok := h.(rpc.ParamNamer); ok {
		own := pn.ParamNames()
		switch {
		case len(decl.Params) == 0:
			decl.Params = append(decl.Params, own...)
		case len(own) > 0 && !slices.Equal(decl.Params, own):
			// auth.json's parameter restrictions would judge other values
			// than the handler receives.
			return fmt.Errorf("agent: Export(%q): rpc.Params %q differ from the handler's own parameters %q (its struct's fields, named by their msgpack tags); drop rpc.Params or give them in that order", name, decl.Params, own)
		}
	}
	a.mu.Lock()
	prev := a.exports[name]
	a.exports[name] = &export{decl: decl, h: h}
	a.exportsV++
	s := a.sess
	a.mu.Unlock()
	if s == nil {
		return nil
	}
	if err := a.pushExports(s, []rpc.Export{decl}); err != nil {
		// The platform refused it: the agent does not serve it either.
		a.mu.Lock()
		if prev != nil {
			a.exports[name] = prev
		} else {
			delete(a.exports, name)
		}
		a.exportsV++
		a.mu.Unlock()
		return err
	}
	if len(decl.Roles) > 0 {
		a.warnRoles(s, []string{name})
	}
	return nil
}

// exportTable returns the wire declarations of all exports, sorted by
// name. a.mu must be held.
func (a *Agent) exportTable() []vip.Export {
	t := make([]vip.Export, 0, len(a.exports))
	for _, e := range a.exports {
		t = append(t, vip.ExportOf(e.decl))
	}
	slices.SortFunc(t, func(x, y vip.Export) int { return strings.Compare(x.Name, y.Name) })
	return t
}

// pushExports sends decls (all exports when nil) on s with RPC "export".
func (a *Agent) pushExports(s *session, decls []rpc.Export) error {
	var wire []vip.Export
	if decls == nil {
		a.mu.Lock()
		wire = a.exportTable()
		a.mu.Unlock()
	} else {
		for _, d := range decls {
			wire = append(wire, vip.ExportOf(d))
		}
	}
	payload, err := codec.Marshal(wire)
	if err != nil {
		return fmt.Errorf("agent: encode exports: %w", err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, a.cfg.callTimeout)
	defer cancel()
	_, err = s.request(ctx, &message{Subsys: vip.SubRPC, Args: [][]byte{[]byte(vip.OpExport), payload}}, 0)
	if err != nil {
		a.log.Error("capbus agent: platform refused exports", "err", err)
		return err
	}
	return nil
}

// call is an incoming call admitted for a worker.
type call struct {
	m       message
	method  string
	exp     *export // the method's export, nil if there is none
	notify  bool
	payload []byte
	ctx     callCtx // the call's own: ends at its deadline, on cancel, with the session
	key     callKey
}

// serve admits an incoming call or notify, ["call"|"notify", method, ARGS,
// TIMEOUT]: it gives it a context of its own and hands it to an idle
// worker, starts a worker (up to the concurrency limit), or queues it (up
// to the queue limit); beyond, the call is refused with CodeOverloaded. It
// never blocks.
func (s *session) serve(m message) {
	a := s.a
	if len(m.Args) <= vip.RPCArgMethod {
		a.log.Warn("capbus agent: dropping call without a method", "caller", m.Peer)
		return
	}
	c := &call{m: m, notify: string(m.Args[vip.RPCArgOp]) == vip.OpNotify}
	// The export, looked up once; its name spares converting the frame.
	s.a.mu.RLock()
	c.exp = s.a.exports[string(m.Args[vip.RPCArgMethod])]
	s.a.mu.RUnlock()
	if c.exp != nil {
		c.method = c.exp.decl.Name
	} else {
		c.method = string(m.Args[vip.RPCArgMethod])
	}
	if len(m.Args) > vip.RPCArgPayload {
		c.payload = m.Args[vip.RPCArgPayload]
	}
	var deadline time.Time
	if len(m.Args) > vip.RPCArgTimeout {
		if ms, ok := parseMillis(m.Args[vip.RPCArgTimeout]); ok {
			deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
		}
	}
	c.ctx.init(rpc.WithCaller(s.ctx, rpc.Principal{UserID: m.User, Identity: m.Peer}), deadline)

	if s.inline(c) {
		return
	}
	s.qmu.Lock()
	switch {
	case s.draining || s.shut:
		s.qmu.Unlock()
		c.ctx.end()
		s.refuse(c, rpc.NewError(rpc.CodeUnavailable, "agent "+a.identity+" is shutting down"))
		return
	case s.idle == 0 && s.workers >= a.cfg.concurrency && len(s.queue) >= a.cfg.queue:
		s.qmu.Unlock()
		c.ctx.end()
		a.log.Warn("capbus agent: handler queue full; refusing call", "method", c.method, "caller", m.Peer)
		s.refuse(c, rpc.NewError(rpc.CodeOverloaded, "agent "+a.identity+": too many calls in progress"))
		return
	}
	s.inflight.Add(1)
	if !c.notify && len(m.ID) > 0 {
		c.key = callKey{m.Peer, string(m.ID)}
		s.mu.Lock()
		s.calls[c.key] = c
		s.mu.Unlock()
	}
	switch {
	case s.idle > 0:
		s.idle--
		s.work <- c // buffered to the limit: an idle worker takes it
	case s.workers < a.cfg.concurrency:
		s.workers++
		a.handlers.Add(1)
		go s.worker(c)
	default:
		s.queue = append(s.queue, c)
	}
	s.qmu.Unlock()
}

// inline runs c on the reader when its method was exported Inline, and
// holds its reply for the reader to write with the others of the burst. It
// reports whether it did.
func (s *session) inline(c *call) bool {
	if c.exp == nil || !c.exp.decl.Inline {
		return false
	}
	s.qmu.Lock()
	stopping := s.draining || s.shut
	s.qmu.Unlock()
	if stopping {
		c.ctx.end()
		s.refuse(c, rpc.NewError(rpc.CodeUnavailable, "agent "+s.a.identity+" is shutting down"))
		return true
	}
	s.busy.Add(1)
	result, err := s.a.invoke(c)
	s.busy.Add(-1)
	c.ctx.end()
	if !c.notify {
		s.held = append(s.held, replyFrames(c, result, err))
	}
	return true
}

// refuse answers c with err, unless it is a notify.
func (s *session) refuse(c *call, err error) {
	if !c.notify {
		s.answer(c, nil, err)
	}
}

// worker runs c, then the calls queued or handed to it, until the session
// ends. Workers are kept while the session lives, so that a busy agent does
// not start a goroutine (and grow its stack) for every call.
func (s *session) worker(c *call) {
	defer s.a.handlers.Done()
	for {
		s.run(c)
		s.qmu.Lock()
		if len(s.queue) > 0 {
			c = s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.qmu.Unlock()
			continue
		}
		if s.shut {
			s.qmu.Unlock()
			return
		}
		s.idle++
		s.qmu.Unlock()
		var ok bool
		if c, ok = <-s.work; !ok {
			return
		}
	}
}

// shutWorkers ends the workers when the session ends: idle ones return,
// queued calls are dropped (their session is gone).
func (s *session) shutWorkers() {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.shut = true
	for _, c := range s.queue {
		c.ctx.end()
		s.inflight.Done()
	}
	s.queue = nil
	close(s.work)
}

// run runs the handler of c and sends its reply.
func (s *session) run(c *call) {
	s.busy.Add(1)
	defer s.busy.Add(-1)
	defer s.inflight.Done()
	defer c.ctx.end()
	if c.key != (callKey{}) {
		defer func() {
			s.mu.Lock()
			delete(s.calls, c.key)
			s.mu.Unlock()
		}()
	}
	if c.ctx.Err() != nil && s.ctx.Err() != nil {
		return // the session ended while the call waited
	}
	result, err := s.a.invoke(c)
	if c.notify {
		if err != nil {
			s.a.log.Warn("capbus agent: notify handler failed", "method", c.method, "caller", c.m.Peer, "err", err)
		}
		return
	}
	s.answer(c, result, err)
}

// invoke decodes the arguments and runs the handler of c's method, turning
// a panic into a CodeInternal error. The result is encoded.
func (a *Agent) invoke(c *call) (result []byte, err error) {
	e := c.exp
	if e == nil {
		return nil, rpc.Errorf(rpc.CodeNotFound, "agent %s does not export %q", a.identity, c.method)
	}
	if err := c.ctx.Err(); err != nil {
		return nil, rpc.FromError(err) // expired or cancelled before it ran
	}
	args, err := codec.DecodeCall(c.payload)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeInvalidArgs, "%s: %v", c.method, err)
	}
	caller, _ := rpc.CallerFrom(&c.ctx)
	req := &rpc.Request{Method: c.method, Caller: caller, Params: e.decl.Params}
	if len(args.Args) > 0 {
		req.Args = make([]rpc.Raw, len(args.Args))
		for i, v := range args.Args {
			req.Args[i] = v
		}
	}
	if len(args.Kwargs) > 0 {
		req.Kwargs = make(map[string]rpc.Raw, len(args.Kwargs))
		for k, v := range args.Kwargs {
			req.Kwargs[k] = v
		}
	}
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("capbus agent: handler panicked", "method", c.method,
				"caller", caller.Identity, "user_id", caller.UserID,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			result, err = nil, rpc.Errorf(rpc.CodeInternal, "handler of %q panicked", c.method)
		}
	}()
	v, err := e.h.ServeRPC(&c.ctx, req)
	if err != nil {
		return nil, err
	}
	if result, err = codec.Marshal(v); err != nil {
		return nil, rpc.Errorf(rpc.CodeInternal, "cannot encode the result of %q (%T): %v", c.method, v, err)
	}
	return result, nil
}

// replyFrames builds the frames of the reply to call c, result or err:
// [caller, "VIP1", "", msg-id, "RPC", "result"|"error", method, VALUE],
// reusing the frames of the call (one allocation).
func replyFrames(c *call, result []byte, err error) [][]byte {
	op := frameResult
	if err != nil {
		op, result = frameError, errorPayload(err)
	}
	f := [][]byte{c.m.peerFrame, vip.SignatureFrame, vip.Empty, c.m.ID, frameRPC, op, c.m.Args[vip.RPCArgMethod], result}
	if messageSize(f) > maxMessage {
		f[5], f[7] = frameError, errorPayload(rpc.Errorf(rpc.CodeInternal, "the result is %d bytes, over the %d a message may hold", len(result), maxMessage))
	}
	return f
}

// answer sends the reply of call c: result, or err.
func (s *session) answer(c *call, result []byte, err error) {
	if err := s.enqueue(s.ctx, nil, outMsg{frames: replyFrames(c, result, err)}); err != nil {
		s.a.log.Debug("capbus agent: reply not sent", "method", c.method, "caller", c.m.Peer, "err", err)
	}
}

// parseMillis reads a TIMEOUT frame: decimal milliseconds.
func parseMillis(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}
