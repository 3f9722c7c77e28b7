package auth

import "strings"

// TopicOp is a pub/sub operation.
type TopicOp int

// Topic operations.
const (
	Publish TopicOp = iota + 1
	Subscribe
)

// String returns "publish" or "subscribe".
func (op TopicOp) String() string {
	switch op {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	}
	return "topic operation"
}

// topicNode is one level of the trie of protected topic patterns. Topics
// are split on "/"; "+" matches one segment and a trailing "#" matches the
// node itself and everything below it. Matching is per segment, so a rule
// on "devices/#" protects "devices" and "devices/a/b" but not "devicesX".
type topicNode struct {
	children map[string]*topicNode
	plus     *topicNode
	hash     *topicRule // pattern ".../#" ending here
	exact    *topicRule // pattern ending exactly here
}

// topicRule is one compiled entry of "topics".
type topicRule struct {
	pattern  string
	pub, sub *capReq // nil: nobody may (deny by default)
}

// capReq is a compiled list of capabilities.
type capReq struct {
	words   []wordMask
	names   []string
	unknown bool // names a capability nobody holds
}

func (r *topicRule) access(op TopicOp) *capReq {
	if op == Publish {
		return r.pub
	}
	return r.sub
}

// checkTopicPattern validates a topic pattern; it returns "" when valid.
func checkTopicPattern(pat string) string {
	if pat == "" {
		return "empty topic pattern"
	}
	segs := strings.Split(pat, "/")
	for i, s := range segs {
		switch {
		case s == "#" && i != len(segs)-1:
			return "\"#\" must be the last segment of a topic pattern"
		case s != "#" && s != "+" && strings.ContainsAny(s, "#+"):
			return "\"+\" and \"#\" must be whole segments (write devices/+/temp or devices/#)"
		}
	}
	return ""
}

func (c *compiler) compileTopics() {
	root := &topicNode{}
	for _, pat := range sortedKeys(c.f.Topics) {
		t := c.f.Topics[pat]
		path := joinKey("topics", pat)
		rule := &topicRule{pattern: pat}
		if t.Publish != nil {
			if rule.pub = c.capReq(path+".publish", *t.Publish); c.err != nil {
				return
			}
		}
		if t.Subscribe != nil {
			if rule.sub = c.capReq(path+".subscribe", *t.Subscribe); c.err != nil {
				return
			}
		}
		n := root
		segs := strings.Split(pat, "/")
		for i, s := range segs {
			if s == "#" && i == len(segs)-1 {
				n.hash = rule
				break
			}
			if s == "+" {
				if n.plus == nil {
					n.plus = &topicNode{}
				}
				n = n.plus
			} else {
				if n.children == nil {
					n.children = map[string]*topicNode{}
				}
				if n.children[s] == nil {
					n.children[s] = &topicNode{}
				}
				n = n.children[s]
			}
			if i == len(segs)-1 {
				n.exact = rule
			}
		}
	}
	c.p.topics = root
}

func (c *compiler) capReq(path string, names []string) *capReq {
	items := c.expandCaps(path, names, false)
	b := c.newCaps()
	r := &capReq{names: names}
	for _, it := range items {
		b.set(it.idx)
	}
	r.words = b.sparse()
	return r
}

// DecideTopic judges a publish to a topic or a subscription to a topic
// filter ("+" one segment, "#" the rest). Topics outside every protected
// tree are open to authenticated peers; inside one, every matching rule
// must allow the operation, and a rule that does not list the operation
// refuses it (deny by default). A subscription filter is judged against
// every protected tree it could receive messages from. The allowed path
// does not allocate.
func (p *Policy) DecideTopic(s *Subject, op TopicOp, topic string) Decision {
	if op == Subscribe {
		// A filter's trailing "/" is ignored in delivery ("alarm/"
		// receives what "alarm" does): judge it as that filter.
		topic = strings.TrimSuffix(topic, "/")
	}
	d := Decision{Generation: p.gen, p: p, s: s, op: op, topic: topic}
	switch {
	case p.closed:
		d.why = reasonClosed
	case s == nil:
		d.why = reasonInvalid
	case s.p != p:
		d.why = reasonStale
	case topic == "" || (op == Publish && strings.ContainsAny(topic, "+#")) || (op != Publish && op != Subscribe):
		d.why = reasonTopicWildcard
	default:
		if rule, why := p.matchTopic(p.topics, s, op, topic, false); rule != nil {
			d.rule, d.why = rule, why
			return d
		}
		d.Allowed = true
	}
	return d
}

// checkRule returns a deny reason when s may not perform op under rule.
func checkRule(rule *topicRule, s *Subject, op TopicOp) denyReason {
	req := rule.access(op)
	if req == nil {
		return reasonTopicClosed
	}
	if req.unknown || !s.caps.holds(req.words) {
		return reasonTopicMissing
	}
	return reasonNone
}

// matchTopic walks the trie along topic (rest of the segments; end when
// none is left) and returns the first rule that refuses.
func (p *Policy) matchTopic(n *topicNode, s *Subject, op TopicOp, rest string, end bool) (*topicRule, denyReason) {
	if n.hash != nil {
		if why := checkRule(n.hash, s, op); why != reasonNone {
			return n.hash, why
		}
	}
	if end {
		if n.exact != nil {
			if why := checkRule(n.exact, s, op); why != reasonNone {
				return n.exact, why
			}
		}
		return nil, reasonNone
	}
	seg, next, more := strings.Cut(rest, "/")
	if op == Subscribe && seg == "#" {
		return p.matchAll(n, s, op)
	}
	if op == Subscribe && seg == "+" {
		for _, c := range n.children {
			if r, why := p.matchTopic(c, s, op, next, !more); r != nil {
				return r, why
			}
		}
	} else if c := n.children[seg]; c != nil {
		if r, why := p.matchTopic(c, s, op, next, !more); r != nil {
			return r, why
		}
	}
	if n.plus != nil {
		return p.matchTopic(n.plus, s, op, next, !more)
	}
	return nil, reasonNone
}

// matchAll checks every rule at or below n (a subscription to ".../#").
func (p *Policy) matchAll(n *topicNode, s *Subject, op TopicOp) (*topicRule, denyReason) {
	for _, r := range []*topicRule{n.hash, n.exact} {
		if r != nil {
			if why := checkRule(r, s, op); why != reasonNone {
				return r, why
			}
		}
	}
	for _, c := range n.children {
		if r, why := p.matchAll(c, s, op); r != nil {
			return r, why
		}
	}
	if n.plus != nil {
		return p.matchAll(n.plus, s, op)
	}
	return nil, reasonNone
}
