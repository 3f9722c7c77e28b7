package auth

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/capbus/capbus/keys"
)

// Policy is a compiled auth.json: every decision is a lookup in tables built
// once at load. A Policy is immutable and safe for concurrent use.
type Policy struct {
	name   string
	gen    uint64
	closed bool

	capNames  []string
	capIndex  map[string]int
	roleNames []string
	roleIndex map[string]int
	capGroups map[string][]capItem // capability group -> leaves (no negations)
	roleItems map[string][]capItem // role -> capability grants and negations
	groups    map[string][]string  // group -> roles

	users     map[string]*user
	byKey     map[keys.Key]*user
	byPattern []*user // users whose credentials are a /regex/
	star      *Entry  // the "*" entry, or nil
	starIndex int
	deny      []denyRule

	boundExact   map[string]*user // identity -> the user whose entry names it exactly
	boundPattern []*user          // users with identity patterns

	methods       map[string]*methodReq
	topics        *topicNode
	denyByDefault DenyMode
	site          map[string]*siteRule

	restrictedAnywhere bitset // capabilities granted with parameter restrictions somewhere

	matchers map[string]matcher // compiled parameter restrictions, written only while compiling
}

// matcher returns the compiled matcher for a parameter restriction, caching
// it while the policy is being compiled (the cache is read-only afterwards).
func (p *Policy) matcher(text string, compiling bool) (matcher, error) {
	if m, ok := p.matchers[text]; ok {
		return m, nil
	}
	m, err := compileMatcher(text)
	if err == nil && compiling {
		if p.matchers == nil {
			p.matchers = map[string]matcher{}
		}
		p.matchers[text] = m
	}
	return m, err
}

// capItem is one capability grant or negation after expanding capability
// groups.
type capItem struct {
	idx      int
	neg      bool
	capGroup string // the capability group it came from, if any
}

// matcher matches a string exactly or by an anchored /regex/. The zero value
// matches anything.
type matcher struct {
	text string
	re   *regexp.Regexp
}

func (m matcher) any() bool { return m.text == "" }

func (m matcher) match(s string) bool {
	switch {
	case m.text == "":
		return true
	case m.re != nil:
		return m.re.MatchString(s)
	default:
		return m.text == s
	}
}

// isRegex reports whether s is VOLTTRON's /regex/ form.
func isRegex(s string) bool { return len(s) > 1 && s[0] == '/' && s[len(s)-1] == '/' }

// compileMatcher compiles an exact value or a /regex/ anchored at both ends.
func compileMatcher(s string) (matcher, error) {
	if !isRegex(s) {
		return matcher{text: s}, nil
	}
	re, err := regexp.Compile(`^(?:` + s[1:len(s)-1] + `)$`)
	if err != nil {
		return matcher{}, fmt.Errorf("invalid regular expression %s: %v", s, err)
	}
	return matcher{text: s, re: re}, nil
}

// user is one compiled allow entry.
type user struct {
	id        string
	path      string // allow[i]
	entry     *Entry
	enabled   bool
	key       keys.Key
	hasKey    bool
	cred      matcher // for /regex/ credentials
	domain    matcher
	address   matcher
	mechanism string
	binds     []matcher // identity + identities; empty = unrestricted
	attrs     map[string]string

	caps           bitset // effective capabilities (negations and limit applied)
	roles          bitset
	negs           bitset // capabilities negated for the user
	restrictedOnly bitset // held only through parameter-restricted grants
	restrictions   map[int][]paramSet
	agents         map[string]*narrowing
	rpcAuth        map[string][]string // method -> capabilities (callee side)
}

// narrowing is an agent-level restriction of a user's grants.
type narrowing struct {
	identity string
	narrows  bool   // caps and roles intersect the user's grants
	caps     bitset // narrowing: what the identity may keep
	roles    bitset
	// Grants of the rule ("grant"), on top of the user's, with the user's
	// negations and the site limit applied; nil without a grant.
	grantCaps, grantRoles bitset
	grantPath             string
}

// paramSet is one parameter-restricted grant: every parameter must match.
type paramSet struct {
	source Source
	conds  []paramCond
}

type paramCond struct {
	name string
	m    matcher
}

type denyRule struct {
	path    string
	userID  string
	key     keys.Key
	hasKey  bool
	cred    matcher
	domain  matcher
	address matcher
}

type siteRule struct {
	path     string
	limit    bitset // nil: no limit
	defaults []capItem
}

// methodReq is an operator requirement from "methods".
type methodReq struct {
	path        string
	caps, roles []string
	self        bool
	callerAttrs map[string]string
	sameAttrs   []string
}

// ClosedPolicy returns a policy that admits nobody and allows nothing.
func ClosedPolicy() *Policy { return closedPolicy("") }

func closedPolicy(name string) *Policy {
	return &Policy{
		name: name, gen: 1, closed: true,
		capIndex: map[string]int{}, roleIndex: map[string]int{},
		users: map[string]*user{}, byKey: map[keys.Key]*user{}, boundExact: map[string]*user{},
		methods: map[string]*methodReq{}, topics: &topicNode{}, site: map[string]*siteRule{},
	}
}

// Generation is the policy generation: 1 for a policy from Parse or
// LoadFile, incremented by a Store on every successful reload (and on a
// deletion, which installs a closed policy).
func (p *Policy) Generation() uint64 { return p.gen }

// Closed reports whether this is a closed policy (no file, an empty file, or
// a deleted file): it admits nobody.
func (p *Policy) Closed() bool { return p.closed }

// DenyAllByDefault reports whether methods that declare no requirement are
// refused unless the caller holds "identity.method".
func (p *Policy) DenyAllByDefault() bool { return p.denyByDefault != DenyNone }

// DenyByDefault returns whom deny_by_default applies to.
func (p *Policy) DenyByDefault() DenyMode { return p.denyByDefault }

// Name is the file name the policy was loaded from.
func (p *Policy) Name() string { return p.name }

// Users returns the user ids of the allow entries, sorted ("*" excluded).
func (p *Policy) Users() []string {
	out := make([]string, 0, len(p.users))
	for id := range p.users {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
