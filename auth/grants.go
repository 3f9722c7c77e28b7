package auth

import (
	"strings"
)

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
	u.negs = gs.negs
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

// compileAgentGrants resolves what the agent rules of u grant on top of
// the user's grants, once the user's negations are known: they, and the
// site limit, apply to agent grants too.
func (c *compiler) compileAgentGrants(u *user) {
	p := c.p
	for _, n := range u.agents {
		if n.grantPath == "" {
			continue
		}
		gs := c.newGrantSet()
		p.walkAgentGrant(u, n, gs.add)
		gs.grants.andNot(u.negs)
		if lim := p.limitFor(u.id); lim != nil {
			gs.grants.and(lim.limit)
		}
		n.grantCaps, n.grantRoles = gs.grants, gs.roles
	}
}

// walkAgentGrant emits what the agent rule n of user u grants on top of
// the user's grants: its capabilities and roles, with the source
// SourceAgentGrant.
func (p *Policy) walkAgentGrant(u *user, n *narrowing, emit func(grant)) {
	a, ok := u.entry.Agents[n.identity]
	if !ok || a.Grant == nil {
		return
	}
	src := Source{Kind: SourceAgentGrant, Entry: n.grantPath}
	for _, name := range a.Grant.Capabilities {
		for _, it := range p.expandName(name, false) {
			s := src
			s.CapabilityGroup = it.capGroup
			emit(grant{kind: grantCap, idx: it.idx, source: s})
		}
	}
	for _, r := range a.Grant.Roles {
		idx, ok := p.roleIndex[r]
		if !ok {
			continue
		}
		s := src
		s.Role = r
		emit(grant{kind: grantRole, idx: idx, source: s})
		for _, it := range p.roleItems[r] {
			if it.neg {
				continue // a role's negations apply to the user, not here
			}
			cs := s
			cs.CapabilityGroup = it.capGroup
			emit(grant{kind: grantCap, idx: it.idx, source: cs})
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
