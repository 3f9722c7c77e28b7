package auth

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
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
	byKey     map[Key]*user
	byPattern []*user // users whose credentials are a /regex/
	star      *Entry  // the "*" entry, or nil
	starIndex int
	deny      []denyRule

	boundExact   map[string]*user // identity -> the user whose entry names it exactly
	boundPattern []*user          // users with identity patterns

	methods       map[string]*methodReq
	topics        *topicNode
	denyByDefault bool
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
	key       Key
	hasKey    bool
	cred      matcher // for /regex/ credentials
	domain    matcher
	address   matcher
	mechanism string
	binds     []matcher // identity + identities; empty = unrestricted
	attrs     map[string]string

	caps           bitset // effective capabilities (negations and limit applied)
	roles          bitset
	restrictedOnly bitset // held only through parameter-restricted grants
	restrictions   map[int][]paramSet
	agents         map[string]*narrowing
	rpcAuth        map[string][]string // method -> capabilities (callee side)
}

// narrowing is an agent-level restriction of a user's grants.
type narrowing struct {
	identity string
	caps     bitset
	roles    bitset
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
	key     Key
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
		users: map[string]*user{}, byKey: map[Key]*user{}, boundExact: map[string]*user{},
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
func (p *Policy) DenyAllByDefault() bool { return p.denyByDefault }

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

// compiler holds the state of one Compile call.
type compiler struct {
	f    *File
	p    *Policy
	err  *ValidationError
	slab []uint64

	roleSets  map[string]*grantSet
	groupSets map[string]*grantSet
	starSet   *grantSet
}

func (c *compiler) fail(path, format string, args ...any) {
	if c.err != nil {
		return
	}
	e := &ValidationError{File: c.f.name, Path: path, Msg: fmt.Sprintf(format, args...)}
	if c.f.root != nil && c.f.unmodified() {
		// Use the position of the path, or of its nearest parent.
		for p := path; ; p = parentPath(p) {
			if n := c.f.root.lookup(p); n != nil {
				e.Line, e.Column = lineCol(c.f.data, n.off)
				break
			}
			if p == "" {
				break
			}
		}
	}
	c.err = e
}

// parentPath removes the last element of a JSON path.
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndex(p, "["); i >= 0 {
			// Skip brackets inside a quoted key such as ["a[1]"].
			if j := strings.LastIndex(p, "[\""); j >= 0 && strings.HasSuffix(p, "\"]") {
				return p[:j]
			}
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Compile validates the references in the document (roles, groups, user
// ids, keys, patterns) and compiles it. name is used in error messages; the
// line and column are known when f came from ParseFile.
func (f *File) Compile(name string) (pol *Policy, err error) {
	defer func() {
		if r := recover(); r != nil {
			pol, err = nil, &ValidationError{File: name, Msg: fmt.Sprintf("internal error compiling policy: %v", r)}
		}
	}()
	if name != "" {
		f.name = name
	}
	c := &compiler{f: f, p: closedPolicy(f.name)}
	c.p.closed = false
	c.compile()
	if c.err != nil {
		return nil, c.err
	}
	return c.p, nil
}

func (c *compiler) compile() {
	f, p := c.f, c.p
	p.denyByDefault = f.DenyByDefault
	p.groups = map[string][]string{}
	p.roleItems = map[string][]capItem{}
	p.capGroups = map[string][]capItem{}

	c.internAll()
	c.compileCapGroups()
	if c.err != nil {
		return
	}
	for _, r := range sortedKeys(f.Roles) {
		items := c.expandCaps(joinKey("roles", r), f.Roles[r], true)
		p.roleItems[r] = items
	}
	for _, g := range sortedKeys(f.Groups) {
		for i, r := range f.Groups[g] {
			if _, ok := f.Roles[r]; !ok {
				c.fail(joinIndex(joinKey("groups", g), i), "group %q names role %q, which is not defined in \"roles\"%s", g, r, didYouMean(r, sortedKeys(f.Roles)))
				return
			}
		}
		p.groups[g] = f.Groups[g]
	}
	c.compileSite()
	c.compileEntries()
	c.compileDeny()
	c.compileMethods()
	c.compileTopics()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func didYouMean(s string, known []string) string {
	if x := suggest(s, known); x != "" {
		return fmt.Sprintf("; did you mean %q?", x)
	}
	return ""
}

// internAll assigns bit indices to every capability and role name in the
// document, in sorted order so that compiling the same file twice gives the
// same indices.
func (c *compiler) internAll() {
	f, p := c.f, c.p
	caps := map[string]bool{}
	addCap := func(names ...string) {
		for _, n := range names {
			n = strings.TrimPrefix(n, "!")
			if _, isGroup := f.CapabilityGroups[n]; !isGroup && n != "" {
				caps[n] = true
			}
		}
	}
	for _, l := range f.Roles {
		addCap(l...)
	}
	for _, l := range f.CapabilityGroups {
		addCap(l...)
	}
	for i := range f.Allow {
		e := &f.Allow[i]
		addCap(e.Capabilities.Names()...)
		for _, l := range e.RPCMethodAuthorizations {
			addCap(l...)
		}
		for _, a := range e.Agents {
			addCap(a.Capabilities...)
		}
	}
	for _, m := range f.Methods {
		addCap(m.Capabilities...)
	}
	for _, t := range f.Topics {
		if t.Publish != nil {
			addCap(*t.Publish...)
		}
		if t.Subscribe != nil {
			addCap(*t.Subscribe...)
		}
	}
	for _, s := range f.Site {
		if s.Limit != nil {
			addCap(*s.Limit...)
		}
		addCap(s.Default...)
	}
	p.capNames = sortedKeys(caps)
	for i, n := range p.capNames {
		p.capIndex[n] = i
	}
	p.roleNames = sortedKeys(f.Roles)
	for i, n := range p.roleNames {
		p.roleIndex[n] = i
	}
	p.restrictedAnywhere = c.newCaps()
}

func (c *compiler) newCaps() bitset { return c.alloc((max(len(c.p.capNames), 1) + 63) / 64) }

// alloc returns a zeroed bitset of n words from a shared block, so that
// compiling many users does not allocate per bitset.
func (c *compiler) alloc(n int) bitset {
	if len(c.slab) < n {
		c.slab = make([]uint64, max(n*1024, 4096))
	}
	b := c.slab[:n:n]
	c.slab = c.slab[n:]
	return b
}
func (c *compiler) newRoles() bitset { return c.alloc((max(len(c.p.roleNames), 1) + 63) / 64) }

// compileCapGroups expands capability groups to their leaf capabilities,
// rejecting negations and cycles.
func (c *compiler) compileCapGroups() {
	f := c.f
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(g string, stack []string) []capItem
	visit = func(g string, stack []string) []capItem {
		switch state[g] {
		case 1:
			c.fail(joinKey("capability_groups", g), "capability group %q includes itself (%s)", g, strings.Join(append(stack, g), " -> "))
			return nil
		case 2:
			return c.p.capGroups[g]
		}
		state[g] = 1
		var out []capItem
		seen := map[int]bool{}
		for i, name := range f.CapabilityGroups[g] {
			path := joinIndex(joinKey("capability_groups", g), i)
			if strings.HasPrefix(name, "!") {
				c.fail(path, "a capability group cannot contain a negation (%q); negate where the group is granted", name)
				return nil
			}
			if _, isGroup := f.CapabilityGroups[name]; isGroup {
				for _, it := range visit(name, append(stack, g)) {
					if !seen[it.idx] {
						seen[it.idx] = true
						out = append(out, capItem{idx: it.idx})
					}
				}
				if c.err != nil {
					return nil
				}
				continue
			}
			idx := c.p.capIndex[name]
			if !seen[idx] {
				seen[idx] = true
				out = append(out, capItem{idx: idx})
			}
		}
		state[g] = 2
		c.p.capGroups[g] = out
		return out
	}
	for _, g := range sortedKeys(f.CapabilityGroups) {
		visit(g, nil)
		if c.err != nil {
			return
		}
	}
}

// expandCaps expands a list of capability names (capability groups and
// negations allowed when allowNeg) into items.
func (c *compiler) expandCaps(path string, names []string, allowNeg bool) []capItem {
	var out []capItem
	for i, n := range names {
		neg := strings.HasPrefix(n, "!")
		name := strings.TrimPrefix(n, "!")
		if neg && !allowNeg {
			c.fail(joinIndex(path, i), "a negation (%q) is not allowed here", n)
			return nil
		}
		out = append(out, c.expandOne(name, neg)...)
	}
	return out
}

func (c *compiler) expandOne(name string, neg bool) []capItem {
	if g, ok := c.p.capGroups[name]; ok {
		out := make([]capItem, len(g))
		for i, it := range g {
			out[i] = capItem{idx: it.idx, neg: neg, capGroup: name}
		}
		return out
	}
	idx, ok := c.p.capIndex[name]
	if !ok {
		return nil
	}
	return []capItem{{idx: idx, neg: neg}}
}

func (c *compiler) compileSite() {
	for _, who := range sortedKeys(c.f.Site) {
		r := c.f.Site[who]
		path := joinKey("site", who)
		sr := &siteRule{path: path}
		if r.Limit != nil {
			items := c.expandCaps(joinKey(path, "limit"), *r.Limit, true)
			sr.limit = c.newCaps()
			onlyNeg := true
			for _, it := range items {
				if !it.neg {
					onlyNeg = false
					sr.limit.set(it.idx)
				}
			}
			if onlyNeg && len(items) > 0 {
				for i := range c.p.capNames {
					sr.limit.set(i)
				}
			}
			for _, it := range items {
				if it.neg {
					sr.limit[it.idx>>6] &^= 1 << (uint(it.idx) & 63)
				}
			}
		}
		sr.defaults = c.expandCaps(joinKey(path, "default"), r.Default, true)
		c.p.site[who] = sr
	}
}

// parseCredentials reads an entry's credentials: a key in any form ParseKey
// accepts, optionally prefixed "CURVE:" (VOLTTRON before 1.0), or a /regex/.
func parseCredentials(s string) (k Key, m matcher, err error) {
	s = strings.TrimPrefix(s, "CURVE:")
	if isRegex(s) {
		m, err = compileMatcher(s)
		return k, m, err
	}
	k, err = ParseKey(s)
	return k, matcher{}, err
}

func (c *compiler) compileEntries() {
	f, p := c.f, c.p
	order := make([]*user, 0, len(f.Allow))
	userPath := make(map[string]string, len(f.Allow))
	keyPath := make(map[Key]string, len(f.Allow))
	p.users = make(map[string]*user, len(f.Allow))
	p.byKey = make(map[Key]*user, len(f.Allow))
	for i := range f.Allow {
		if c.err != nil {
			return
		}
		e := &f.Allow[i]
		path := joinIndex("allow", i)
		if e.UserID == "*" {
			c.compileStar(e, i, path)
			continue
		}
		u := &user{path: path, entry: e, enabled: e.IsEnabled(), mechanism: e.Mechanism, attrs: e.Attributes}
		if u.mechanism == "" {
			u.mechanism = "CURVE"
		}
		var err error
		if e.Credentials != "" {
			if u.key, u.cred, err = parseCredentials(e.Credentials); err != nil {
				c.fail(path+".credentials", "expected a CURVE public key (base64url 43 characters, Z85 40, or hex 64, optionally prefixed \"CURVE:\") or a /regex/: %v", err)
				return
			}
			u.hasKey = u.cred.any()
		} else if u.mechanism == "CURVE" {
			c.fail(path, "a CURVE entry needs \"credentials\" (the peer's public key)")
			return
		}
		if u.domain, err = compileMatcher(e.Domain); err != nil {
			c.fail(path+".domain", "%v", err)
			return
		}
		if u.address, err = compileMatcher(e.Address); err != nil {
			c.fail(path+".address", "%v", err)
			return
		}
		u.id = e.UserID
		if u.id == "" {
			switch {
			case e.Identity != "" && !isRegex(e.Identity):
				u.id = e.Identity
			default:
				u.id = strings.TrimPrefix(e.Credentials, "CURVE:")
			}
		}
		if u.id == "" {
			c.fail(path, "an entry needs \"user_id\"")
			return
		}
		if prev, dup := userPath[u.id]; dup {
			c.fail(path+".user_id", "duplicate user_id %q (also %s)", u.id, prev)
			return
		}
		userPath[u.id] = path
		if u.hasKey && u.mechanism == "CURVE" {
			if prev, dup := keyPath[u.key]; dup {
				c.fail(path+".credentials", "duplicate key %s (also %s)", u.key.Z85(), prev)
				return
			}
			keyPath[u.key] = path
			p.byKey[u.key] = u
		} else if !u.cred.any() && u.mechanism == "CURVE" {
			p.byPattern = append(p.byPattern, u)
		}
		c.compileBindings(u, e, path)
		p.users[u.id] = u
		order = append(order, u)
	}
	if c.err != nil {
		return
	}
	// Grants are resolved after every entry is known, because the "*"
	// entry may come anywhere in the file.
	c.precompileGrants()
	for _, u := range order {
		c.compileGrants(u)
		if c.err != nil {
			return
		}
	}
	for _, who := range sortedKeys(f.Site) {
		if _, ok := p.users[who]; !ok && who != "*" {
			c.fail(joinKey("site", who), "site rule for user %q, but no allow entry has that user_id%s", who, didYouMean(who, sortedKeys(p.users)))
			return
		}
	}
}

func (c *compiler) compileStar(e *Entry, i int, path string) {
	if c.p.star != nil {
		c.fail(path+".user_id", "a second \"*\" entry (also allow[%d]); merge them", c.p.starIndex)
		return
	}
	for _, bad := range []struct {
		key string
		set bool
	}{
		{"credentials", e.Credentials != ""}, {"identity", e.Identity != ""}, {"identities", len(e.Identities) > 0},
		{"agents", len(e.Agents) > 0}, {"rpc_method_authorizations", len(e.RPCMethodAuthorizations) > 0},
		{"domain", e.Domain != ""}, {"address", e.Address != ""},
	} {
		if bad.set {
			c.fail(path+"."+bad.key, "the \"*\" entry holds grants for every authenticated peer; it cannot have %q", bad.key)
			return
		}
	}
	c.checkRefs(e, path)
	for _, cp := range e.Capabilities {
		for _, pn := range sortedKeys(cp.Params) {
			if _, err := c.p.matcher(cp.Params[pn], true); err != nil {
				c.fail(joinKey(joinKey(path+".capabilities", cp.Name), pn), "%v", err)
				return
			}
		}
	}
	c.p.star, c.p.starIndex = e, i
}

// checkRefs checks that an entry's roles and groups are defined.
func (c *compiler) checkRefs(e *Entry, path string) {
	for i, r := range e.Roles {
		if _, ok := c.f.Roles[r]; !ok {
			c.fail(joinIndex(path+".roles", i), "role %q is not defined in \"roles\"%s", r, didYouMean(r, sortedKeys(c.f.Roles)))
			return
		}
	}
	for i, g := range e.Groups {
		if _, ok := c.f.Groups[g]; !ok {
			c.fail(joinIndex(path+".groups", i), "group %q is not defined in \"groups\"%s", g, didYouMean(g, sortedKeys(c.f.Groups)))
			return
		}
	}
}

func (c *compiler) compileBindings(u *user, e *Entry, path string) {
	p := c.p
	binds := []struct {
		path, text string
	}{}
	if e.Identity != "" {
		binds = append(binds, struct{ path, text string }{path + ".identity", e.Identity})
	}
	for i, id := range e.Identities {
		binds = append(binds, struct{ path, text string }{joinIndex(path+".identities", i), id})
	}
	for _, b := range binds {
		m, err := compileMatcher(b.text)
		if err != nil {
			c.fail(b.path, "%v", err)
			return
		}
		u.binds = append(u.binds, m)
		if m.re == nil {
			if other, dup := p.boundExact[m.text]; dup && other != u {
				c.fail(b.path, "identity %q is already bound to user %q (%s)", m.text, other.id, other.path)
				return
			}
			p.boundExact[m.text] = u
		}
	}
	for _, b := range u.binds {
		if b.re != nil {
			p.boundPattern = append(p.boundPattern, u)
			break
		}
	}
	c.checkRefs(e, path)
	if c.err != nil {
		return
	}
	u.rpcAuth = e.RPCMethodAuthorizations
	for _, id := range sortedKeys(e.Agents) {
		a := e.Agents[id]
		apath := joinKey(path+".agents", id)
		if len(u.binds) > 0 && !u.mayClaim(id) {
			c.fail(apath, "agent %q is not an identity this entry may claim (%s)", id, u.bindList())
			return
		}
		n := &narrowing{identity: id, caps: c.newCaps(), roles: c.newRoles()}
		for _, it := range c.expandCaps(apath+".capabilities", a.Capabilities, false) {
			n.caps.set(it.idx)
		}
		for i, r := range a.Roles {
			idx, ok := p.roleIndex[r]
			if !ok {
				c.fail(joinIndex(apath+".roles", i), "role %q is not defined in \"roles\"%s", r, didYouMean(r, p.roleNames))
				return
			}
			n.roles.set(idx)
		}
		if u.agents == nil {
			u.agents = map[string]*narrowing{}
		}
		u.agents[id] = n
	}
}

func (u *user) mayClaim(identity string) bool {
	for _, b := range u.binds {
		if b.match(identity) {
			return true
		}
	}
	return false
}

func (u *user) bindList() string {
	if len(u.binds) == 0 {
		return "any identity not bound to another user"
	}
	s := make([]string, len(u.binds))
	for i, b := range u.binds {
		s[i] = strconv.Quote(b.text)
	}
	return "allowed: " + strings.Join(s, ", ")
}

// grantSet accumulates grants: what is granted (and whether without
// parameter restrictions), what is negated, which roles are held.
type grantSet struct {
	grants, negs, uncond, roles bitset
	restr                       map[int][]paramSet
}

func (c *compiler) newGrantSet() *grantSet {
	return &grantSet{grants: c.newCaps(), negs: c.newCaps(), uncond: c.newCaps(), roles: c.newRoles()}
}

func (gs *grantSet) add(g grant) {
	switch g.kind {
	case grantRole:
		gs.roles.set(g.idx)
	case grantCap:
		gs.grants.set(g.idx)
		if g.params == nil {
			gs.uncond.set(g.idx)
		} else {
			if gs.restr == nil {
				gs.restr = map[int][]paramSet{}
			}
			gs.restr[g.idx] = append(gs.restr[g.idx], *g.params)
		}
	case negateCap:
		gs.negs.set(g.idx)
	}
}

func (gs *grantSet) merge(o *grantSet) {
	gs.grants.or(o.grants)
	gs.negs.or(o.negs)
	gs.uncond.or(o.uncond)
	gs.roles.or(o.roles)
	for idx, sets := range o.restr {
		if gs.restr == nil {
			gs.restr = map[int][]paramSet{}
		}
		gs.restr[idx] = append(gs.restr[idx], sets...)
	}
}

// precompileGrants computes the grant sets of every role, every group and
// the "*" entry once, so that a user's grants are a few bitset unions.
func (c *compiler) precompileGrants() {
	p := c.p
	c.roleSets = make(map[string]*grantSet, len(p.roleItems))
	for r := range p.roleItems {
		gs := c.newGrantSet()
		p.walkRole(r, "", "", SourceDirect, gs.add)
		c.roleSets[r] = gs
	}
	c.groupSets = make(map[string]*grantSet, len(p.groups))
	for g := range p.groups {
		gs := c.newGrantSet()
		for _, r := range p.groups[g] {
			p.walkRole(r, g, "", SourceDirect, gs.add)
		}
		c.groupSets[g] = gs
	}
	if p.star != nil && p.star.IsEnabled() {
		c.starSet = c.newGrantSet()
		p.walkEntry(p.star, joinIndex("allow", p.starIndex), SourceAny, c.starSet.add, c)
	}
}

// compileGrants resolves a user's effective capabilities and roles: the
// same result as collecting Policy.walk (which explanations use), computed
// from the precompiled role, group and "*" sets.
func (c *compiler) compileGrants(u *user) {
	p := c.p
	gs := c.newGrantSet()
	e := u.entry
	p.walkCaps(e, u.path, SourceDirect, gs.add, c)
	for _, r := range e.Roles {
		if rs := c.roleSets[r]; rs != nil {
			gs.merge(rs)
		}
	}
	for _, g := range e.Groups {
		if s := c.groupSets[g]; s != nil {
			gs.merge(s)
		}
	}
	if c.starSet != nil {
		gs.merge(c.starSet)
	}
	p.walkDefault(e, u.id, gs.add)
	c.finishGrants(u, gs)
}

// finishGrants applies negations and the site limit and stores the result.
func (c *compiler) finishGrants(u *user, gs *grantSet) {
	p := c.p
	gs.grants.andNot(gs.negs)
	if lim := p.limitFor(u.id); lim != nil {
		gs.grants.and(lim.limit)
	}
	u.caps, u.roles = gs.grants, gs.roles
	u.restrictedOnly = c.newCaps()
	copy(u.restrictedOnly, gs.grants)
	u.restrictedOnly.andNot(gs.uncond)
	u.restrictions = gs.restr
	for idx := range gs.restr {
		p.restrictedAnywhere.set(idx)
	}
}

// limitFor returns the site rule that limits user id, if any.
func (p *Policy) limitFor(id string) *siteRule {
	if r := p.site[id]; r != nil && r.limit != nil {
		return r
	}
	if r := p.site["*"]; r != nil && r.limit != nil {
		return r
	}
	return nil
}

// defaultFor returns the site rule whose default applies to user id.
func (p *Policy) defaultFor(id string) *siteRule {
	if r := p.site[id]; r != nil && r.defaults != nil {
		return r
	}
	if r := p.site["*"]; r != nil && r.defaults != nil {
		return r
	}
	return nil
}

func (c *compiler) compileDeny() {
	for i := range c.f.Deny {
		e := &c.f.Deny[i]
		path := joinIndex("deny", i)
		d := denyRule{path: path, userID: e.UserID}
		var err error
		if e.Credentials != "" {
			if d.key, d.cred, err = parseCredentials(e.Credentials); err != nil {
				c.fail(path+".credentials", "expected a CURVE public key or a /regex/: %v", err)
				return
			}
			d.hasKey = d.cred.any()
		} else if e.UserID == "" {
			c.fail(path, "a deny entry must name \"credentials\" or \"user_id\"")
			return
		}
		if d.domain, err = compileMatcher(e.Domain); err != nil {
			c.fail(path+".domain", "%v", err)
			return
		}
		if d.address, err = compileMatcher(e.Address); err != nil {
			c.fail(path+".address", "%v", err)
			return
		}
		c.p.deny = append(c.p.deny, d)
	}
}

func (c *compiler) compileMethods() {
	for _, key := range sortedKeys(c.f.Methods) {
		m := c.f.Methods[key]
		path := joinKey("methods", key)
		for i, r := range m.Roles {
			if _, ok := c.p.roleIndex[r]; !ok {
				c.fail(joinIndex(path+".roles", i), "role %q is not defined in \"roles\"%s", r, didYouMean(r, c.p.roleNames))
				return
			}
		}
		if c.expandCaps(path+".capabilities", m.Capabilities, false); c.err != nil {
			return
		}
		c.p.methods[key] = &methodReq{path: path, caps: m.Capabilities, roles: m.Roles, self: m.Self,
			callerAttrs: m.CallerAttributes, sameAttrs: m.SameAttributes}
	}
}

// grantKind says what a grant does.
type grantKind uint8

const (
	grantCap grantKind = iota + 1
	negateCap
	grantRole
)

// grant is one step of resolving a user's permissions, with its source.
type grant struct {
	kind   grantKind
	idx    int
	params *paramSet
	source Source
}

// walk emits every grant that applies to the user of entry e: its own
// capabilities, roles and groups, the "*" entry's, and the site default
// when the entry grants nothing itself. Compilation and explanation share
// it, so an explanation always matches the decision. c is non-nil while
// compiling, to report bad parameter patterns.
func (p *Policy) walk(e *Entry, path, userID string, emit func(grant), c *compiler) {
	p.walkEntry(e, path, SourceDirect, emit, c)
	if p.star != nil && p.star.IsEnabled() {
		p.walkEntry(p.star, joinIndex("allow", p.starIndex), SourceAny, emit, c)
	}
	p.walkDefault(e, userID, emit)
}

// walkDefault emits the site default when the entry grants nothing itself.
func (p *Policy) walkDefault(e *Entry, userID string, emit func(grant)) {
	if len(e.Capabilities) == 0 && len(e.Roles) == 0 && len(e.Groups) == 0 {
		if r := p.defaultFor(userID); r != nil {
			for _, it := range r.defaults {
				emit(grant{kind: capKind(it.neg), idx: it.idx,
					source: Source{Kind: SourceSiteDefault, Entry: r.path, CapabilityGroup: it.capGroup}})
			}
		}
	}
}

func capKind(neg bool) grantKind {
	if neg {
		return negateCap
	}
	return grantCap
}

func (p *Policy) walkEntry(e *Entry, path string, kind SourceKind, emit func(grant), c *compiler) {
	p.walkCaps(e, path, kind, emit, c)
	for _, r := range e.Roles {
		p.walkRole(r, "", path, kind, emit)
	}
	for _, g := range e.Groups {
		for _, r := range p.groups[g] {
			p.walkRole(r, g, path, kind, emit)
		}
	}
}

// walkCaps emits an entry's own capabilities and negations.
func (p *Policy) walkCaps(e *Entry, path string, kind SourceKind, emit func(grant), c *compiler) {
	for _, cp := range e.Capabilities {
		neg := strings.HasPrefix(cp.Name, "!")
		name := strings.TrimPrefix(cp.Name, "!")
		var ps *paramSet
		if cp.Params != nil {
			ps = &paramSet{source: Source{Kind: kind, Entry: path}}
			for _, pn := range sortedKeys(cp.Params) {
				m, err := p.matcher(cp.Params[pn], c != nil)
				if err != nil {
					if c != nil {
						c.fail(joinKey(joinKey(path+".capabilities", cp.Name), pn), "%v", err)
					}
					return
				}
				ps.conds = append(ps.conds, paramCond{name: pn, m: m})
			}
		}
		one := func(idx int, capGroup string) {
			g := grant{kind: capKind(neg), idx: idx,
				source: Source{Kind: kind, Entry: path, CapabilityGroup: capGroup}}
			if ps != nil {
				g.params = &paramSet{source: g.source, conds: ps.conds}
			}
			emit(g)
		}
		if items, ok := p.capGroups[name]; ok {
			for _, it := range items {
				one(it.idx, name)
			}
		} else if idx, ok := p.capIndex[name]; ok {
			one(idx, "")
		}
	}
}

// walkRole emits a role (reached through group, if set) and its
// capabilities.
func (p *Policy) walkRole(r, group, path string, kind SourceKind, emit func(grant)) {
	idx, ok := p.roleIndex[r]
	if !ok {
		return
	}
	src := Source{Kind: kind, Entry: path, Role: r, Group: group}
	if kind == SourceDirect {
		src.Kind = SourceRole
		if group != "" {
			src.Kind = SourceGroup
		}
	}
	emit(grant{kind: grantRole, idx: idx, source: src})
	for _, it := range p.roleItems[r] {
		s := src
		s.CapabilityGroup = it.capGroup
		emit(grant{kind: capKind(it.neg), idx: it.idx, source: s})
	}
}

func (p *Policy) expandName(name string, neg bool) []capItem {
	if g, ok := p.capGroups[name]; ok {
		out := make([]capItem, len(g))
		for i, it := range g {
			out[i] = capItem{idx: it.idx, neg: neg, capGroup: name}
		}
		return out
	}
	if idx, ok := p.capIndex[name]; ok {
		return []capItem{{idx: idx, neg: neg}}
	}
	return nil
}
