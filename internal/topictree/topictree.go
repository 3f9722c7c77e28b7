// Package topictree indexes topic subscriptions so that finding the
// subscribers of a published topic costs what it delivers, not what is
// subscribed.
//
// An Index is a trie of topic segments. A pattern's literal segments, its
// "+" and its final "#" are nodes; a publish walks the topic's segments from
// the root, following at each node the child of the same name, the "+" child
// and the "#" child. Its cost grows with the topic's depth and the wildcard
// patterns along its path, not with the number of subscriptions.
//
// Matching is that of vip.MatchTopic for every pattern and topic that
// vip.CheckTopic accepts, including its edge cases: a pattern's trailing "/"
// is ignored ("a/" matches as "a"), and "+" never matches the empty last
// segment of a topic that ends in "/" ("a/+" does not match "a/", "a/#" and
// "a//" do).
package topictree

import (
	"strings"
	"sync"

	"github.com/capbus/capbus/internal/vip"
)

// Index maps subscription patterns to subscribers of type S (the platform's
// connection handle). It is safe for concurrent use: Match calls run in
// parallel with one another under a read lock; Add and Remove take the
// write lock. (A read-write lock rather than an immutable snapshot swapped
// on each change: subscriptions change often, and copying the trie on each
// change would cost what Match saves.) The zero value is not ready for
// use; call New.
type Index[S comparable] struct {
	mu   sync.RWMutex
	root *node[S]
	n    int // subscriptions

	bufs sync.Pool // *matchBuf[S]
}

// forms of a pattern at one node: "a" and "a/" match alike and share the
// node; they stay two subscriptions.
const (
	formPlain    uint8 = 1 << iota // no trailing "/"
	formTrailing                   // a trailing "/", dropped for matching
)

type entry[S comparable] struct {
	s     S
	forms uint8
}

// indexed is the size above which a node keeps a map from subscriber to its
// position in subs, so that Add and Remove stay O(1) on a crowded pattern.
const indexed = 8

type node[S comparable] struct {
	parent   *node[S]
	seg      string              // this node's segment in parent ("+" and "#" included)
	children map[string]*node[S] // literal segments
	plus     *node[S]            // "+"
	hash     *node[S]            // a final "#"
	subs     []entry[S]          // patterns ending here
	pos      map[S]int           // subscriber -> index in subs, when len(subs) > indexed
}

// New returns an empty Index.
func New[S comparable]() *Index[S] {
	return &Index[S]{root: &node[S]{}}
}

// form splits off a pattern's trailing "/", which vip.MatchTopic ignores.
func form(pattern string) (string, uint8) {
	if strings.HasSuffix(pattern, "/") {
		return pattern[:len(pattern)-1], formTrailing
	}
	return pattern, formPlain
}

// Add subscribes s to pattern and reports whether that subscription is new:
// adding the same (pattern, s) again is a no-op that returns false. A
// pattern that vip.CheckTopic rejects is not added (false); callers that
// answer the subscriber check it first for the error text.
func (x *Index[S]) Add(pattern string, s S) (added bool) {
	if vip.CheckTopic(pattern, true) != "" {
		return false
	}
	path, f := form(pattern)
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.root
	for rest, more := path, true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		n = n.child(seg)
	}
	if !n.add(s, f) {
		return false
	}
	x.n++
	return true
}

// Remove unsubscribes s from pattern and reports whether it was subscribed.
// Nodes left without subscriptions or children are pruned.
func (x *Index[S]) Remove(pattern string, s S) (removed bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.removeLocked(pattern, s)
}

// RemoveAll unsubscribes s from each of patterns (a closing connection's
// subscriptions) under one lock, and returns how many it removed.
func (x *Index[S]) RemoveAll(s S, patterns []string) (removed int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range patterns {
		if x.removeLocked(p, s) {
			removed++
		}
	}
	return removed
}

func (x *Index[S]) removeLocked(pattern string, s S) bool {
	path, f := form(pattern)
	n := x.root
	for rest, more := path, true; more && n != nil; {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		n = n.lookup(seg)
	}
	if n == nil || !n.remove(s, f) {
		return false
	}
	x.n--
	for n != x.root && n.empty() {
		n.parent.unlink(n)
		n = n.parent
	}
	return true
}

// Len returns the number of subscriptions: distinct (pattern, subscriber)
// pairs.
func (x *Index[S]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// Match calls fn once for each subscriber with at least one pattern that
// matches topic (a topic vip.CheckTopic accepts without wildcards), however
// many of its patterns match. The subscribers are collected under the read
// lock and fn runs after it is released, so fn may call Add or Remove (a
// subscriber removed meanwhile may still be called once for this topic),
// and a slow fn delays no other caller.
func (x *Index[S]) Match(topic string, fn func(S)) {
	b, _ := x.bufs.Get().(*matchBuf[S])
	if b == nil {
		b = new(matchBuf[S])
	}
	x.mu.RLock()
	walk(x.root, topic, false, b)
	x.mu.RUnlock()
	for _, s := range b.out {
		fn(s)
	}
	b.reset()
	x.bufs.Put(b)
}

// walk adds to b the subscribers of the patterns under n that match the
// rest of the topic; done means no segment is left.
func walk[S comparable](n *node[S], topic string, done bool, b *matchBuf[S]) {
	if n.hash != nil {
		b.add(n.hash.subs) // "#" matches zero or more segments
	}
	if done {
		b.add(n.subs)
		return
	}
	seg, rest, more := strings.Cut(topic, "/")
	if c := n.children[seg]; c != nil {
		walk(c, rest, !more, b)
	}
	// "+" matches one segment, but not the empty one after a final "/":
	// vip.MatchTopic sees the topic as ended there.
	if n.plus != nil && (seg != "" || more) {
		walk(n.plus, rest, !more, b)
	}
}

// child returns n's child for seg, creating it.
func (n *node[S]) child(seg string) *node[S] {
	if c := n.lookup(seg); c != nil {
		return c
	}
	c := &node[S]{parent: n, seg: seg}
	switch seg {
	case "+":
		n.plus = c
	case "#":
		n.hash = c
	default:
		if n.children == nil {
			n.children = make(map[string]*node[S])
		}
		n.children[seg] = c
	}
	return c
}

func (n *node[S]) lookup(seg string) *node[S] {
	switch seg {
	case "+":
		return n.plus
	case "#":
		return n.hash
	default:
		return n.children[seg]
	}
}

func (n *node[S]) unlink(c *node[S]) {
	switch c {
	case n.plus:
		n.plus = nil
	case n.hash:
		n.hash = nil
	default:
		delete(n.children, c.seg)
	}
}

func (n *node[S]) empty() bool {
	return len(n.subs) == 0 && len(n.children) == 0 && n.plus == nil && n.hash == nil
}

func (n *node[S]) find(s S) int {
	if n.pos != nil {
		if i, ok := n.pos[s]; ok {
			return i
		}
		return -1
	}
	for i := range n.subs {
		if n.subs[i].s == s {
			return i
		}
	}
	return -1
}

// add records form f of s's pattern at n; false if it was there.
func (n *node[S]) add(s S, f uint8) bool {
	if i := n.find(s); i >= 0 {
		if n.subs[i].forms&f != 0 {
			return false
		}
		n.subs[i].forms |= f
		return true
	}
	n.subs = append(n.subs, entry[S]{s: s, forms: f})
	switch {
	case n.pos != nil:
		n.pos[s] = len(n.subs) - 1
	case len(n.subs) > indexed:
		n.pos = make(map[S]int, len(n.subs))
		for i, e := range n.subs {
			n.pos[e.s] = i
		}
	}
	return true
}

// remove drops form f of s's pattern at n; false if it was not there.
func (n *node[S]) remove(s S, f uint8) bool {
	i := n.find(s)
	if i < 0 || n.subs[i].forms&f == 0 {
		return false
	}
	if n.subs[i].forms &^= f; n.subs[i].forms != 0 {
		return true
	}
	last := len(n.subs) - 1
	n.subs[i] = n.subs[last]
	n.subs[last] = entry[S]{}
	n.subs = n.subs[:last]
	if n.pos != nil {
		delete(n.pos, s)
		if i < last {
			n.pos[n.subs[i].s] = i
		}
		if len(n.subs) <= indexed/2 {
			n.pos = nil
		}
	}
	if len(n.subs) == 0 {
		n.subs = nil
	}
	return true
}

// dedupLinear is the number of collected subscribers up to which Match
// deduplicates by scanning them; above it, with a map.
const dedupLinear = 16

// matchBuf collects one Match's subscribers, each once. Match takes it from
// a pool, so that a Match allocates nothing in the common case.
type matchBuf[S comparable] struct {
	out  []S
	seen map[S]struct{} // mirrors out once it outgrew dedupLinear
	big  bool           // seen is in use
}

func (b *matchBuf[S]) add(es []entry[S]) {
	if len(b.out) == 0 {
		// The first node's subscribers: one node holds each at most once.
		for _, e := range es {
			b.out = append(b.out, e.s)
		}
		return
	}
	for _, e := range es {
		if b.has(e.s) {
			continue
		}
		b.out = append(b.out, e.s)
		if b.big {
			b.seen[e.s] = struct{}{}
		}
	}
}

func (b *matchBuf[S]) has(s S) bool {
	if !b.big {
		if len(b.out) <= dedupLinear {
			for _, o := range b.out {
				if o == s {
					return true
				}
			}
			return false
		}
		if b.seen == nil {
			b.seen = make(map[S]struct{}, 2*len(b.out))
		}
		for _, o := range b.out {
			b.seen[o] = struct{}{}
		}
		b.big = true
	}
	_, ok := b.seen[s]
	return ok
}

// maxPooled bounds the subscribers a pooled buffer keeps room for, so that
// one huge fan-out does not pin its memory.
const maxPooled = 4096

func (b *matchBuf[S]) reset() {
	clear(b.out) // drop references to the subscribers
	b.out = b.out[:0]
	if cap(b.out) > maxPooled {
		b.out = nil
	}
	if b.big {
		if len(b.seen) > maxPooled {
			b.seen = nil
		} else {
			clear(b.seen)
		}
		b.big = false
	}
}
