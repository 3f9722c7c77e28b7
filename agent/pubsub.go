package agent

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// maxMailbox is how many messages may wait for one subscription's handler;
// beyond it, messages for that subscription are dropped and counted
// (Subscription.Dropped), with at most one warning per dropWarnEvery.
const maxMailbox = 1024

// dropWarnEvery bounds the warnings of a subscription that drops messages:
// a handler that falls behind a fast publisher would otherwise log one line
// per message.
const dropWarnEvery = 10 * time.Second

// yieldAt is the mailbox length from which the reader yields to the
// handler's goroutine before it posts (post).
const yieldAt = 64

// Message is a published message as a subscriber receives it.
type Message struct {
	// Topic is the topic it was published to.
	Topic string
	// Sender is the identity of the publishing agent, stamped by the
	// platform.
	Sender string
	// UserID is the publisher's user id, stamped by the platform.
	UserID string
	// Value is the published value, still encoded.
	Value rpc.Raw
}

// Decode decodes the message's value into v, a non-nil pointer.
func (m *Message) Decode(v any) error { return m.Value.Decode(v) }

// MessageHandler handles the messages of a subscription. Messages of one
// subscription are handled one at a time, in the order they arrived;
// different subscriptions are handled concurrently.
type MessageHandler func(ctx context.Context, m *Message)

// Subscription is an agent's interest in the topics matching a pattern.
type Subscription struct {
	a       *Agent
	pattern string
	fn      MessageHandler

	mu       sync.Mutex
	mailbox  []*Message
	running  bool
	closed   bool
	warnedAt time.Time // the last drop warning
	unwarned uint64    // drops since the last warning

	dropped atomic.Uint64
}

// Dropped returns how many messages for the subscription were dropped
// because its handler was maxMailbox (1,024) messages behind.
func (sub *Subscription) Dropped() uint64 { return sub.dropped.Load() }

// Pattern returns the subscription's topic pattern.
func (sub *Subscription) Pattern() string { return sub.pattern }

// Publish publishes value, encoded in msgpack, to topic, and waits for the
// platform to accept it. A publish the topic rules of auth.json refuse is an
// *rpc.Error matching rpc.ErrUnauthorized.
func (a *Agent) Publish(ctx context.Context, topic string, value any) error {
	if err := checkTopic(topic, false); err != nil {
		return err
	}
	payload, err := codec.Marshal(value)
	if err != nil {
		return rpc.Errorf(rpc.CodeInvalidArgs, "publish %s: cannot encode %T: %v", topic, value, err)
	}
	ctx, cancel := a.bound(ctx)
	defer cancel()
	s, err := a.current(ctx)
	if err != nil {
		return topicError(err, topic)
	}
	_, err = s.request(ctx, &message{Subsys: vip.SubPubsub,
		Args: [][]byte{[]byte(vip.OpPublish), []byte(topic), payload}}, 0)
	return topicError(err, topic)
}

// Subscribe calls fn for every message published to a topic matching
// pattern. Topics are "/"-separated segments; in a pattern "+" matches
// exactly one segment and "#", as the last segment, matches zero or more:
// "devices/+/temperature", "devices/#" (which matches "devices" and
// "devices/a/b", never "devicesX").
//
// While the agent is connected, Subscribe waits for the platform's
// acceptance and returns its refusal, an *rpc.Error matching
// rpc.ErrUnauthorized, if the topic rules of auth.json forbid the pattern.
// While disconnected it returns at once; the subscription is made on the
// next connection (a refusal is then logged). Subscriptions are renewed on
// every reconnection.
func (a *Agent) Subscribe(ctx context.Context, pattern string, fn MessageHandler) (*Subscription, error) {
	if err := checkTopic(pattern, true); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, fmt.Errorf("agent: Subscribe(%q): nil handler", pattern)
	}
	sub := &Subscription{a: a, pattern: pattern, fn: fn}
	a.mu.Lock()
	a.subs[sub] = struct{}{}
	a.subsV++
	s := a.sess
	a.mu.Unlock()
	if s == nil {
		return sub, nil
	}
	ctx, cancel := a.bound(ctx)
	defer cancel()
	if err := s.subscribe(ctx, pattern); err != nil {
		a.mu.Lock()
		delete(a.subs, sub)
		a.mu.Unlock()
		return nil, topicError(err, pattern)
	}
	return sub, nil
}

// Unsubscribe stops the subscription: no message is delivered to its
// handler after Unsubscribe returns, except one already being handled. The
// platform is told to stop sending when no other subscription of the agent
// has the same pattern.
func (sub *Subscription) Unsubscribe(ctx context.Context) error {
	a := sub.a
	sub.mu.Lock()
	sub.closed = true
	sub.mailbox = nil
	sub.mu.Unlock()

	a.mu.Lock()
	delete(a.subs, sub)
	a.subsV++
	shared := false
	for other := range a.subs {
		if other.pattern == sub.pattern {
			shared = true
			break
		}
	}
	s := a.sess
	a.mu.Unlock()
	if shared || s == nil {
		return nil
	}
	ctx, cancel := a.bound(ctx)
	defer cancel()
	_, err := s.request(ctx, &message{Subsys: vip.SubPubsub,
		Args: [][]byte{[]byte(vip.OpUnsubscribe), []byte(sub.pattern)}}, 0)
	return topicError(err, sub.pattern)
}

// subscribe asks the platform for the messages matching pattern.
func (s *session) subscribe(ctx context.Context, pattern string) error {
	_, err := s.request(ctx, &message{Subsys: vip.SubPubsub,
		Args: [][]byte{[]byte(vip.OpSubscribe), []byte(pattern)}}, 0)
	return err
}

// patterns returns the distinct patterns subscribed. a.mu must be held.
func (a *Agent) patterns() []string {
	seen := make(map[string]bool, len(a.subs))
	var ps []string
	for sub := range a.subs {
		if !seen[sub.pattern] {
			seen[sub.pattern] = true
			ps = append(ps, sub.pattern)
		}
	}
	return ps
}

// resubscribe subscribes the patterns not in done.
func (a *Agent) resubscribe(s *session, done []string) {
	a.mu.Lock()
	ps := a.patterns()
	a.mu.Unlock()
	for _, p := range ps {
		if containsString(done, p) {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, a.cfg.callTimeout)
		err := s.subscribe(ctx, p)
		cancel()
		if err != nil {
			a.log.Error("capbus agent: subscription refused", "pattern", p, "err", err)
		}
	}
}

// deliver hands a message, ["message", topic, VALUE], to every matching
// subscription.
func (a *Agent) deliver(s *session, m message) {
	msg := &Message{Topic: m.arg(1), Sender: m.Peer, UserID: m.User}
	if len(m.Args) > 2 {
		msg.Value = rpc.Raw(m.Args[2])
	}
	a.mu.RLock()
	var matched []*Subscription
	for sub := range a.subs {
		if vip.MatchTopic(sub.pattern, msg.Topic) {
			matched = append(matched, sub)
		}
	}
	a.mu.RUnlock()
	for _, sub := range matched {
		sub.post(s.ctx, msg)
	}
}

// post queues msg in the subscription's mailbox and starts its drainer if
// none runs.
func (sub *Subscription) post(ctx context.Context, msg *Message) {
	sub.mu.Lock()
	if n := len(sub.mailbox); n >= yieldAt && n < maxMailbox && sub.running {
		// A reader that always finds input never blocks, and the handler's
		// goroutine would wait for the scheduler to preempt the reader,
		// by which time the mailbox can be full: let it run.
		sub.mu.Unlock()
		runtime.Gosched()
		sub.mu.Lock()
	}
	defer sub.mu.Unlock()
	if sub.closed {
		return
	}
	if len(sub.mailbox) >= maxMailbox {
		all := sub.dropped.Add(1)
		sub.unwarned++
		if now := time.Now(); now.Sub(sub.warnedAt) >= dropWarnEvery {
			sub.a.log.Warn("capbus agent: subscription handler too slow; messages dropped", "pattern", sub.pattern,
				"topic", msg.Topic, "dropped", sub.unwarned, "dropped_in_all", all, "mailbox", maxMailbox)
			sub.warnedAt, sub.unwarned = now, 0
		}
		return
	}
	sub.mailbox = append(sub.mailbox, msg)
	if !sub.running {
		sub.running = true
		sub.a.handlers.Add(1)
		go sub.drain(ctx)
	}
}

// drain handles queued messages in order and exits when none is left.
func (sub *Subscription) drain(ctx context.Context) {
	defer sub.a.handlers.Done()
	for {
		sub.mu.Lock()
		if len(sub.mailbox) == 0 || sub.closed {
			sub.running = false
			sub.mailbox = nil
			sub.mu.Unlock()
			return
		}
		msg := sub.mailbox[0]
		sub.mailbox[0] = nil
		sub.mailbox = sub.mailbox[1:]
		sub.mu.Unlock()
		sub.handle(ctx, msg)
	}
}

func (sub *Subscription) handle(ctx context.Context, msg *Message) {
	defer func() {
		if p := recover(); p != nil {
			sub.a.log.Error("capbus agent: message handler panicked", "pattern", sub.pattern,
				"topic", msg.Topic, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	sub.fn(rpc.WithCaller(ctx, rpc.Principal{UserID: msg.UserID, Identity: msg.Sender}), msg)
}

// checkTopic validates a topic, or a pattern when wildcards are allowed, as
// the platform does (vip.CheckTopic).
func checkTopic(t string, wildcards bool) error {
	why := vip.CheckTopic(t, wildcards)
	switch {
	case why == "":
		return nil
	case wildcards:
		return rpc.Errorf(rpc.CodeInvalidArgs, "pattern %q: %s", t, why)
	}
	return rpc.Errorf(rpc.CodeInvalidArgs, "topic %q: %s", t, why)
}

// topicError names the topic in an *rpc.Error.
func topicError(err error, topic string) error { return located(err, "", "topic "+topic) }

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
