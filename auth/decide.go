package auth

import (
	"fmt"
	"maps"
	"net/netip"
	"sort"

	"github.com/capbus/capbus/rpc"
)

// Subject is a principal compiled against one policy: its effective
// capabilities and roles as bitsets, with agent narrowing applied. Resolve
// one per connection per policy generation with Policy.Subject; a Subject
// from another generation is refused by Decide.
type Subject struct {
	p        *Policy
	u        *user
	userID   string
	identity string
	caps     bitset
	roles    bitset
	restr    bitset // capabilities held only with parameter restrictions
	attrs    map[string]string
	narrow   *narrowing
	local    bool // connected from loopback (SubjectAt)
}

// UserID returns the subject's user id.
func (s *Subject) UserID() string { return s.userID }

// Identity returns the subject's agent identity.
func (s *Subject) Identity() string { return s.identity }

// Attributes returns a copy of the caller attributes of the subject's
// entry (for example "org").
func (s *Subject) Attributes() map[string]string { return maps.Clone(s.attrs) }

// Generation returns the generation of the policy the subject was compiled
// against.
func (s *Subject) Generation() uint64 { return s.p.gen }

// SubjectAt is Subject for a principal connected from remoteAddr
// ("host:port"): deny_by_default "remote" spares a subject on loopback.
func (p *Policy) SubjectAt(pr rpc.Principal, remoteAddr string) (*Subject, error) {
	s, err := p.Subject(pr)
	if err == nil {
		s.local = isLoopback(remoteAddr)
	}
	return s, err
}

// isLoopback reports whether addr ("host:port" or a host) is on loopback:
// 127.0.0.0/8 or ::1.
func isLoopback(addr string) bool {
	host := hostOf(addr)
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Subject compiles a principal against this policy: the user's effective
// capabilities and roles, narrowed when the entry lists the identity under
// "agents". It fails when the user is not in the policy or the policy is
// closed (wrapping ErrUnknownUser), when the entry is disabled (ErrDisabled)
// when a deny entry names the user (ErrDenied), and when the principal's Key is
// set but is no longer the user's key (ErrUnknownKey), so re-resolving live
// peers after a reload finds the ones to disconnect.
func (p *Policy) Subject(pr rpc.Principal) (*Subject, error) {
	if p.closed {
		return nil, fmt.Errorf("%w: %w: no policy in force", ErrUnknownUser, ErrNoPolicy)
	}
	u := p.users[pr.UserID]
	if u == nil {
		return nil, fmt.Errorf("%w: %q is not in the policy (generation %d)", ErrUnknownUser, pr.UserID, p.gen)
	}
	if !u.enabled {
		return nil, fmt.Errorf("%w: user %q (%s) has \"enabled\": false", ErrDisabled, u.id, u.path)
	}
	if !pr.Key.IsZero() && !((u.hasKey && u.key == pr.Key) || (!u.hasKey && !u.cred.any() && credMatch(u.cred, pr.Key))) {
		return nil, fmt.Errorf("%w: key %s does not belong to user %q (%s)", ErrUnknownKey, pr.Key.Z85(), u.id, u.path)
	}
	for _, d := range p.deny {
		if d.userID == u.id && !d.hasKey && d.cred.any() {
			return nil, fmt.Errorf("%w: user %q matches %s", ErrDenied, u.id, d.path)
		}
	}
	s := &Subject{p: p, u: u, userID: u.id, identity: pr.Identity, caps: u.caps, roles: u.roles, restr: u.restrictedOnly}
	if n := u.agents[pr.Identity]; n != nil {
		s.narrow = n
		if n.narrows {
			s.caps = u.caps.clone()
			s.caps.and(n.caps)
			s.roles = u.roles.clone()
			s.roles.and(n.roles)
		}
		s.restr = u.restrictedOnly.clone()
		s.restr.and(s.caps)
		if n.grantCaps != nil {
			// Agent grants come without parameter restrictions.
			s.caps = s.caps.clone()
			s.caps.or(n.grantCaps)
			s.roles = s.roles.clone()
			s.roles.or(n.grantRoles)
			s.restr.andNot(n.grantCaps)
		}
	}
	s.attrs = u.attrs
	return s, nil
}

// Declared is what a callee agent declared for a method when it exported it.
type Declared struct {
	// Capabilities the caller must all hold (VOLTTRON's RPC.allow).
	Capabilities []string
	// Roles the caller must all hold.
	Roles []string
	// Params are the method's positional parameter names, used to match
	// positional arguments against parameter restrictions (see
	// Requirement.NamedArgs).
	Params []string
	// Self restricts the method to callers of the callee's own user.
	Self bool
}

// Requirement is what one method call needs, compiled against one policy:
// the callee's declaration plus the operator's "methods" rule for
// "identity.method", plus the callee entry's rpc_method_authorizations, plus
// the deny-by-default capability "identity.method" when nothing else
// applies and DenyAllByDefault is set.
type Requirement struct {
	p          *Policy
	target     string // identity.method
	method     string
	calleeUser string

	caps, roles  []wordMask
	capNames     []string // sorted, for messages
	roleNames    []string
	unknownCaps  []string // required names nobody in this policy can hold
	unknownRoles []string
	self         bool
	callerAttrs  []attrCond
	needsArgs    bool
	params       []string
	from         []string // where the requirement came from
	implicit     bool     // deny-by-default requirement
}

type attrCond struct {
	name, value string
	same        bool // value is the callee's attribute
}

// Requirement compiles what calling method on callee needs. It never fails:
// a requirement naming a capability or role that nobody holds is simply
// unsatisfiable.
func (p *Policy) Requirement(callee rpc.Principal, method string, declared Declared) *Requirement {
	r := &Requirement{p: p, target: callee.Identity + "." + method, method: method, calleeUser: callee.UserID,
		params: declared.Params, self: declared.Self}
	caps := map[string]bool{}
	roles := map[string]bool{}
	add := func(from string, cs, rs []string) {
		if len(cs) == 0 && len(rs) == 0 {
			return
		}
		r.from = append(r.from, from)
		for _, c := range cs {
			caps[c] = true
		}
		for _, x := range rs {
			roles[x] = true
		}
	}
	add("declared by "+callee.Identity, declared.Capabilities, declared.Roles)
	if declared.Self {
		r.from = append(r.from, "declared by "+callee.Identity+" (self)")
	}
	if cu := p.users[callee.UserID]; cu != nil {
		if cs, ok := cu.rpcAuth[method]; ok {
			add(cu.path+".rpc_method_authorizations."+method, cs, nil)
		}
	}
	if m := p.methods[r.target]; m != nil {
		add(m.path, m.caps, m.roles)
		if m.self {
			r.self = true
			r.from = append(r.from, m.path+" (self)")
		}
		var calleeAttrs map[string]string
		if cu := p.users[callee.UserID]; cu != nil {
			calleeAttrs = cu.attrs
		}
		for _, k := range sortedKeys(m.callerAttrs) {
			r.callerAttrs = append(r.callerAttrs, attrCond{name: k, value: m.callerAttrs[k]})
		}
		for _, k := range m.sameAttrs {
			v, ok := calleeAttrs[k]
			if !ok {
				v = "\x00unset" // no caller can match a callee attribute that is not set
			}
			r.callerAttrs = append(r.callerAttrs, attrCond{name: k, value: v, same: true})
		}
		if len(m.callerAttrs)+len(m.sameAttrs) > 0 && len(m.caps)+len(m.roles) == 0 {
			r.from = append(r.from, m.path)
		}
	}
	if len(caps) == 0 && len(roles) == 0 && !r.self && len(r.callerAttrs) == 0 && p.denyByDefault != DenyNone {
		caps[r.target] = true
		r.implicit = true
		if p.denyByDefault == DenyRemote {
			r.from = append(r.from, "deny_by_default \"remote\" (grant capability "+r.target+" to open it to callers not on loopback)")
		} else {
			r.from = append(r.from, "deny_by_default (grant capability "+r.target+" to open it)")
		}
	}
	cb := newBitset(max(len(p.capNames), 1))
	for c := range caps {
		r.capNames = append(r.capNames, c)
		for _, it := range p.expandName(c, false) {
			cb.set(it.idx)
		}
		if _, isGroup := p.capGroups[c]; !isGroup {
			if _, ok := p.capIndex[c]; !ok {
				r.unknownCaps = append(r.unknownCaps, c)
			}
		}
	}
	rb := newBitset(max(len(p.roleNames), 1))
	for x := range roles {
		r.roleNames = append(r.roleNames, x)
		if idx, ok := p.roleIndex[x]; ok {
			rb.set(idx)
		} else {
			r.unknownRoles = append(r.unknownRoles, x)
		}
	}
	sort.Strings(r.capNames)
	sort.Strings(r.roleNames)
	sort.Strings(r.unknownCaps)
	sort.Strings(r.unknownRoles)
	r.caps, r.roles = cb.sparse(), rb.sparse()
	for _, w := range r.caps {
		if w.word < len(p.restrictedAnywhere) && p.restrictedAnywhere[w.word]&w.mask != 0 {
			r.needsArgs = true
		}
	}
	return r
}

// NeedsArgs reports whether a parameter restriction may apply to this call,
// so the platform decodes the call's arguments only then.
func (r *Requirement) NeedsArgs() bool { return r.needsArgs }

// Capabilities returns the required capability names, sorted.
func (r *Requirement) Capabilities() []string { return append([]string(nil), r.capNames...) }

// Roles returns the required role names, sorted.
func (r *Requirement) Roles() []string { return append([]string(nil), r.roleNames...) }

// NamedArgs maps positional arguments to the declared parameter names and
// adds keyword arguments, giving the args that Decide expects.
func (r *Requirement) NamedArgs(positional []any, keyword map[string]any) map[string]any {
	out := make(map[string]any, len(positional)+len(keyword))
	for i, v := range positional {
		if i < len(r.params) {
			out[r.params[i]] = v
		}
	}
	for k, v := range keyword {
		out[k] = v
	}
	return out
}

// denyReason says why a decision denied.
type denyReason uint8

const (
	reasonNone denyReason = iota
	reasonClosed
	reasonInvalid
	reasonStale
	reasonMissing
	reasonSelf
	reasonAttribute
	reasonParam
	reasonTopicClosed
	reasonTopicMissing
	reasonTopicWildcard
)

// Decide judges one call: allowed when the subject holds every required
// capability and role and every condition holds. args are the call's named
// parameters (nil when none); they are consulted only when a parameter
// restriction applies (Requirement.NeedsArgs). The allowed path does not
// allocate. A subject or requirement compiled against another policy is
// refused.
func (p *Policy) Decide(s *Subject, r *Requirement, args map[string]any) Decision {
	d := Decision{Generation: p.gen, p: p, s: s, r: r}
	switch {
	case p.closed:
		d.why = reasonClosed
	case s == nil || r == nil:
		d.why = reasonInvalid
	case s.p != p || r.p != p:
		d.why = reasonStale
	case r.implicit && p.denyByDefault == DenyRemote && s.local:
		d.Allowed = true // deny_by_default "remote" spares loopback callers
	case len(r.unknownCaps) > 0 || len(r.unknownRoles) > 0 || !s.caps.holds(r.caps) || !s.roles.holds(r.roles):
		d.why = reasonMissing
	case r.self && s.userID != r.calleeUser:
		d.why = reasonSelf
	default:
		for i := range r.callerAttrs {
			a := &r.callerAttrs[i]
			if v, ok := s.attrs[a.name]; !ok || v != a.value {
				d.why, d.attr = reasonAttribute, a
				return d
			}
		}
		if r.needsArgs && !p.checkParams(s, r, args, &d) {
			return d
		}
		d.Allowed = true
	}
	return d
}

// checkParams applies parameter restrictions to capabilities the subject
// holds only with restrictions: some restricted grant must match the args.
func (p *Policy) checkParams(s *Subject, r *Requirement, args map[string]any, d *Decision) bool {
	for _, w := range r.caps {
		if w.word >= len(s.restr) {
			continue
		}
		m := s.restr[w.word] & w.mask
		for m != 0 {
			bit := m & -m
			m &^= bit
			idx := w.word<<6 + trailingZeros(bit)
			sets := s.u.restrictions[idx]
			ok := false
			var fail *paramCond
			var failVal any
			var failSet bool
			for i := range sets {
				c, v, present := sets[i].matches(args)
				if c == nil {
					ok = true
					break
				}
				if fail == nil {
					fail, failVal, failSet = c, v, present
				}
			}
			if !ok {
				d.why, d.capIdx, d.param, d.value, d.valueSet = reasonParam, idx, fail, failVal, failSet
				return false
			}
		}
	}
	return true
}

// matches returns nil when every condition matches args, or the first
// failing condition with the value given (if any).
func (ps *paramSet) matches(args map[string]any) (*paramCond, any, bool) {
	for i := range ps.conds {
		c := &ps.conds[i]
		v, ok := args[c.name]
		if !ok {
			return c, nil, false
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case []byte:
			s = string(x)
		default:
			s = fmt.Sprint(x)
		}
		if !c.m.match(s) {
			return c, v, true
		}
	}
	return nil, nil, false
}
