package platform

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// Errors of peer.send: a queue or a memory budget is full (errno 105 to
// the sender of a call).
var (
	errQueueFull      = errors.New("queue full")
	errUserBudget     = errors.New("the memory budget of the recipient's user is exhausted")
	errPlatformBudget = errors.New("the platform's memory budget is exhausted")
)

// full reports whether err says a queue or budget is full.
func full(err error) bool {
	return err == errQueueFull || err == errUserBudget || err == errPlatformBudget
}

// outMsg is one message queued towards a peer.
type outMsg struct {
	frames [][]byte
	size   int64
	final  bool // close the connection once written
}

// peer is one authenticated connection.
//
// Goroutines: the connection's reader (serve, readLoop) handles everything
// the peer sends; its writer (writeLoop) writes what is queued for it. Any
// goroutine may queue a message for the peer (send). Another peer's reader
// that queued messages for it during a burst of input writes them itself
// when no one else is writing (writeNow), with a write that does not wait
// for the socket. One goroutine at a time holds the write side (writing).
//
// The fields set at accept (key, userID, remoteAddr, since) never change.
// identity, exports and welcomed are set by hello (under the platform's
// lock for the routing table). The reader owns the fields marked so.
type peer struct {
	p          *Platform
	id         uint64
	key        keys.Key
	userID     string
	userBytes  []byte
	remoteAddr string
	since      time.Time
	conn       *curve.Conn

	// The queue towards the peer, taken whole by the goroutine that
	// writes.
	qmu     sync.Mutex
	queue   []outMsg
	qbytes  int64
	qclosed bool
	// writing: a goroutine holds the write side (it owns spare and
	// frames). unflushed: the budget bytes of a batch that writeNow sealed
	// but the socket did not take whole; they stay counted, and nobody but
	// the writer writes, until the writer has written them.
	writing   bool
	unflushed int64
	spare     []outMsg
	frames    [][][]byte
	wake      chan struct{} // capacity 1: the writer has messages to write
	touched   []*peer       // reader-owned: peers it queued for during a burst

	done       chan struct{}
	closeOnce  sync.Once
	closeErr   atomic.Pointer[string] // why the platform closed it, for the audit record
	closing    atomic.Bool            // a final message was queued
	finalTimer atomic.Pointer[time.Timer]
	flushed    chan struct{} // closed when the writer exits

	// Set by hello, read-only afterwards (published through p.mu).
	welcomed      atomic.Bool
	identity      string
	identityBytes []byte
	meta          map[string]string
	// quiet: the hello's meta holds "peerlist": "off"; the peer is sent
	// no peerlist add and drop (hello.go).
	quiet bool

	exports atomic.Pointer[exportTable]

	// configWatch is set once the peer asked for the changes of its own
	// configuration store (config.go).
	configWatch atomic.Bool

	// Counters, for operators.
	callsIn, callsOut atomic.Uint64

	user       *userState   // the budgets shared by the user's connections
	helloTimer *time.Timer  // closes a connection that does not say hello
	fullSince  atomic.Int64 // unix nanoseconds since the queue was found full, 0 if not

	// Owned by the reader goroutine.
	subj      *auth.Subject
	subjPol   *auth.Policy
	protoErrs int
	subs      map[string]struct{} // guarded by p.subMu

	// Calls forwarded to this peer that await its reply (see calls.go),
	// guarded by pmu; outstanding counts the calls this peer made that
	// await a reply.
	pmu         sync.Mutex
	inbound     map[callKey]pendingCall
	outstanding atomic.Int64
}

// exportTable is an immutable map of method name to export, replaced whole
// on every export update.
type exportTable map[string]*export

func (pe *peer) principal() rpc.Principal {
	return rpc.Principal{UserID: pe.userID, Identity: pe.identity, Key: pe.key}
}

// ident returns the admitted identity, "" before hello. Safe from any
// goroutine.
func (pe *peer) ident() string {
	if pe.welcomed.Load() {
		return pe.identity
	}
	return ""
}

// subject returns the peer's compiled subject under pol, recompiling it when
// the policy changed. Only the reader goroutine calls it.
func (pe *peer) subject(pol *auth.Policy) (*auth.Subject, error) {
	if pe.subjPol == pol && pe.subj != nil {
		return pe.subj, nil
	}
	s, err := pol.SubjectAt(pe.principal(), pe.remoteAddr)
	if err != nil {
		return nil, err
	}
	pe.subj, pe.subjPol = s, pol
	return s, nil
}

// send queues frames towards the peer and wakes its writer, without
// blocking. It fails with errQueueFull, or net.ErrClosed once the
// connection is being closed.
func (pe *peer) send(frames [][]byte) error {
	return pe.push(frames, true)
}

// sendFrom is send for a message that src's reader queues while it handles
// a burst of input: the writer is woken when src's reader has handled all
// the input it received (flushTouched), so that the messages of a burst
// for one peer go out with one write.
func (pe *peer) sendFrom(src *peer, frames [][]byte) error {
	if err := pe.push(frames, false); err != nil {
		return err
	}
	for _, t := range src.touched {
		if t == pe {
			return nil
		}
	}
	src.touched = append(src.touched, pe)
	return nil
}

// flushTouched writes what src's reader queued for other peers during a
// burst of input (writeNow). Only src's reader calls it.
func (src *peer) flushTouched() {
	for i, pe := range src.touched {
		pe.writeNow()
		src.touched[i] = nil
	}
	src.touched = src.touched[:0]
}

// writeNow writes what is queued for pe from the calling goroutine, if no
// other goroutine is writing to pe, with one write that does not wait for
// the socket; what the socket does not take at once is left to pe's
// writer. A reader thus forwards a call or a reply without waking another
// goroutine, and never waits for a slow peer.
func (pe *peer) writeNow() {
	pe.qmu.Lock()
	if len(pe.queue) == 0 || pe.writing || pe.unflushed > 0 || pe.closing.Load() {
		// Nothing left; or the goroutine writing looks at the queue
		// again when done; or the socket was full at the last try, and
		// the writer, woken then, writes with its deadline; or the peer
		// is closing, and its final message is the writer's.
		wake := pe.closing.Load()
		pe.qmu.Unlock()
		if wake {
			pe.wakeWriter()
		}
		return
	}
	batch, _ := pe.take()
	pe.qmu.Unlock()
	if more, _ := pe.write(batch, 0, true); more {
		pe.wakeWriter()
	}
}

// take claims the write side, the queued messages and the budget bytes
// left unflushed (written with them). pe.qmu is held and no goroutine is
// writing.
func (pe *peer) take() ([]outMsg, int64) {
	pe.writing = true
	batch, carried := pe.queue, pe.unflushed
	pe.queue, pe.spare, pe.unflushed = pe.spare[:0], nil, 0
	return batch, carried
}

// write writes batch, which take returned with the budget bytes it
// carried, then gives the write side back: with the conn's blocking write
// (the writer), or with one that does not wait (try). It reports whether
// anything is left to write (queued meanwhile, or not taken by the socket)
// and whether the connection is closed.
func (pe *peer) write(batch []outMsg, carried int64, try bool) (more, closed bool) {
	final := false
	size := carried
	frames := pe.frames[:0]
	for _, m := range batch {
		size += m.size // all of it: what follows a final message is never written
		if !final {
			frames = append(frames, m.frames)
			final = m.final
		}
	}
	var err error
	left := false
	if try {
		var all bool
		all, err = pe.conn.TryWriteMsgs(frames)
		if errors.Is(err, curve.ErrWriteInProgress) {
			// The conn's reader is answering a PING, maybe to a peer
			// that does not read: give the batch back to the writer,
			// whose deadline bounds that wait too.
			clear(frames)
			pe.qmu.Lock()
			pe.writing = false
			pe.frames = frames[:0]
			closed := pe.qclosed
			if !closed {
				pe.queue = append(batch, pe.queue...)
			}
			pe.qmu.Unlock()
			if closed { // close released what was queued, not this batch
				pe.unqueue(size)
				return false, true
			}
			return true, false
		}
		left = !all
	} else {
		// A peer that takes longer than this to accept a write is a
		// slow consumer: the write fails and the connection is closed.
		// The deadline is cleared after the write: a try-write fails at
		// once on a conn whose deadline has passed.
		_ = pe.conn.SetWriteDeadline(time.Now().Add(pe.p.cfg.limits.SlowConsumer))
		err = pe.conn.WriteMsgs(frames)
		_ = pe.conn.SetWriteDeadline(time.Time{})
	}
	clear(batch) // keep no payload alive
	clear(frames)
	pe.qmu.Lock()
	pe.writing = false
	pe.spare, pe.frames = batch[:0], frames[:0]
	if left && err == nil && !pe.qclosed {
		// Still in the conn: the budgets stay taken until the writer
		// has written it.
		pe.unflushed, size = size, 0
	}
	if !pe.qclosed { // close zeroed qbytes
		pe.qbytes -= size
	}
	more = left || len(pe.queue) > 0
	pe.qmu.Unlock()
	pe.unqueue(size)
	if !left {
		pe.fullSince.Store(0)
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		pe.closeSlow(fmt.Sprintf("slow consumer: a write took longer than %v", pe.p.cfg.limits.SlowConsumer))
	case err != nil:
		pe.close(fmt.Sprintf("write: %v", err))
	case final:
		pe.close(pe.reason())
	default:
		return more, false
	}
	return false, true
}

// push queues frames. Three budgets bound what is queued: the peer's
// (messages and bytes; a message over the byte budget is still taken when
// nothing else is queued), its user's across its connections, and the
// platform's. A queue that stays full longer than the slow-consumer limit
// gets its connection closed.
func (pe *peer) push(frames [][]byte, wake bool) error {
	if pe.closing.Load() {
		return net.ErrClosed
	}
	lim := &pe.p.cfg.limits
	var n int64
	for _, f := range frames {
		n += int64(len(f))
	}
	pe.qmu.Lock()
	// A message over a byte budget is still taken when nothing else waits
	// (queued, or left in the conn by writeNow).
	pending := len(pe.queue) > 0 || pe.unflushed > 0
	var err error
	switch {
	case pe.qclosed:
		err = net.ErrClosed
	case len(pe.queue) >= lim.QueueMessages || (pending && pe.qbytes+n > lim.QueueBytes):
		err = errQueueFull
	case pe.user.queued.Add(n) > lim.UserQueueBytes && pending:
		pe.user.queued.Add(-n)
		err = errUserBudget
	case pe.p.queued.Add(n) > lim.TotalQueueBytes && pending:
		pe.user.queued.Add(-n)
		pe.p.queued.Add(-n)
		err = errPlatformBudget
	}
	if err != nil {
		pe.qmu.Unlock()
		if full(err) {
			pe.stillFull()
		}
		return err
	}
	pe.queue = append(pe.queue, outMsg{frames: frames, size: n})
	pe.qbytes += n
	pe.qmu.Unlock()
	if wake {
		pe.wakeWriter()
	}
	return nil
}

// stillFull notes that a message found pe's queue full, and closes the
// connection when it has been full for longer than the slow-consumer
// limit (NATS's slow consumer).
func (pe *peer) stillFull() {
	now := time.Now().UnixNano()
	since := pe.fullSince.Load()
	if since == 0 {
		pe.fullSince.CompareAndSwap(0, now)
		return
	}
	if d := time.Duration(now - since); d > pe.p.cfg.limits.SlowConsumer {
		pe.closeSlow(fmt.Sprintf("slow consumer: its queue stayed full for %v", d.Round(time.Millisecond)))
	}
}

// unqueue gives back the budgets of n bytes written (or dropped).
func (pe *peer) unqueue(n int64) {
	pe.user.queued.Add(-n)
	pe.p.queued.Add(-n)
}

func (pe *peer) wakeWriter() {
	select {
	case pe.wake <- struct{}{}:
	default: // already woken
	}
}

// queued returns the messages and bytes queued towards the peer.
func (pe *peer) queued() (int, int64) {
	pe.qmu.Lock()
	defer pe.qmu.Unlock()
	return len(pe.queue), pe.qbytes
}

// finalGrace bounds how long a connection being closed by the platform may
// take to receive its last message (a peer that stops reading is closed
// anyway).
const finalGrace = 500 * time.Millisecond

// sendFinal queues frames after which the writer closes the connection; the
// reader ignores everything the peer sends from now on. If the queue is
// full, or the message is not written within finalGrace, the connection is
// closed without it.
func (pe *peer) sendFinal(frames [][]byte, reason string) {
	pe.setReason(reason)
	if !pe.closing.CompareAndSwap(false, true) {
		return
	}
	pe.qmu.Lock()
	if pe.qclosed {
		pe.qmu.Unlock()
		return
	}
	// The final message goes last, beyond the bounds: it is small (and
	// not counted in the budgets).
	pe.queue = append(pe.queue, outMsg{frames: frames, final: true})
	pe.qmu.Unlock()
	pe.finalTimer.Store(time.AfterFunc(finalGrace, func() { pe.close(reason) }))
	pe.wakeWriter()
}

// setReason records why the connection closes, unless a reason was
// already recorded; it reports whether this one was.
func (pe *peer) setReason(reason string) bool {
	return pe.closeErr.CompareAndSwap(nil, &reason)
}

// closeSlow closes a slow consumer's connection and counts it once,
// however many goroutines find it slow at the same time.
func (pe *peer) closeSlow(reason string) {
	if pe.setReason(reason) {
		pe.p.stats.slowConsumers.Add(1)
	}
	pe.close(reason)
}

// close closes the connection at once; the reader goroutine then cleans up.
func (pe *peer) close(reason string) {
	pe.setReason(reason)
	pe.closeOnce.Do(func() {
		pe.qmu.Lock()
		pe.qclosed = true
		var left int64
		for _, m := range pe.queue {
			left += m.size
		}
		left += pe.unflushed
		pe.queue = nil
		pe.qbytes, pe.unflushed = 0, 0
		pe.qmu.Unlock()
		pe.unqueue(left) // what the writer will never write
		close(pe.done)
		_ = pe.conn.Close()
	})
	if t := pe.finalTimer.Load(); t != nil {
		t.Stop()
	}
}

// reason tells why the platform closed the connection ("" if it did not).
func (pe *peer) reason() string {
	if r := pe.closeErr.Load(); r != nil {
		return *r
	}
	return ""
}

// writeLoop is the connection's writer: woken, it takes everything queued
// and writes it with one write, until nothing is left, unless another
// goroutine is writing (which looks at the queue again when done).
func (pe *peer) writeLoop() {
	defer close(pe.flushed)
	for {
		select {
		case <-pe.done:
			return
		case <-pe.wake:
		}
		for {
			pe.qmu.Lock()
			if pe.writing || (len(pe.queue) == 0 && pe.unflushed == 0) {
				pe.qmu.Unlock()
				break
			}
			batch, carried := pe.take()
			pe.qmu.Unlock()
			more, closed := pe.write(batch, carried, false)
			if closed {
				return
			}
			if !more {
				break
			}
		}
	}
}
