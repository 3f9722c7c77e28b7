package auth

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/capbus/capbus/rpc"
)

// Decision is the result of Decide or DecideTopic. Allowed and Generation
// are plain fields; Reason, Missing and Explanation compute the details on
// demand, so an allowed decision costs no allocation.
type Decision struct {
	// Allowed reports whether the call, publish or subscribe may proceed.
	Allowed bool
	// Generation is the generation of the policy that decided.
	Generation uint64

	p        *Policy
	s        *Subject
	r        *Requirement
	why      denyReason
	attr     *attrCond
	capIdx   int
	param    *paramCond
	value    any
	valueSet bool
	op       TopicOp
	topic    string
	rule     *topicRule
}

// Err returns nil when allowed, otherwise an *rpc.Error with
// rpc.CodeUnauthorized (it matches rpc.ErrUnauthorized) whose message is
// Reason and whose data holds "missing" and "generation".
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return rpc.NewError(rpc.CodeUnauthorized, d.Reason()).
		WithData("missing", d.Missing()).WithData("generation", d.Generation)
}

// target names what was judged: `method "temperature"` or `publish to "a/b"`.
func (d Decision) target() string {
	if d.op != 0 {
		return fmt.Sprintf("%s to %q", d.op, d.topic)
	}
	if d.r != nil {
		return fmt.Sprintf("method %q", d.r.method)
	}
	return "call"
}

func bracket(names []string) string { return "[" + strings.Join(names, ", ") + "]" }

// required returns the required capabilities and roles of the decision.
func (d Decision) required() (caps, roles []string) {
	switch {
	case d.rule != nil:
		if req := d.rule.access(d.op); req != nil {
			return req.names, nil
		}
		return nil, nil
	case d.r != nil:
		return d.r.capNames, d.r.roleNames
	}
	return nil, nil
}

// Missing returns what the subject lacks: capability names, then role names
// prefixed "role:". It is empty when the denial was for another reason.
func (d Decision) Missing() []string {
	if d.Allowed || (d.why != reasonMissing && d.why != reasonTopicMissing) || d.s == nil {
		return nil
	}
	caps, roles := d.required()
	var out []string
	for _, c := range caps {
		if !d.s.holdsCap(c) {
			out = append(out, c)
		}
	}
	for _, r := range roles {
		if idx, ok := d.p.roleIndex[r]; !ok || !d.s.roles.has(idx) {
			out = append(out, "role:"+r)
		}
	}
	return out
}

// holdsCap reports whether the subject holds a capability (every leaf of a
// capability group).
func (s *Subject) holdsCap(name string) bool {
	items := s.p.expandName(name, false)
	if len(items) == 0 {
		return false
	}
	for _, it := range items {
		if !s.caps.has(it.idx) {
			return false
		}
	}
	return true
}

func (s *Subject) capNames() []string {
	out := []string{}
	s.caps.each(func(i int) { out = append(out, s.p.capNames[i]) })
	return out
}

func (s *Subject) roleNames() []string {
	out := []string{}
	s.roles.each(func(i int) { out = append(out, s.p.roleNames[i]) })
	return out
}

// Reason says why, in one line: for a missing capability
//
//	method "temperature" requires capabilities [can_read_temp], but capabilities [] were provided; missing [can_read_temp]
func (d Decision) Reason() string {
	if d.Allowed {
		return d.target() + " is allowed"
	}
	switch d.why {
	case reasonClosed:
		return d.target() + " is denied: no policy in force (closed policy: everything is denied)"
	case reasonInvalid:
		return d.target() + " is denied: no subject or requirement"
	case reasonStale:
		return fmt.Sprintf("%s is denied: subject or requirement was compiled against another policy generation than %d; resolve it again", d.target(), d.Generation)
	case reasonMissing, reasonTopicMissing:
		caps, roles := d.required()
		missing := d.Missing()
		var mc, mr []string
		for _, m := range missing {
			if r, ok := strings.CutPrefix(m, "role:"); ok {
				mr = append(mr, r)
			} else {
				mc = append(mc, m)
			}
		}
		var parts []string
		if len(mc) > 0 || len(roles) == 0 {
			parts = append(parts, fmt.Sprintf("requires capabilities %s, but capabilities %s were provided; missing %s", bracket(caps), bracket(d.s.capNames()), bracket(mc)))
		}
		if len(mr) > 0 {
			parts = append(parts, fmt.Sprintf("requires roles %s, but roles %s were provided; missing %s", bracket(roles), bracket(d.s.roleNames()), bracket(mr)))
		}
		msg := d.target() + " " + strings.Join(parts, "; and ")
		if d.r != nil && d.r.implicit {
			msg += " (deny_by_default: a method that declares no requirement needs the capability identity.method)"
		}
		if d.rule != nil {
			msg += fmt.Sprintf(" (topic rule %q)", d.rule.pattern)
		}
		return msg
	case reasonSelf:
		return fmt.Sprintf("%s may be called only by its own user %q; caller is user %q", d.target(), d.r.calleeUser, d.s.userID)
	case reasonAttribute:
		have := "not set"
		if v, ok := d.s.attrs[d.attr.name]; ok {
			have = strconv.Quote(v)
		}
		if d.attr.same {
			return fmt.Sprintf("%s requires the caller's attribute %q to equal the callee's; caller's is %s", d.target(), d.attr.name, have)
		}
		return fmt.Sprintf("%s requires caller attribute %s=%q; caller's is %s", d.target(), d.attr.name, d.attr.value, have)
	case reasonParam:
		capName := d.p.capNames[d.capIdx]
		if !d.valueSet {
			return fmt.Sprintf("%s: capability %s is granted only with parameter %q matching %s, and parameter %q was not given", d.target(), capName, d.param.name, d.param.m.text, d.param.name)
		}
		return fmt.Sprintf("%s: capability %s is granted only with parameter %q matching %s, but %s=%v", d.target(), capName, d.param.name, d.param.m.text, d.param.name, quoteValue(d.value))
	case reasonTopicClosed:
		return fmt.Sprintf("%s is denied: topic rule %q protects this tree and allows no %s", d.target(), d.rule.pattern, d.op)
	case reasonTopicWildcard:
		return fmt.Sprintf("%s is denied: a published topic cannot contain + or # and cannot be empty", d.target())
	}
	return d.target() + " is denied"
}

func quoteValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// SourceKind says where a grant came from.
type SourceKind uint8

// Where grants come from.
const (
	SourceDirect      SourceKind = iota + 1 // the entry's own "capabilities"
	SourceRole                              // a role in the entry's "roles"
	SourceGroup                             // a role through a group in the entry's "groups"
	SourceAny                               // the "*" entry: every authenticated peer
	SourceSiteDefault                       // the site default (the entry grants nothing itself)
	SourceSiteLimit                         // a site limit (only in Removal)
	SourceAgent                             // agent narrowing (only in Removal)
	SourceAgentGrant                        // an agent rule's "grant": one identity of the user
)

// String returns a short name: direct, role, group, *, site default, ...
func (k SourceKind) String() string {
	switch k {
	case SourceDirect:
		return "direct"
	case SourceRole:
		return "role"
	case SourceGroup:
		return "group"
	case SourceAny:
		return "*"
	case SourceSiteDefault:
		return "site default"
	case SourceSiteLimit:
		return "site limit"
	case SourceAgent:
		return "agent narrowing"
	case SourceAgentGrant:
		return "agent grant"
	}
	return "unknown"
}

// Source is where one grant (or negation, or limit) came from.
type Source struct {
	Kind            SourceKind // where the grant came from
	Entry           string     // JSON path of the entry or rule: allow[2], site["*"]
	Role            string     // the role, when through a role
	Group           string     // the group, when through a group
	CapabilityGroup string     // the capability group it was expanded from
}

// String describes the source, e.g. `allow[1] role "admin" via group "ops"
// (capability group "READ")`.
func (s Source) String() string {
	var b strings.Builder
	if s.Kind == SourceAny {
		b.WriteString(`"*" `)
	}
	b.WriteString(s.Entry)
	if s.Role != "" {
		fmt.Fprintf(&b, " role %q", s.Role)
	}
	if s.Group != "" {
		fmt.Fprintf(&b, " via group %q", s.Group)
	}
	if s.CapabilityGroup != "" {
		fmt.Fprintf(&b, " (capability group %q)", s.CapabilityGroup)
	}
	if s.Kind == SourceDirect || s.Kind == SourceSiteDefault || s.Kind == SourceSiteLimit || s.Kind == SourceAgent || s.Kind == SourceAgentGrant {
		b.WriteString(" [" + s.Kind.String() + "]")
	}
	return b.String()
}

// Grant is one capability or role a subject holds, with every source that
// grants it.
type Grant struct {
	Name    string   // the capability or role
	Sources []Source // every grant of it, in walk order
	// Restricted is true when the capability is held only with parameter
	// restrictions.
	Restricted bool
}

// Removal is a capability granted by some source but not held, and why.
type Removal struct {
	Name string // the capability removed
	// Cause is "negation", "site limit" or "agent narrowing".
	Cause string
	// By lists the negations (or the limit or narrowing) that removed it.
	By []Source
	// GrantedBy lists the grants that were overridden.
	GrantedBy []Source
}

// Permissions is what a subject may do: its effective capabilities and
// roles with their sources, and what negations, limits or narrowing removed.
type Permissions struct {
	UserID       string
	Identity     string
	Generation   uint64    // the policy generation
	Capabilities []Grant   // effective capabilities, sorted, with sources
	Roles        []Grant   // effective roles, sorted, with sources
	Removed      []Removal // granted but removed by negation, limit or narrowing
	// Narrowed is true when the identity's grants are narrowed by the
	// entry's "agents".
	Narrowed bool
}

// Permissions answers "what may this principal do?".
func (p *Policy) Permissions(s *Subject) Permissions {
	out := Permissions{Generation: p.gen}
	if s == nil || s.p != p {
		return out
	}
	out.UserID, out.Identity, out.Narrowed = s.userID, s.identity, s.narrow != nil
	capSrc, roleSrc, negSrc := map[int][]Source{}, map[int][]Source{}, map[int][]Source{}
	collect := func(g grant) {
		switch g.kind {
		case grantCap:
			capSrc[g.idx] = append(capSrc[g.idx], g.source)
		case negateCap:
			negSrc[g.idx] = append(negSrc[g.idx], g.source)
		case grantRole:
			roleSrc[g.idx] = append(roleSrc[g.idx], g.source)
		}
	}
	p.walk(s.u.entry, s.u.path, s.u.id, collect, nil)
	if s.narrow != nil && s.narrow.grantPath != "" {
		p.walkAgentGrant(s.u, s.narrow, collect)
	}
	for _, idx := range sortedInts(capSrc) {
		name := p.capNames[idx]
		switch {
		case s.caps.has(idx):
			out.Capabilities = append(out.Capabilities, Grant{Name: name, Sources: capSrc[idx], Restricted: s.restr.has(idx)})
		case len(negSrc[idx]) > 0:
			out.Removed = append(out.Removed, Removal{Name: name, Cause: "negation", By: negSrc[idx], GrantedBy: capSrc[idx]})
		case s.u.caps.has(idx):
			out.Removed = append(out.Removed, Removal{Name: name, Cause: "agent narrowing", GrantedBy: capSrc[idx],
				By: []Source{{Kind: SourceAgent, Entry: joinKey(s.u.path+".agents", s.identity)}}})
		default:
			lim := p.limitFor(s.u.id)
			by := Source{Kind: SourceSiteLimit}
			if lim != nil {
				by.Entry = lim.path
			}
			out.Removed = append(out.Removed, Removal{Name: name, Cause: "site limit", By: []Source{by}, GrantedBy: capSrc[idx]})
		}
	}
	for idx, srcs := range negSrc {
		if _, granted := capSrc[idx]; !granted {
			out.Removed = append(out.Removed, Removal{Name: p.capNames[idx], Cause: "negation", By: srcs})
		}
	}
	sort.Slice(out.Removed, func(i, j int) bool { return out.Removed[i].Name < out.Removed[j].Name })
	for _, idx := range sortedInts(roleSrc) {
		if s.roles.has(idx) {
			out.Roles = append(out.Roles, Grant{Name: p.roleNames[idx], Sources: roleSrc[idx]})
		}
	}
	return out
}

func sortedInts[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// Explanation is the full account of one decision.
type Explanation struct {
	Allowed    bool
	Generation uint64
	UserID     string
	Identity   string
	// Target is what was judged: `method "temperature"` or `publish to "a/b"`.
	Target string
	// RequiredCapabilities and RequiredRoles must all be held.
	RequiredCapabilities []string
	RequiredRoles        []string
	// Conditions lists other conditions (self, caller attributes).
	Conditions []string
	// RequiredBy says where the requirement came from (the callee's
	// declaration, methods["weather.set_units"], a topic rule, ...).
	RequiredBy []string
	// Held is every capability and role the subject holds, with sources.
	Held      []Grant
	HeldRoles []Grant
	Missing   []string
	// Removed lists grants taken away by negation, a limit or narrowing.
	Removed []Removal
	Reason  string
}

// Explanation says why the decision was taken: required, held (with
// sources), missing, removed (by negation or limit) and the policy
// generation.
func (d Decision) Explanation() Explanation {
	e := Explanation{Allowed: d.Allowed, Generation: d.Generation, Target: d.target(), Reason: d.Reason(), Missing: d.Missing()}
	e.RequiredCapabilities, e.RequiredRoles = d.required()
	if d.r != nil {
		e.RequiredBy = append(e.RequiredBy, d.r.from...)
		if d.r.self {
			e.Conditions = append(e.Conditions, fmt.Sprintf("caller is user %q (self)", d.r.calleeUser))
		}
		for _, a := range d.r.callerAttrs {
			if a.same {
				e.Conditions = append(e.Conditions, fmt.Sprintf("caller attribute %q equals the callee's", a.name))
			} else {
				e.Conditions = append(e.Conditions, fmt.Sprintf("caller attribute %s=%q", a.name, a.value))
			}
		}
	}
	if d.rule != nil {
		e.RequiredBy = append(e.RequiredBy, fmt.Sprintf("topics[%q]", d.rule.pattern))
	}
	if d.s != nil && d.p != nil && d.s.p == d.p {
		perm := d.p.Permissions(d.s)
		e.UserID, e.Identity = perm.UserID, perm.Identity
		e.Held, e.HeldRoles, e.Removed = perm.Capabilities, perm.Roles, perm.Removed
	}
	return e
}

// String renders the explanation over several lines for logs and CLIs.
func (e Explanation) String() string {
	var b strings.Builder
	verdict := "DENIED"
	if e.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(&b, "%s %s for user %q identity %q (policy generation %d)\n", verdict, e.Target, e.UserID, e.Identity, e.Generation)
	fmt.Fprintf(&b, "  reason: %s\n", e.Reason)
	fmt.Fprintf(&b, "  required: capabilities %s roles %s", bracket(e.RequiredCapabilities), bracket(e.RequiredRoles))
	if len(e.Conditions) > 0 {
		fmt.Fprintf(&b, " conditions %s", bracket(e.Conditions))
	}
	if len(e.RequiredBy) > 0 {
		fmt.Fprintf(&b, " (from %s)", strings.Join(e.RequiredBy, "; "))
	}
	b.WriteByte('\n')
	for _, g := range e.Held {
		fmt.Fprintf(&b, "  held: %s from %s\n", g.Name, sourcesString(g.Sources))
	}
	for _, g := range e.HeldRoles {
		fmt.Fprintf(&b, "  held role: %s from %s\n", g.Name, sourcesString(g.Sources))
	}
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, "  missing: %s\n", bracket(e.Missing))
	}
	for _, r := range e.Removed {
		fmt.Fprintf(&b, "  removed: %s by %s %s", r.Name, r.Cause, sourcesString(r.By))
		if len(r.GrantedBy) > 0 {
			fmt.Fprintf(&b, ", overriding %s", sourcesString(r.GrantedBy))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func sourcesString(s []Source) string {
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = x.String()
	}
	return strings.Join(parts, "; ")
}
