package platform

import (
	"errors"
	"fmt"
	"net"
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
	select {
	case pe.out <- outMsg{frames: frames, size: n}:
		return nil
	default:
		pe.queued.Add(-n)
		return errQueueFull
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
	select {
	case pe.out <- outMsg{frames: frames, final: true}:
		pe.finalTimer.Store(time.AfterFunc(finalGrace, func() { pe.close(reason) }))
	default:
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
	Cork()
	Uncork() error
}

// writeLoop is the connection's only writer.
func (pe *peer) writeLoop() {
	defer close(pe.flushed)
	for {
		select {
		case <-pe.done:
			return
		case m := <-pe.out:
			// Messages already queued behind m go out with it in one
			// write: the CURVE conn holds them until Uncork.
			corked := len(pe.out) > 0
			if corked {
				pe.conn.Cork()
			}
			for {
				pe.queued.Add(-m.size)
				if err := pe.conn.WriteMsg(m.frames); err != nil {
					pe.close(fmt.Sprintf("write: %v", err))
					return
				}
				if m.final {
					if corked {
						_ = pe.conn.Uncork()
					}
					pe.close(pe.reason())
					return
				}
				if !corked || len(pe.out) == 0 {
					break
				}
				m = <-pe.out
			}
			if corked {
				if err := pe.conn.Uncork(); err != nil {
					pe.close(fmt.Sprintf("write: %v", err))
					return
				}
			}
		}
	}
}
