package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// transport carries whole VIP messages (lists of frames) to and from the
// platform: one goroutine reads, one writes. *curve.Conn is one.
type transport interface {
	ReadMsg() ([][]byte, error)
	WriteMsgs(msgs [][][]byte) error
	// BeforeRead sets a function the reading goroutine runs each time
	// ReadMsg has used up what was received and is about to wait for the
	// network.
	BeforeRead(f func())
	Close() error
}

// dialFunc opens a transport to the platform.
type dialFunc func(ctx context.Context) (transport, error)

func dialCurve(addr string, kp keys.Pair, serverKey keys.Key, identity string, cfg *config) dialFunc {
	return func(ctx context.Context) (transport, error) {
		c, err := curve.Dial(ctx, addr, kp, serverKey,
			curve.WithIdentity(identity),
			curve.WithSocketType("DEALER"),
			curve.WithLogger(cfg.logger))
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// outMsg is a message for the writer, or (flushed set) a marker the writer
// closes once everything queued before it is written.
type outMsg struct {
	frames  [][]byte
	flushed chan struct{}
}

// maxMessage is the most the frames of one message may hold together:
// what a connection carries (curve.DefaultMaxFrameSize, the platform's
// default too) less room for the envelope the platform adds when it
// forwards. A larger message is refused before it is queued: written, it
// would close the agent's own connection, failing every call in flight.
const maxMessage = int(curve.DefaultMaxFrameSize) - 64<<10

// messageSize is the bytes of a message's frames.
func messageSize(frames [][]byte) int {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return n
}

// maxBatch bounds the messages the writer sends with one write.
const maxBatch = 64

// session is one connection to the platform. Its goroutines:
//
//   - the reader receives every message and dispatches it: a reply to the
//     request waiting for it, a call to a worker, a published message to its
//     subscriptions' mailboxes. It never runs a handler and never blocks on
//     one.
//   - the writer is the only goroutine that writes to the transport: it
//     takes the messages queued in out and writes all those waiting with one
//     write.
//   - workers run handlers, at most the concurrency limit of them; each
//     takes the next queued call when its handler returns, and waits for a
//     call handed to it otherwise, until the session ends.
//
// Lock order: Agent.mu before session.mu before session.qmu; none is held
// while sending to a channel that can block.
type session struct {
	a       *Agent
	tr      transport
	welcome Welcome
	out     chan outMsg

	ctx    context.Context // ends with the session; handlers' contexts derive from it
	cancel context.CancelFunc
	done   chan struct{} // closed when the session ends
	once   sync.Once
	err    error // why it ended; written before done is closed

	mu       sync.Mutex
	requests map[uint64]*request // our requests by the number of their msg-id
	calls    map[callKey]*call   // calls being handled, by caller and msg-id

	// The worker pool (see serve): qmu guards everything below.
	qmu      sync.Mutex
	idle     int            // workers waiting on work
	workers  int            // workers started
	queue    []*call        // calls waiting for a worker
	work     chan *call     // hands a call to an idle worker; capacity: the limit
	shut     bool           // the session ended: no new call is queued
	draining bool           // Run is stopping: new calls are refused
	inflight sync.WaitGroup // calls admitted and not yet answered

	// busy counts our requests awaiting replies and the calls being
	// handled: the writer waits a moment for more messages when it is
	// above one.
	busy atomic.Int64

	// held are the replies of the Inline calls the reader ran, written
	// when it has handled all the input received. Reader-owned.
	held [][][]byte

	wg sync.WaitGroup // reader and writer
}

// callKey identifies a call being handled: the caller's identity and its
// msg-id.
type callKey struct{ peer, id string }

func newSession(a *Agent, tr transport) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		a:        a,
		tr:       tr,
		out:      make(chan outMsg, 256),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		requests: make(map[uint64]*request),
		calls:    make(map[callKey]*call),
		work:     make(chan *call, a.cfg.concurrency),
	}
	tr.BeforeRead(s.writeHeld)
	s.wg.Add(2)
	go s.writeLoop()
	go s.readLoop()
	return s
}

// fail ends the session with err (the first cause wins): pending requests
// fail with rpc.ErrUnavailable, handlers' contexts are cancelled, the
// transport is closed.
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.err = err
		s.a.unpublish(s)
		close(s.done)
		s.cancel()
		_ = s.tr.Close()
	})
}

// close ends the session and waits for its reader and writer. It never
// waits for a handler: those are counted by the agent (Run waits).
func (s *session) close(err error) {
	s.fail(err)
	s.wg.Wait()
}

// unavailable is the error of a request that the end of the session cut.
func (s *session) unavailable() *rpc.Error {
	msg := "connection to the platform lost"
	if s.err != nil {
		msg += ": " + s.err.Error()
	}
	return rpc.NewError(rpc.CodeUnavailable, msg).WithCause(s.err)
}

func (s *session) writeLoop() {
	defer s.wg.Done()
	batch := make([][][]byte, 0, maxBatch)
	var flushed []chan struct{}
	for {
		select {
		case o := <-s.out:
			batch, flushed = s.take(o, batch, flushed)
			if s.busy.Load() > 1 {
				// Other calls are in progress and their messages are
				// about to follow: let them queue, to go out in one
				// write, as long as yielding brings more.
				for range 4 {
					n := len(s.out)
					runtime.Gosched()
					if len(s.out) == n {
						break
					}
				}
			}
		more:
			for len(batch) < maxBatch {
				select {
				case o := <-s.out:
					batch, flushed = s.take(o, batch, flushed)
				default:
					break more
				}
			}
			if len(batch) > 0 {
				if err := s.tr.WriteMsgs(batch); err != nil {
					s.fail(fmt.Errorf("send: %w", err))
					return
				}
				clear(batch) // keep no payload alive
				batch = batch[:0]
			}
			for _, f := range flushed {
				close(f)
			}
			flushed = flushed[:0]
		case <-s.done:
			return
		}
	}
}

func (s *session) take(o outMsg, batch [][][]byte, flushed []chan struct{}) ([][][]byte, []chan struct{}) {
	if o.flushed != nil {
		return batch, append(flushed, o.flushed)
	}
	return append(batch, o.frames), flushed
}

// send queues m for the writer, unless the session or ctx ends first.
func (s *session) send(ctx context.Context, m *message) error {
	return s.enqueue(ctx, nil, outMsg{frames: m.frames()})
}

func (s *session) enqueue(ctx context.Context, expired <-chan time.Time, o outMsg) error {
	if n := messageSize(o.frames); n > maxMessage {
		return rpc.Errorf(rpc.CodeInvalidArgs, "the message is %d bytes, over the %d a message may hold", n, maxMessage)
	}
	select {
	case s.out <- o: // room in the queue: the common case
		return nil
	default:
	}
	select {
	case s.out <- o:
		return nil
	case <-s.done:
		return s.unavailable()
	case <-ctx.Done():
		return ctxError(ctx)
	case <-expired:
		return errTimedOut()
	}
}

// flush waits until the writer has written everything queued before it, or
// the session or ctx ends.
func (s *session) flush(ctx context.Context) {
	f := make(chan struct{})
	if s.enqueue(ctx, nil, outMsg{flushed: f}) != nil {
		return
	}
	select {
	case <-f:
	case <-s.done:
	case <-ctx.Done():
	}
}

func (s *session) readLoop() {
	defer s.wg.Done()
	defer s.shutWorkers()
	names := interner{}
	for {
		frames, err := s.tr.ReadMsg()
		if err != nil {
			s.fail(fmt.Errorf("receive: %w", err))
			return
		}
		m, err := parseMessage(frames, names)
		if err != nil {
			s.a.log.Warn("capbus agent: dropping malformed message", "err", err)
			continue
		}
		s.dispatch(m)
	}
}

// writeHeld sends the replies of the calls the reader ran, with one write,
// before the reader waits for more input (the transport's BeforeRead).
func (s *session) writeHeld() {
	if len(s.held) == 0 {
		return
	}
	err := s.tr.WriteMsgs(s.held)
	clear(s.held)
	s.held = s.held[:0]
	if err != nil {
		s.fail(fmt.Errorf("send: %w", err))
	}
}

// request is one of our requests waiting for its reply.
type request struct {
	ch   chan message // buffered: the reply is delivered at most once
	peer string       // who may answer besides the platform
}

// request sends m with a fresh msg-id and waits for the message that carries
// the same msg-id back, from m's recipient or from the platform, until ctx
// ends or, when timeout is not zero, timeout passes. An error-subsystem
// reply is returned as an *rpc.Error. A call (RPC "call" to a peer) carries
// the time left to its deadline, and is cancelled at the callee when ctx is
// cancelled first.
func (s *session) request(ctx context.Context, m *message, timeout time.Duration) (message, error) {
	if ctx.Err() != nil { // nothing is sent for a context that has ended
		return message{}, ctxError(ctx)
	}
	var expired <-chan time.Time
	if timeout > 0 {
		t := s.a.getTimer(timeout)
		defer s.a.putTimer(t)
		expired = t.C
	}
	// One buffer for the msg-id and, on a call, the TIMEOUT frame.
	id := s.a.nextID.Add(1)
	buf := s.a.appendID(make([]byte, 0, 40), id)
	m.ID = buf
	if m.Subsys == vip.SubRPC && m.Peer != "" {
		left := timeout
		if dl, ok := ctx.Deadline(); ok {
			left = time.Until(dl)
		}
		if left <= 0 { // passed, though ctx has not said so yet
			return message{}, errTimedOut()
		}
		n := len(buf)
		buf = strconv.AppendInt(buf, max(left.Milliseconds(), 1), 10)
		m.ID = buf[:n:n]
		m.Args = append(m.Args, buf[n:])
	}
	r := s.a.getRequest(m.Peer)
	s.busy.Add(1)
	defer s.busy.Add(-1)
	s.mu.Lock()
	s.requests[id] = r
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.requests, id)
		s.mu.Unlock()
	}()
	if err := s.enqueue(ctx, expired, outMsg{frames: m.frames()}); err != nil {
		return message{}, err
	}
	var reply message
	select {
	case reply = <-r.ch:
		// Delivered: nothing holds r any more. (After a timeout or a
		// cancellation a late reply may still be sent to r.ch: then r is
		// not reused.)
		s.a.requests.Put(r)
	case <-s.done:
		select {
		case reply = <-r.ch: // the reply won the race with the end
		default:
			return message{}, s.unavailable()
		}
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) && m.Subsys == vip.SubRPC && m.Peer != "" {
			s.cancelRemote(m)
		}
		return message{}, ctxError(ctx)
	case <-expired:
		return message{}, errTimedOut()
	}
	if reply.Subsys == vip.SubError {
		return reply, reply.errorOf()
	}
	return reply, nil
}

// getRequest returns a request waiting for a reply from peer, from the
// agent's pool.
func (a *Agent) getRequest(peer string) *request {
	if r, ok := a.requests.Get().(*request); ok {
		r.peer = peer
		return r
	}
	return &request{ch: make(chan message, 1), peer: peer}
}

// cancelRemote tells the callee of call m, through the platform, that its
// caller cancelled it: ["RPC", "cancel", method]. Best effort: a full
// queue drops it (the callee's handler then ends at its deadline).
func (s *session) cancelRemote(m *message) {
	c := message{Peer: m.Peer, ID: m.ID, Subsys: vip.SubRPC, Args: [][]byte{frameCancel, m.Args[vip.RPCArgMethod]}}
	select {
	case s.out <- outMsg{frames: c.frames()}:
	default:
	}
}

// reply hands m to the request waiting for its msg-id; it reports false
// when none waits. Only the peer the request went to, or the platform (the
// sender the platform stamps, so no peer can pose as another), may answer.
func (s *session) reply(m message) bool {
	if len(m.ID) == 0 {
		return false
	}
	id, ok := s.a.parseID(m.ID)
	if !ok {
		return false
	}
	s.mu.Lock()
	r, ok := s.requests[id]
	switch {
	case !ok:
	case m.Peer != "":
		ok = m.Peer == r.peer // a reply from the peer called
	case m.Subsys == vip.SubError:
		// A refusal by the platform names the recipient of the message
		// that failed; it may also concern a reply we sent to a peer that
		// happened to use the same msg-id.
		ok = m.arg(vip.ErrArgRecipient) == r.peer
	}
	if ok {
		delete(s.requests, id)
	}
	s.mu.Unlock()
	if ok {
		r.ch <- m
	}
	return ok
}

// dispatch routes one incoming message. It never blocks on a handler.
func (s *session) dispatch(m message) {
	switch m.Subsys {
	case vip.SubRPC:
		switch m.arg(vip.RPCArgOp) {
		case vip.OpCall, vip.OpNotify:
			if !s.a.config.holds(s, m) { // calls wait for the configuration (config.go)
				s.serve(m)
			}
			return
		case vip.OpCancel:
			s.mu.Lock()
			c := s.calls[callKey{m.Peer, string(m.ID)}]
			s.mu.Unlock()
			if c != nil {
				c.ctx.end()
			}
			return
		}
	case vip.SubPubsub:
		if m.arg(0) == vip.OpMessage {
			s.a.deliver(s, m)
			return
		}
	case vip.SubPing:
		if len(m.ID) > 0 {
			pong := message{Peer: m.Peer, ID: m.ID, Subsys: vip.SubPong, Args: m.Args}
			_ = s.send(s.ctx, &pong)
		}
		return
	case vip.SubPeerlist:
		switch m.arg(0) {
		case vip.OpAdd:
			s.a.log.Debug("capbus agent: peer joined", "peer", m.arg(1))
			return
		case vip.OpDrop:
			s.a.log.Debug("capbus agent: peer left", "peer", m.arg(1))
			return
		}
	case vip.SubConfig:
		s.a.config.dispatch(s, m)
		return
	case vip.SubError:
		if s.reply(m) || s.a.config.refused(s, m) {
			return
		}
		s.notice(m)
		return
	}
	if !s.reply(m) {
		s.a.log.Debug("capbus agent: unexpected message", "subsystem", m.Subsys, "peer", m.Peer, "id", string(m.ID))
	}
}

// notice handles an error the platform sent without a request of ours
// (docs/PROTOCOL.md section 3): shutdown, revocation, replacement, a
// subscription dropped.
func (s *session) notice(m message) {
	e := m.errorOf()
	switch {
	case e.Code() == rpc.CodeUnavailable: // "platform shutting down"
		s.fail(errors.New(e.Message()))
	case e.Code() == rpc.CodeIdentityInUse: // another connection took the identity over
		s.fail(e)
	case e.Code() == rpc.CodePermission: // "access revoked: ..."; the platform closes
		s.a.log.Error("capbus agent: access revoked by the platform", "message", e.Message())
		s.fail(e)
	case m.arg(vip.ErrArgSubsystem) == vip.SubPubsub: // a subscription dropped by a policy reload
		s.a.log.Error("capbus agent: subscription dropped by the platform", "message", e.Message())
	default:
		s.a.log.Warn("capbus agent: error from the platform", "code", e.Code(), "message", e.Message(),
			"recipient", m.arg(vip.ErrArgRecipient), "subsystem", m.arg(vip.ErrArgSubsystem))
	}
}

// ctxError converts a done context into the error a call returns.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		err = fmt.Errorf("%w: %w", err, cause) // a cause given to WithCancelCause
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return rpc.NewError(rpc.CodeTimeout, "deadline exceeded before a reply").WithCause(err)
	}
	return rpc.NewError(rpc.CodeCanceled, "context canceled before a reply").WithCause(err)
}

// errTimedOut is ctxError for the call timeout of a context without a
// deadline.
func errTimedOut() error {
	return rpc.NewError(rpc.CodeTimeout, "deadline exceeded before a reply").WithCause(context.DeadlineExceeded)
}
