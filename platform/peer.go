package platform

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/go-zeromq/zmq4"
)

// errQueueFull is returned by peer.send when the peer's queue is full.
var errQueueFull = errors.New("queue full")

// outMsg is one message queued towards a peer.
type outMsg struct {
	frames [][]byte
	size   int64
	final  bool // close the connection once written
	flush  bool // nothing to write: write what the conn holds
}

// peer is one authenticated connection.
//
// The fields set at accept (key, userID, remoteAddr, routingID) never
// change. identity, exports and welcomed are set once by hello (under the
// platform's lock for the routing table). The reader goroutine owns the
// remaining unguarded fields.
type peer struct {
	p          *Platform
	id         uint64
	routingID  string
	key        auth.Key
	userID     string
	userBytes  []byte
	remoteAddr string
	conn       msgConn
	zc         *zmq4.Conn // opened the ZMTP session; messages go through conn

	out        chan outMsg
	queued     atomic.Int64 // bytes queued
	pending    atomic.Int64 // messages in out or being written by the writer
	wmu        sync.Mutex   // held by the writer, or by a reader sealing inline
	inline     bool         // conn can hold sealed messages (set at accept)
	held       []*peer      // reader-owned: peers holding messages this reader sealed
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

	exports atomic.Pointer[exportTable]

	// Owned by the reader goroutine.
	subj      *auth.Subject
	subjPol   *auth.Policy
	protoErrs int
	subs      map[string]struct{} // guarded by p.subMu
}

// exportTable is an immutable map of method name to export, replaced whole
// on every export update.
type exportTable map[string]*export

func (pe *peer) principal() auth.Principal {
	return auth.Principal{UserID: pe.userID, Identity: pe.identity, Key: pe.key}
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
	s, err := pol.Subject(pe.principal())
	if err != nil {
		return nil, err
	}
	pe.subj, pe.subjPol = s, pol
	return s, nil
}

// send queues frames towards the peer without blocking. It fails with
// errQueueFull, or net.ErrClosed once the connection is being closed.
func (pe *peer) send(frames [][]byte) error {
	if pe.closing.Load() {
		return net.ErrClosed
	}
	var n int64
	for _, f := range frames {
		n += int64(len(f))
	}
	if pe.queued.Add(n) > pe.p.cfg.queueBytes {
		pe.queued.Add(-n)
		return errQueueFull
	}
	select {
	case <-pe.done:
		pe.queued.Add(-n)
		return net.ErrClosed
	default:
	}
	pe.pending.Add(1)
	select {
	case pe.out <- outMsg{frames: frames, size: n}:
		return nil
	default:
		pe.pending.Add(-1)
		pe.queued.Add(-n)
		return errQueueFull
	}
}

// holdLimit bounds the sealed bytes readers hold for a peer before its
// writer must write them.
const holdLimit = 256 << 10

// sendFrom is send for a message that src's reader goroutine forwards. When
// the peer's writer is idle and nothing is queued for it, the reader seals
// the message into the peer's conn itself and notes the peer in src.held:
// the reader writes everything it held, with one non-blocking write per
// peer, when it has handled all the input it received (flushHeld). This
// saves waking the writer goroutine for each message, and a burst of
// messages read together goes out together. A peer whose socket does not
// take it all is left to its writer, so a slow peer never blocks src.
func (pe *peer) sendFrom(src *peer, frames [][]byte) error {
	if src.inline && pe.inline && pe.pending.Load() == 0 && !pe.closing.Load() && pe.wmu.TryLock() {
		if pe.pending.Load() == 0 && pe.conn.Held() < holdLimit {
			err := pe.conn.QueueMsg(frames)
			pe.wmu.Unlock()
			if err != nil {
				pe.close(fmt.Sprintf("write: %v", err))
				return net.ErrClosed
			}
			if !slices.Contains(src.held, pe) {
				src.held = append(src.held, pe)
			}
			return nil
		}
		pe.wmu.Unlock()
	}
	return pe.send(frames)
}

// flushHeld writes what src's reader sealed for other peers. A peer whose
// lock is taken needs nothing from us: its writer writes everything the
// conn holds before it lets go, and another reader that holds it either
// seals a message of its own (and will flush the conn at the end of its
// burst) or queues one for the writer. Only src's reader goroutine calls
// it.
func (src *peer) flushHeld() {
	for i, pe := range src.held {
		src.held[i] = nil
		if !pe.wmu.TryLock() {
			continue
		}
		done, err := pe.conn.TryFlush()
		pe.wmu.Unlock()
		switch {
		case err != nil:
			pe.close(fmt.Sprintf("write: %v", err))
		case !done:
			pe.kick()
		}
	}
	src.held = src.held[:0]
}

// kick asks the writer to write what the conn holds. If the queue is full
// the writer is busy and writes it anyway.
func (pe *peer) kick() {
	pe.pending.Add(1)
	select {
	case pe.out <- outMsg{flush: true}:
	default:
		pe.pending.Add(-1)
	}
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
	pe.pending.Add(1)
	select {
	case pe.out <- outMsg{frames: frames, final: true}:
		pe.finalTimer.Store(time.AfterFunc(finalGrace, func() { pe.close(reason) }))
	default:
		pe.pending.Add(-1)
		pe.close(reason)
	}
}

func (pe *peer) setReason(reason string) {
	pe.closeErr.CompareAndSwap(nil, &reason)
}

// close closes the connection at once; the reader goroutine then cleans up.
func (pe *peer) close(reason string) {
	pe.setReason(reason)
	pe.closeOnce.Do(func() {
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

// msgConn is the connection (a *curve.Conn): once zmq4 has opened the
// ZMTP session on it, messages are read and written whole, and it can hold
// complete messages and write them together.
type msgConn interface {
	net.Conn
	ReadMsg() ([][]byte, error)
	WriteMsg(frames [][]byte) error
	QueueMsg(frames [][]byte) error
	Held() int
	TryFlush() (bool, error)
	Cork()
	Uncork() error
}

// writeLoop is the connection's writer: it writes what is queued, and
// what readers held for the conn (sendFrom) when they ask it to.
func (pe *peer) writeLoop() {
	defer close(pe.flushed)
	for {
		select {
		case <-pe.done:
			return
		case m := <-pe.out:
			pe.wmu.Lock()
			if !pe.writeQueued(m) {
				pe.wmu.Unlock()
				return
			}
			pe.wmu.Unlock()
		}
	}
}

// writeQueued writes m and the messages queued behind it (held by the CURVE
// conn until Uncork, so that they go out in one write), then everything
// the conn holds. It reports false when the writer must stop.
func (pe *peer) writeQueued(m outMsg) bool {
	corked := len(pe.out) > 0
	if corked {
		pe.conn.Cork()
	}
	for {
		pe.queued.Add(-m.size)
		if !m.flush {
			if err := pe.conn.WriteMsg(m.frames); err != nil {
				pe.close(fmt.Sprintf("write: %v", err))
				return false
			}
		}
		pe.pending.Add(-1)
		if m.final {
			_ = pe.conn.Uncork()
			pe.close(pe.reason())
			return false
		}
		if !corked || len(pe.out) == 0 {
			break
		}
		m = <-pe.out
	}
	// Uncork also writes what readers held, even when not corked.
	if err := pe.conn.Uncork(); err != nil {
		pe.close(fmt.Sprintf("write: %v", err))
		return false
	}
	return true
}
