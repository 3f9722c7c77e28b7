package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// transport carries whole VIP messages (lists of frames) to and from the
// platform. Send is called by one goroutine at a time, and so is Recv;
// Close unblocks both. Send must not keep frames, or their bytes, after it
// returns: the session reuses them for the next message.
type transport interface {
	Send(frames [][]byte) error
	Recv() ([][]byte, error)
	Close() error
}

// batcher is a transport that can hold several sends and write them
// together (the CURVE transport); the writer uses it when messages queue up.
type batcher interface {
	Hold()
	Release() error
}

// buffered is a transport that tells how many received bytes Recv has not
// returned yet (the CURVE transport). While some are, the reader holds the
// replies of the calls it runs itself, to write them together before Recv
// would block; without it the reader writes at once.
type buffered interface {
	Buffered() int
}

// dialFunc opens a transport to the platform.
type dialFunc func(ctx context.Context) (transport, error)

// zmqTransport is a ZMTP DEALER connection over CURVE.
type zmqTransport struct {
	zc   *zmq4.Conn
	conn *curve.Conn
}

func dialCurve(addr string, kp auth.KeyPair, serverKey auth.Key, identity string, log *slog.Logger) dialFunc {
	return func(ctx context.Context) (transport, error) {
		c, err := curve.Dial(ctx, addr, kp, serverKey,
			curve.WithIdentity(identity),
			curve.WithSocketType(string(zmq4.Dealer)),
			curve.WithLogger(log))
		if err != nil {
			return nil, err
		}
		// Open exchanges the (synthesized) NULL greeting and READY; bound it
		// by the context through the connection's deadline.
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		zc, err := zmq4.Open(c, null.Security(), zmq4.Dealer, zmq4.SocketIdentity(identity), false, nil)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		_ = c.SetDeadline(noDeadline)
		return &zmqTransport{zc: zc, conn: c}, nil
	}
}

// Send seals and writes one message. zmq4 opened the ZMTP session; the
// CURVE conn carries the messages whole, without zmq4's per-frame copies.
func (t *zmqTransport) Send(frames [][]byte) error { return t.conn.WriteMsg(frames) }

// Hold makes the CURVE conn keep complete messages until Release.
func (t *zmqTransport) Hold() { t.conn.Cork() }

// Release writes what Hold kept, at once.
func (t *zmqTransport) Release() error { return t.conn.Uncork() }

// Recv reads one message; the CURVE conn answers PINGs and drops other
// ZMTP commands.
func (t *zmqTransport) Recv() ([][]byte, error) { return t.conn.ReadMsg() }

func (t *zmqTransport) Close() error { return t.zc.Close() }

// Buffered reports how many received bytes wait to be read.
func (t *zmqTransport) Buffered() int { return t.conn.Buffered() }

// Constant frames, shared by every message sent: zmq4 and the CURVE layer
// only read the frames they are given.
var (
	frameCall   = []byte(vip.OpCall)
	frameNotify = []byte(vip.OpNotify)
	frameResult = []byte(vip.OpResult)
	frameError  = []byte(vip.OpError)
)

var subsystemFrames = func() map[string][]byte {
	m := make(map[string][]byte, len(vip.Subsystems))
	for _, s := range vip.Subsystems {
		m[s] = []byte(s)
	}
	return m
}()

// message is one VIP message. Peer is the recipient of an outgoing message
// and the sender of an incoming one; User is the sender's user id stamped by
// the platform (incoming only). The msg-id is ID in a message the agent
// makes, and the frame as received, RawID, in one it receives (a reply
// sends RawID back).
type message struct {
	Peer   string
	User   string
	ID     string
	RawID  []byte
	Subsys string
	Args   [][]byte
}

// id returns the msg-id as a string, for logs.
func (m *message) id() string {
	if m.ID != "" {
		return m.ID
	}
	return string(m.RawID)
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

// write sends m through the transport; the caller holds wmu. The frame
// list and the bytes of the recipient and msg-id frames are the session's,
// reused for every message: the transport keeps neither.
func (s *session) write(m *message) error {
	s.frames, s.head = m.appendFrames(s.frames[:0], s.head[:0])
	err := s.tr.Send(s.frames)
	clear(s.frames) // keep no payload alive
	return err
}

// appendFrames appends the frames of an outgoing message,
// [recipient, "VIP1", "", msg-id, subsystem, args...], to f; the recipient
// and msg-id frames are built in head, which it returns too.
func (m *message) appendFrames(f [][]byte, head []byte) ([][]byte, []byte) {
	head = append(append(append(head, m.Peer...), m.ID...), m.RawID...)
	var subsys []byte
	if sf, ok := subsystemFrames[m.Subsys]; ok {
		subsys = sf
	} else {
		subsys = []byte(m.Subsys)
	}
	f = append(f, head[:len(m.Peer):len(m.Peer)], vip.SignatureFrame, nil, head[len(m.Peer):], subsys)
	return append(f, m.Args...), head
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
	m := message{Args: frames[vip.FrameArgs:]}
	m.Peer = names.str(frames[vip.FramePeer])
	m.User = names.str(frames[vip.FrameUser])
	if len(frames[vip.FrameMsgID]) > 0 {
		m.RawID = frames[vip.FrameMsgID]
	}
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

// arg returns Args[i] as a string, "" when absent.
func (m *message) arg(i int) string {
	if i < len(m.Args) {
		return string(m.Args[i])
	}
	return ""
}

// errorOf converts an incoming error-subsystem message:
// [errno, text, recipient, subsystem, DATA].
func (m *message) errorOf() *rpc.Error {
	e := rpc.NewError(rpc.ParseCode(m.arg(vip.ErrArgErrno)), m.arg(vip.ErrArgText))
	if len(m.Args) > vip.ErrArgData && len(m.Args[vip.ErrArgData]) > 0 {
		var data map[string]any
		if err := rpc.Unmarshal(m.Args[vip.ErrArgData], &data); err == nil {
			e.Data = data
		}
	}
	return e
}

// session is one connection to the platform: a writer goroutine that
// sends what queues up (any goroutine may send under wmu when nothing is
// queued), a reader that dispatches what arrives and runs the handlers of
// calls itself (see read), and the table of requests waiting for a reply.
type session struct {
	a   *Agent
	tr  transport
	out chan outgoing

	ctx    context.Context // cancelled when the session ends
	cancel context.CancelFunc
	// onReader is ctx marked for the handlers the reader runs: a request
	// made under it hands the reading on at once (handOff).
	onReader context.Context
	done     chan struct{} // closed when the session ends
	once     sync.Once
	err      error // why it ended; written before done is closed

	mu      sync.Mutex
	pending map[string]waiter
	wg      sync.WaitGroup // reader and writer

	calls    sync.WaitGroup // handlers of calls received on this session
	draining atomic.Bool    // Run is stopping: new calls are refused
	callsMu  sync.Mutex     // orders calls.Add after the draining check before drain's Wait
	wmu      sync.Mutex     // held by whoever writes to tr: the writer, or send writing inline
	frames   [][]byte       // the frames of the message being written, under wmu
	head     []byte         // the recipient and msg-id frames' bytes, under wmu
	held     bool           // under wmu: the reader holds the transport's writes
	queued   atomic.Int64   // messages handed to the writer and not yet written
	busy     atomic.Int64   // requests waiting for a reply + handlers running

	// work hands a call to a handler goroutine waiting for one
	// (unbuffered: a send succeeds only if one waits). Only the reader
	// sends, under workMu; close closes it.
	work chan callJob

	// The reader role (see read): the goroutine holding rmu receives and
	// dispatches, and runs the handlers of incoming calls itself, with rmu
	// released. If one runs too long (see watchFire) or waits for a reply
	// (handOff), another goroutine takes its place (takeOver).
	rmu       sync.Mutex
	rgen      atomic.Uint64 // bumped by every takeover
	names     interner      // under rmu
	inHandler atomic.Uint64 // 1 + the generation of the reader running a handler; 0: none
	handlers  atomic.Uint64 // handlers the reader has started
	watchOn   atomic.Bool   // watch is set
	watch     *time.Timer   // runs watchFire
	lastSeen  uint64        // handlers at the previous watchFire (only watchFire uses it)
	workMu    sync.Mutex    // orders sends on work before close closes it
	workShut  bool          // under workMu: work is closed
	rlife     sync.Mutex    // orders a takeover's start before the reader's end
	rstop     bool          // under rlife: the reader has ended for good

	welcome Welcome // set before the session is published
}

// onReaderKey marks the context of handlers run by the reader; its value
// is the session.
type onReaderKey struct{}

// inlineBudget is how often watch looks at the reader while it runs
// handlers: a handler still running at two looks in a row (after 2 to 4
// ms) has another goroutine take over receiving. That is as long as other
// calls wait behind a slow or blocked handler. Each look costs a timer
// wake-up: at 0.5 ms they cost a busy callee 1.3 us per call (about 13% of
// its CPU) more than at 5 ms, at 2 ms about as little as at 5 ms.
const inlineBudget = 2 * time.Millisecond

func newSession(a *Agent, tr transport) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		a:       a,
		tr:      tr,
		out:     make(chan outgoing, 64),
		work:    make(chan callJob),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		pending: make(map[string]waiter),
		names:   interner{},
	}
	s.onReader = context.WithValue(ctx, onReaderKey{}, s)
	s.watch = time.AfterFunc(time.Hour, s.watchFire)
	s.watch.Stop()
	s.wg.Add(1)
	go s.writeLoop()
	a.handlers.Add(1) // readers count as handler goroutines: they run handlers
	go s.readLoop()
	return s
}

// close ends the session with err (the first cause wins), waits for its
// writer, and releases the handler goroutines waiting for its calls. Its
// reader ends by itself once the transport is closed (Run waits for it
// with the handler goroutines): close never waits for a handler.
func (s *session) close(err error) {
	s.fail(err)
	s.wg.Wait()
	s.watch.Stop()
	s.workMu.Lock()
	if !s.workShut {
		s.workShut = true
		close(s.work)
	}
	s.workMu.Unlock()
}

func (s *session) fail(err error) {
	s.once.Do(func() {
		s.err = err
		s.a.unpublish(s) // new calls fail fast and Ready waits from now on
		close(s.done)
		s.cancel()
		_ = s.tr.Close()
	})
}

// unavailable is the error of a request that the end of the session cut.
func (s *session) unavailable() *rpc.Error {
	msg := "connection to the platform lost"
	if s.err != nil {
		msg += ": " + s.err.Error()
	}
	return rpc.NewError(rpc.CodeUnavailable, msg).WithCause(s.err)
}

// outgoing is a message for the writer, or a flush marker.
type outgoing struct {
	m       message
	flushed chan struct{} // closed by the writer when it reaches the marker
}

func (s *session) writeLoop() {
	defer s.wg.Done()
	for {
		select {
		case o := <-s.out:
			if s.busy.Load() > 1 && len(s.out) < cap(s.out)/2 {
				// Other calls are in progress and their messages are
				// about to follow: let them queue, to go out in one write.
				runtime.Gosched()
			}
			s.wmu.Lock()
			b, isBatcher := s.tr.(batcher)
			batch := isBatcher && len(s.out) > 0
			if batch && !s.held {
				b.Hold()
			}
			// What the writer sends goes out when it is done, with what the
			// reader holds, if anything.
			release := batch || s.held
			for {
				if o.flushed != nil {
					// Everything before the marker must be on the wire.
					if release {
						if err := b.Release(); err != nil {
							s.wmu.Unlock()
							s.fail(fmt.Errorf("send: %w", err))
							return
						}
						b.Hold()
					}
					close(o.flushed)
				} else if err := s.write(&o.m); err != nil {
					s.wmu.Unlock()
					s.fail(fmt.Errorf("send: %w", err))
					return
				}
				s.queued.Add(-1)
				if !batch || len(s.out) == 0 {
					break
				}
				o = <-s.out
			}
			if release {
				if err := b.Release(); err != nil {
					s.wmu.Unlock()
					s.fail(fmt.Errorf("send: %w", err))
					return
				}
				if s.held {
					b.Hold()
				}
			}
			s.wmu.Unlock()
		case <-s.done:
			return
		}
	}
}

// flush waits until the writer has sent everything queued before it, the
// session ends or ctx ends.
func (s *session) flush(ctx context.Context) {
	f := make(chan struct{})
	if s.enqueue(ctx, nil, outgoing{flushed: f}) != nil {
		return
	}
	select {
	case <-f:
	case <-s.done:
	case <-ctx.Done():
	}
}

func (s *session) readLoop() {
	defer s.a.handlers.Done()
	s.rmu.Lock()
	if s.read(s.rgen.Load()) {
		s.a.waitForCalls(s)
	}
}

// watchFire looks at the reader every inlineBudget while it runs handlers.
// When the handler it runs is the one it ran at the previous look, another
// goroutine takes over receiving. The watch goes on while the reader has
// started handlers since the previous look (stopping and setting it again
// for every burst of calls would cost a timer wake-up each), and stops
// once it has not.
func (s *session) watchFire() {
	n := s.handlers.Load()
	running := s.inHandler.Load() != 0
	if running && n == s.lastSeen {
		s.watchOn.Store(false) // the next reader sets it again
		s.takeOver()
		return
	}
	if running || n != s.lastSeen {
		s.lastSeen = n
		s.watch.Reset(inlineBudget)
		return
	}
	s.watchOn.Store(false)
	// A handler that started meanwhile saw the watch on and did not set it.
	if s.inHandler.Load() != 0 && s.watchOn.CompareAndSwap(false, true) {
		s.watch.Reset(inlineBudget)
	}
}

// handOff is for a request made by a handler the reader runs: the reply
// can only come through a reader, so another goroutine takes over at once,
// and what the reader holds is written. A handler that makes its request
// under another context than its own is rescued by the watch instead.
func (s *session) handOff() {
	s.wmu.Lock()
	if s.held {
		b := s.tr.(batcher)
		if err := b.Release(); err != nil {
			s.wmu.Unlock()
			s.fail(fmt.Errorf("send: %w", err))
			return
		}
		b.Hold()
	}
	s.wmu.Unlock()
	go s.takeOver()
}

// takeOver makes its goroutine the reader in place of one running a
// handler, unless that handler has returned or another goroutine took over
// for it already, or the session ends.
func (s *session) takeOver() {
	h := s.inHandler.Load()
	if h == 0 || !s.inHandler.CompareAndSwap(h, 0) {
		return
	}
	s.a.takeovers.Add(1)
	// Counted while the reader, which has not ended, holds its count: Run
	// waits for handler goroutines only after that.
	s.rlife.Lock()
	if s.rstop {
		s.rlife.Unlock()
		return
	}
	s.a.handlers.Add(1)
	s.rlife.Unlock()
	defer s.a.handlers.Done()
	gen := s.rgen.Add(1)
	s.rmu.Lock()
	if s.read(gen) {
		s.a.waitForCalls(s)
	}
}

// read is the reader's loop, entered with rmu held as reader generation
// gen. It receives and dispatches; a call it may run itself (a handler slot
// is free) it runs with rmu released, under watch. It returns, releasing
// rmu, when the session ends, or reporting true when another goroutine
// took its place while it ran a handler: its goroutine then serves as a
// handler goroutine.
//
// Running handlers on the reader saves a goroutine hand-off per call and
// lets the replies to the calls of one read go out in one write: a busy
// callee spent about a quarter of its CPU handing calls to goroutines.
func (s *session) read(gen uint64) (replaced bool) {
	bt, _ := s.tr.(buffered)
	for {
		if s.rgen.Load() != gen {
			s.rmu.Unlock()
			return true
		}
		if bt == nil || bt.Buffered() == 0 {
			s.release() // Recv may block: first write what the reader holds
		}
		frames, err := s.tr.Recv()
		if err != nil {
			s.fail(fmt.Errorf("receive: %w", err))
			s.release()
			s.rlife.Lock()
			s.rstop = true
			s.rlife.Unlock()
			s.rmu.Unlock()
			return false
		}
		m, err := parseMessage(frames, s.names)
		if err != nil {
			s.a.log.Warn("capbus agent: dropping malformed message", "err", err)
			continue
		}
		j, run := s.dispatch(m)
		if !run {
			continue
		}
		if !s.held && bt != nil {
			if b, ok := s.tr.(batcher); ok {
				s.wmu.Lock()
				b.Hold()
				s.held = true
				s.wmu.Unlock()
			}
		}
		s.handlers.Add(1)
		s.inHandler.Store(gen + 1)
		if s.watchOn.CompareAndSwap(false, true) {
			s.watch.Reset(inlineBudget)
		}
		s.rmu.Unlock()
		s.a.runHolding(s.onReader, j)
		// Unless another goroutine took over, and now runs a handler itself.
		s.inHandler.CompareAndSwap(gen+1, 0)
		// TryLock fails only while a new reader takes over.
		if s.rgen.Load() != gen || !s.rmu.TryLock() {
			return true
		}
	}
}

// release writes what the reader held.
func (s *session) release() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.held {
		return
	}
	s.held = false
	if err := s.tr.(batcher).Release(); err != nil {
		s.fail(fmt.Errorf("send: %w", err))
	}
}

// send queues m for the writer.
func (s *session) send(ctx context.Context, m *message) error {
	return s.sendWithin(ctx, nil, m)
}

// sendWithin is send that also gives up when expired fires.
func (s *session) sendWithin(ctx context.Context, expired <-chan time.Time, m *message) error {
	select {
	case <-s.done:
		return s.unavailable()
	default:
	}
	// When this is the only call in progress, nothing is queued and the
	// writer is idle, write from this goroutine: it saves waking the
	// writer for every message when the agent is not busy. When other
	// calls are in progress the writer sends their messages together in
	// one write instead. queued counts what the writer has not written
	// yet, so a message never overtakes one sent before it.
	if s.busy.Load() <= 1 && s.queued.Load() == 0 && s.wmu.TryLock() {
		if s.queued.Load() == 0 {
			err := s.write(m)
			s.wmu.Unlock()
			if err != nil {
				s.fail(fmt.Errorf("send: %w", err))
				return s.unavailable()
			}
			return nil
		}
		s.wmu.Unlock()
	}
	return s.enqueue(ctx, expired, outgoing{m: *m})
}

// enqueue hands o to the writer goroutine, unless the session, ctx or
// expired (nil: never) ends first.
func (s *session) enqueue(ctx context.Context, expired <-chan time.Time, o outgoing) error {
	s.queued.Add(1)
	// Room in the queue is the common case: a send alone locks one
	// channel, where the select below locks four.
	select {
	case s.out <- o:
		return nil
	default:
	}
	select {
	case s.out <- o:
		return nil
	case <-s.done:
		s.queued.Add(-1)
		return s.unavailable()
	case <-ctx.Done():
		s.queued.Add(-1)
		return ctxError(ctx)
	case <-expired:
		s.queued.Add(-1)
		return errTimedOut()
	}
}

// waiter is a request waiting for its reply.
type waiter struct {
	ch   chan message // buffered: the reply is delivered at most once
	peer string       // who may answer besides the platform
	id   string       // the key in pending
}

// request sends m with a fresh msg-id and waits for the message that
// carries the same msg-id back, from m's recipient or from the platform. An
// error-subsystem reply is returned as an *rpc.Error.
func (s *session) request(ctx context.Context, m *message) (message, error) {
	return s.requestWithin(ctx, m, 0)
}

// requestWithin is request that also gives up after timeout (0: never),
// as if ctx had that deadline. It spares a call without a deadline the
// allocations of context.WithTimeout: the timer comes from the agent's
// pool.
func (s *session) requestWithin(ctx context.Context, m *message, timeout time.Duration) (message, error) {
	var expired <-chan time.Time
	if timeout > 0 {
		t := s.a.getTimer(timeout)
		defer s.a.putTimer(t)
		expired = t.C
	}
	s.busy.Add(1)
	defer s.busy.Add(-1)
	m.ID = s.a.newID()
	ch := s.a.getReplyChan()
	s.mu.Lock()
	s.pending[m.ID] = waiter{ch: ch, peer: m.Peer, id: m.ID}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, m.ID)
		s.mu.Unlock()
	}()
	if err := s.sendWithin(ctx, expired, m); err != nil {
		return message{}, err
	}
	if s.inHandler.Load() != 0 && ctx.Value(onReaderKey{}) == s {
		// A handler the reader runs waits for a reply that only a reader
		// can receive. (Other goroutines' requests leave the reader be.)
		s.handOff()
	}
	var r message
	select {
	case r = <-ch:
		// The reply was delivered, so nothing holds ch any more: the
		// next request may use it. (After a timeout or a cancellation a
		// late reply may still be sent to ch, which is then dropped.)
		s.a.putReplyChan(ch)
	case <-s.done:
		select {
		case r = <-ch: // the reply won the race with the end
		default:
			return message{}, s.unavailable()
		}
	case <-ctx.Done():
		return message{}, ctxError(ctx)
	case <-expired:
		return message{}, errTimedOut()
	}
	if r.Subsys == vip.SubError {
		return r, r.errorOf()
	}
	return r, nil
}

// reply hands m to the request waiting for its msg-id; it reports false
// when none waits. Only the peer the request went to, or the platform (the
// sender the platform stamps, so no peer can pose as another), may answer:
// msg-ids are predictable, and a peer must not answer calls made to others.
func (s *session) reply(m message) bool {
	if len(m.RawID) == 0 {
		return false
	}
	s.mu.Lock()
	w, ok := s.pending[string(m.RawID)]
	switch {
	case !ok:
	case m.Peer != "":
		ok = m.Peer == w.peer // a reply from the peer called
	case m.Subsys == vip.SubError:
		// A refusal by the platform names the recipient of the message
		// that failed; it may also concern a reply we sent to a peer that
		// happened to use the same msg-id.
		ok = m.arg(vip.ErrArgRecipient) == w.peer
	}
	if ok {
		delete(s.pending, w.id)
	}
	s.mu.Unlock()
	if ok {
		w.ch <- m
	}
	return ok
}

// peerLeft fails the requests waiting for a reply from peer, which has
// disconnected: its reply will never come.
func (s *session) peerLeft(peer string) {
	if peer == "" {
		return
	}
	left := message{Subsys: vip.SubError, Args: [][]byte{
		[]byte(rpc.CodeUnavailable.Wire()),
		[]byte(fmt.Sprintf("peer %q disconnected while the call was in flight; it may or may not have run", peer)),
	}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, w := range s.pending {
		if w.peer == peer {
			delete(s.pending, id)
			w.ch <- left
		}
	}
}

// dispatch routes one incoming message. It never blocks on a handler: a
// call whose handler the reader may run itself is returned, with run true.
func (s *session) dispatch(m message) (j callJob, run bool) {
	switch m.Subsys {
	case vip.SubRPC:
		switch m.arg(0) {
		case vip.OpCall, vip.OpNotify:
			return s.a.serveCall(s, m)
		}
	case vip.SubPubsub:
		if m.arg(0) == vip.OpMessage {
			s.a.deliver(s, m)
			return callJob{}, false
		}
	case vip.SubPing:
		if len(m.RawID) > 0 {
			pong := message{Peer: m.Peer, RawID: m.RawID, Subsys: vip.SubPong, Args: m.Args}
			_ = s.send(s.ctx, &pong)
		}
		return callJob{}, false
	case vip.SubPeerlist:
		switch m.arg(0) {
		case vip.OpAdd:
			s.a.log.Debug("capbus agent: peer joined", "peer", m.arg(1))
			return callJob{}, false
		case vip.OpDrop:
			s.a.log.Debug("capbus agent: peer left", "peer", m.arg(1))
			s.peerLeft(m.arg(1))
			return callJob{}, false
		}
	case vip.SubError:
		if s.reply(m) {
			return callJob{}, false
		}
		// A notice not caused by a request (docs/PROTOCOL.md section 3).
		e := m.errorOf()
		switch {
		case e.Code == rpc.CodeUnavailable: // "platform shutting down"
			s.fail(errors.New(e.Message))
		case e.Code == rpc.CodeIdentityInUse: // another connection took the identity over
			s.fail(e)
		case e.Code == rpc.CodePermission: // "access revoked: ..."; the platform closes
			s.a.log.Error("capbus agent: access revoked by the platform", "message", e.Message)
			s.fail(e)
		case m.arg(vip.ErrArgSubsystem) == vip.SubPubsub: // a subscription dropped by a policy reload
			s.a.log.Error("capbus agent: subscription dropped by the platform", "message", e.Message)
		default:
			s.a.log.Warn("capbus agent: error from the platform", "code", e.Code, "message", e.Message,
				"recipient", m.arg(vip.ErrArgRecipient), "subsystem", m.arg(vip.ErrArgSubsystem))
		}
		return callJob{}, false
	}
	if !s.reply(m) {
		s.a.log.Debug("capbus agent: unexpected message", "subsystem", m.Subsys, "peer", m.Peer, "id", m.id())
	}
	return callJob{}, false
}

// ctxError converts a done context into the error a call returns.
// errTimedOut is ctxError for the call timeout of a context without a
// deadline.
func errTimedOut() error {
	return rpc.NewError(rpc.CodeTimeout, "deadline exceeded before a reply").WithCause(context.DeadlineExceeded)
}

func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return rpc.NewError(rpc.CodeTimeout, "deadline exceeded before a reply").WithCause(err)
	}
	return rpc.NewError(rpc.CodeCanceled, "context canceled before a reply").WithCause(err)
}
