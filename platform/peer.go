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
// Goroutines: the connection's reader (serve, readLoop) handles everything
// the peer sends; its writer (writeLoop) is the only goroutine that writes
// to conn. Any goroutine may queue a message for the peer (send).
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

	// The queue towards the peer, taken whole by its writer.
	qmu     sync.Mutex
	queue   []outMsg
	qbytes  int64
	qclosed bool
	wake    chan struct{} // capacity 1: the writer has messages to write
	touched []*peer       // reader-owned: peers whose writer it must wake

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

	exports atomic.Pointer[exportTable]

	// configWatch is set once the peer asked for the changes of its own
	// configuration store (config.go).
	configWatch atomic.Bool

	// Counters, for operators.
	callsIn, callsOut atomic.Uint64

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
	s, err := pol.Subject(pe.principal())
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

// flushTouched wakes the writers of the peers src's reader queued messages
// for. Only src's reader calls it.
func (src *peer) flushTouched() {
	for i, pe := range src.touched {
		pe.wakeWriter()
		src.touched[i] = nil
	}
	src.touched = src.touched[:0]
}

func (pe *peer) push(frames [][]byte, wake bool) error {
	if pe.closing.Load() {
		return net.ErrClosed
	}
	var n int64
	for _, f := range frames {
		n += int64(len(f))
	}
	pe.qmu.Lock()
	switch {
	case pe.qclosed:
		pe.qmu.Unlock()
		return net.ErrClosed
	case len(pe.queue) >= pe.p.cfg.queueSize || pe.qbytes+n > pe.p.cfg.queueBytes:
		pe.qmu.Unlock()
		return errQueueFull
	}
	pe.queue = append(pe.queue, outMsg{frames: frames, size: n})
	pe.qbytes += n
	pe.qmu.Unlock()
	if wake {
		pe.wakeWriter()
	}
	return nil
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
	// The final message goes last, beyond the bounds: it is small.
	pe.queue = append(pe.queue, outMsg{frames: frames, final: true})
	pe.qmu.Unlock()
	pe.finalTimer.Store(time.AfterFunc(finalGrace, func() { pe.close(reason) }))
	pe.wakeWriter()
}

func (pe *peer) setReason(reason string) {
	pe.closeErr.CompareAndSwap(nil, &reason)
}

// close closes the connection at once; the reader goroutine then cleans up.
func (pe *peer) close(reason string) {
	pe.setReason(reason)
	pe.closeOnce.Do(func() {
		pe.qmu.Lock()
		pe.qclosed = true
		pe.qmu.Unlock()
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

// writeLoop is the connection's writer: it takes everything queued and
// writes it with one write.
func (pe *peer) writeLoop() {
	defer close(pe.flushed)
	var batch []outMsg
	var frames [][][]byte
	for {
		select {
		case <-pe.done:
			return
		case <-pe.wake:
		}
		pe.qmu.Lock()
		batch, pe.queue = pe.queue, batch[:0]
		pe.qmu.Unlock()
		if len(batch) == 0 {
			continue
		}
		final := false
		var size int64
		frames = frames[:0]
		for _, m := range batch {
			frames = append(frames, m.frames)
			size += m.size
			if m.final {
				final = true
				break
			}
		}
		err := pe.conn.WriteMsgs(frames)
		pe.qmu.Lock()
		pe.qbytes -= size
		pe.qmu.Unlock()
		clear(batch) // keep no payload alive
		clear(frames)
		switch {
		case err != nil:
			pe.close(fmt.Sprintf("write: %v", err))
			return
		case final:
			pe.close(pe.reason())
			return
		}
	}
}
