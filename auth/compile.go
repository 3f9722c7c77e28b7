package auth

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/capbus/capbus/keys"
)

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
			if a.Grant != nil {
				addCap(a.Grant.Capabilities...)
			}
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
// Text that is a valid key is a key even when it starts and ends with "/"
// (the Z85 alphabet contains "/": about one key in 7,000 looks like a regex).
func parseCredentials(s string) (k keys.Key, m matcher, err error) {
	s = strings.TrimPrefix(s, "CURVE:")
	if k, err = keys.Parse(s); err == nil {
		return k, matcher{}, nil
	}
	if isRegex(s) {
		m, err = compileMatcher(s)
		return k, m, err
	}
	k, err = keys.Parse(s)
	return k, matcher{}, err
}

func (c *compiler) compileEntries() {
	f, p := c.f, c.p
	order := make([]*user, 0, len(f.Allow))
	userPath := make(map[string]string, len(f.Allow))
	keyPath := make(map[keys.Key]string, len(f.Allow))
	p.users = make(map[string]*user, len(f.Allow))
	p.byKey = make(map[keys.Key]*user, len(f.Allow))
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
		c.compileAgentGrants(u)
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
		n := &narrowing{identity: id, narrows: a.Narrows(), caps: c.newCaps(), roles: c.newRoles()}
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
		if a.Grant != nil {
			n.grantPath = apath + ".grant"
			for i, r := range a.Grant.Roles {
				if _, ok := p.roleIndex[r]; !ok {
					c.fail(joinIndex(n.grantPath+".roles", i), "role %q is not defined in \"roles\"%s", r, didYouMean(r, p.roleNames))
					return
				}
			}
			c.expandCaps(n.grantPath+".capabilities", a.Grant.Capabilities, false) // reports unknown names
			if c.err != nil {
				return
			}
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
