package auth

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// decoder turns the JSON tree into a File, checking keys and types. It stops
// at the first error: a document is accepted whole or not at all.
type decoder struct {
	name string
	data []byte
	err  *ValidationError
	// paths turns on JSON paths. The first pass runs without them (they
	// cost an allocation per value); if it fails, a second pass with paths
	// produces the message.
	paths bool
}

func (d *decoder) key(path, key string) string {
	if !d.paths {
		return ""
	}
	return joinKey(path, key)
}

func (d *decoder) index(path string, i int) string {
	if !d.paths {
		return ""
	}
	return joinIndex(path, i)
}

func (d *decoder) fail(off int, path, format string, args ...any) {
	if d.err != nil {
		return
	}
	line, col := lineCol(d.data, off)
	d.err = &ValidationError{File: d.name, Line: line, Column: col, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// joinKey appends an object key to a JSON path: .key for plain names,
// ["key"] otherwise.
func joinKey(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			plain = false
			break
		}
	}
	if !plain {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func joinIndex(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// expect checks a node's kind; null is accepted by callers that allow it.
func (d *decoder) expect(n *node, path string, kinds ...nodeKind) bool {
	for _, k := range kinds {
		if n.kind == k {
			return true
		}
	}
	want := make([]string, len(kinds))
	for i, k := range kinds {
		want[i] = k.String()
	}
	d.fail(n.off, path, "expected %s, found %s", strings.Join(want, " or "), n.kind)
	return false
}

// object checks that n is an object and records its position.
func (d *decoder) object(n *node, path string) bool {
	if !d.expect(n, path, kindObject) {
		return false
	}
	return true
}

// fields walks an object's members, rejecting unknown keys with a
// suggestion. handle is called for each known key.
func (d *decoder) fields(n *node, path string, known []string, handle func(key, path string, v *node)) {
	if !d.expect(n, path, kindObject) {
		return
	}
	for _, m := range n.members {
		if d.err != nil {
			return
		}
		p := d.key(path, m.key)
		if !contains(known, m.key) {
			if s := suggest(m.key, known); s != "" {
				d.fail(m.off, p, "unknown key; did you mean %q?", s)
			} else {
				d.fail(m.off, p, "unknown key; expected one of %s", strings.Join(known, ", "))
			}
			return
		}
		handle(m.key, p, m.val)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var (
	topKeys = []string{"version", "allow", "deny", "roles", "groups",
		"capability_groups", "methods", "topics", "site", "deny_by_default"}
	entryKeys = []string{"domain", "address", "mechanism", "credentials", "user_id", "identity",
		"capabilities", "roles", "groups", "rpc_method_authorizations", "comments", "enabled",
		"identities", "agents", "attributes"}
	agentKeys  = []string{"capabilities", "roles", "grant", "comments"}
	grantKeys  = []string{"capabilities", "roles"}
	methodKeys = []string{"capabilities", "roles", "self", "caller_attributes", "same_attributes", "comments"}
	topicKeys  = []string{"publish", "subscribe", "comments"}
	siteKeys   = []string{"limit", "default", "comments"}
)

func (d *decoder) file(root *node) *File {
	f := &File{}
	d.fields(root, "", topKeys, func(key, p string, v *node) {
		switch key {
		case "version":
			f.Version = d.version(v, p)
		case "allow":
			f.Allow = d.entries(v, p)
		case "deny":
			f.Deny = d.entries(v, p)
		case "roles":
			f.Roles = d.nameLists(v, p)
		case "groups":
			f.Groups = d.nameLists(v, p)
		case "capability_groups":
			f.CapabilityGroups = d.nameLists(v, p)
		case "methods":
			f.Methods = d.methods(v, p)
		case "topics":
			f.Topics = d.topics(v, p)
		case "site":
			f.Site = d.site(v, p)
		case "deny_by_default":
			f.DenyByDefault = d.denyMode(v, p)
		}
	})
	return f
}

func (d *decoder) version(n *node, path string) string {
	switch n.kind {
	case kindNull:
		return ""
	case kindString:
		return n.str
	case kindNumber:
		return n.str
	case kindObject:
		var major, minor string
		d.fields(n, path, []string{"major", "minor"}, func(key, p string, v *node) {
			if !d.expect(v, p, kindNumber) {
				return
			}
			if _, err := strconv.ParseUint(v.str, 10, 32); err != nil {
				d.fail(v.off, p, "expected a non-negative integer, found %s", v.str)
				return
			}
			if key == "major" {
				major = v.str
			} else {
				minor = v.str
			}
		})
		if major == "" {
			major = "0"
		}
		if minor == "" {
			minor = "0"
		}
		return major + "." + minor
	}
	d.expect(n, path, kindString, kindObject)
	return ""
}

// denyMode reads deny_by_default: true, false, null or "remote".
func (d *decoder) denyMode(n *node, path string) DenyMode {
	switch {
	case n.kind == kindNull:
		return DenyNone
	case n.kind == kindBool && n.boolean:
		return DenyAll
	case n.kind == kindBool:
		return DenyNone
	case n.kind == kindString && n.str == "remote":
		return DenyRemote
	}
	d.fail(n.off, path, `expected true, false or "remote"`)
	return DenyNone
}

func (d *decoder) boolean(n *node, path string) bool {
	if n.kind == kindNull {
		return false
	}
	if d.expect(n, path, kindBool) {
		return n.boolean
	}
	return false
}

// str reads a string or null.
func (d *decoder) str(n *node, path string) string {
	if n.kind == kindNull {
		return ""
	}
	if d.expect(n, path, kindString) {
		return n.str
	}
	return ""
}

// names reads a list of non-empty names, accepting a single string for
// convenience (VOLTTRON accepts both) and null as empty.
func (d *decoder) names(n *node, path string) []string {
	switch n.kind {
	case kindNull:
		return nil
	case kindString:
		if n.str == "" {
			d.fail(n.off, path, "expected a non-empty name")
			return nil
		}
		return []string{n.str}
	}
	if !d.expect(n, path, kindArray, kindString) {
		return nil
	}
	out := make([]string, 0, len(n.elems))
	var seen map[string]bool
	if len(n.elems) > 16 {
		seen = make(map[string]bool, len(n.elems))
	}
	for i, e := range n.elems {
		p := d.index(path, i)
		if !d.expect(e, p, kindString) {
			return nil
		}
		if strings.TrimSpace(e.str) == "" {
			d.fail(e.off, p, "expected a non-empty name")
			return nil
		}
		if (seen == nil && contains(out, e.str)) || seen[e.str] {
			d.fail(e.off, p, "%q is listed twice", e.str)
			return nil
		}
		if seen != nil {
			seen[e.str] = true
		}
		out = append(out, e.str)
	}
	return out
}

// nameLists reads an object of name -> list of names. VOLTTRON's
// documentation also shows roles as a list of one-key objects; that form is
// accepted too.
func (d *decoder) nameLists(n *node, path string) map[string][]string {
	out := map[string][]string{}
	switch n.kind {
	case kindNull:
		return out
	case kindArray:
		for i, e := range n.elems {
			p := d.index(path, i)
			if !d.expect(e, p, kindObject) {
				return nil
			}
			for _, m := range e.members {
				kp := d.key(path, m.key)
				if _, dup := out[m.key]; dup {
					d.fail(m.off, kp, "%q is defined twice", m.key)
					return nil
				}
				out[m.key] = d.names(m.val, kp)
			}
		}
		return out
	}
	if !d.object(n, path) {
		return nil
	}
	for _, m := range n.members {
		p := d.key(path, m.key)
		if strings.TrimSpace(m.key) == "" {
			d.fail(m.off, p, "expected a non-empty name")
			return nil
		}
		out[m.key] = d.names(m.val, p)
		if d.err != nil {
			return nil
		}
	}
	return out
}

func (d *decoder) stringMap(n *node, path string) map[string]string {
	if n.kind == kindNull {
		return nil
	}
	if !d.expect(n, path, kindObject) {
		return nil
	}
	out := make(map[string]string, len(n.members))
	for _, m := range n.members {
		p := d.key(path, m.key)
		out[m.key] = d.scalar(m.val, p)
	}
	return out
}

// scalar reads a string, number or boolean as text.
func (d *decoder) scalar(n *node, path string) string {
	switch n.kind {
	case kindString, kindNumber:
		return n.str
	case kindBool:
		return strconv.FormatBool(n.boolean)
	}
	d.expect(n, path, kindString, kindNumber, kindBool)
	return ""
}

func (d *decoder) entries(n *node, path string) []Entry {
	if n.kind == kindNull {
		return nil
	}
	if !d.expect(n, path, kindArray) {
		return nil
	}
	out := make([]Entry, 0, len(n.elems))
	for i, e := range n.elems {
		p := d.index(path, i)
		out = append(out, d.entry(e, p))
		if d.err != nil {
			return nil
		}
	}
	return out
}

func (d *decoder) entry(n *node, path string) Entry {
	var e Entry
	d.fields(n, path, entryKeys, func(key, p string, v *node) {
		switch key {
		case "domain":
			e.Domain = d.str(v, p)
		case "address":
			e.Address = d.str(v, p)
		case "mechanism":
			e.Mechanism = d.str(v, p)
			if e.Mechanism != "" && e.Mechanism != "CURVE" && e.Mechanism != "NULL" && e.Mechanism != "PLAIN" {
				d.fail(v.off, p, "expected \"CURVE\", \"NULL\" or \"PLAIN\", found %q", e.Mechanism)
			}
		case "credentials":
			e.Credentials = d.str(v, p)
		case "user_id":
			e.UserID = d.str(v, p)
		case "identity":
			e.Identity = d.str(v, p)
		case "capabilities":
			e.Capabilities = d.capabilities(v, p)
		case "roles":
			e.Roles = d.names(v, p)
		case "groups":
			e.Groups = d.names(v, p)
		case "rpc_method_authorizations":
			e.RPCMethodAuthorizations = d.nameLists(v, p)
		case "comments":
			// VOLTTRON writes a string or null; accept a list of lines too.
			if v.kind == kindArray {
				e.Comments = strings.Join(d.names(v, p), "\n")
			} else {
				e.Comments = d.str(v, p)
			}
		case "enabled":
			if v.kind != kindNull {
				b := d.boolean(v, p)
				e.Enabled = &b
			}
		case "identities":
			e.Identities = d.names(v, p)
		case "agents":
			e.Agents = d.agents(v, p)
		case "attributes":
			e.Attributes = d.stringMap(v, p)
		}
	})
	return e
}

// capabilities reads VOLTTRON's three forms: "cap", ["cap", {"cap":
// {...}}], or {"cap": null, "cap2": {"param": "value"}}.
func (d *decoder) capabilities(n *node, path string) Capabilities {
	var out Capabilities
	var seen map[string]bool // for long lists only
	add := func(name string, off int, p string, restr *node) {
		if strings.TrimSpace(name) == "" || name == "!" {
			d.fail(off, p, "expected a capability name")
			return
		}
		dup := false
		if len(out) < 16 {
			for _, c := range out {
				dup = dup || c.Name == name
			}
		} else {
			if seen == nil {
				seen = make(map[string]bool, 64)
				for _, c := range out {
					seen[c.Name] = true
				}
			}
			dup = seen[name]
		}
		if dup {
			d.fail(off, p, "capability %q is listed twice", name)
			return
		}
		if seen != nil {
			seen[name] = true
		}
		c := Capability{Name: name}
		if restr != nil && restr.kind != kindNull {
			if !d.expect(restr, p, kindObject) {
				return
			}
			if strings.HasPrefix(name, "!") {
				d.fail(restr.off, p, "a negation cannot have parameter restrictions")
				return
			}
			c.Params = d.stringMap(restr, p)
			if c.Params == nil {
				c.Params = map[string]string{}
			}
		}
		out = append(out, c)
	}
	switch n.kind {
	case kindNull:
		return nil
	case kindString:
		add(n.str, n.off, path, nil)
	case kindArray:
		for i, e := range n.elems {
			p := d.index(path, i)
			switch e.kind {
			case kindString:
				add(e.str, e.off, p, nil)
			case kindObject:
				for _, m := range e.members {
					kp := d.key(p, m.key)
					add(m.key, m.off, kp, m.val)
				}
			default:
				d.expect(e, p, kindString, kindObject)
			}
			if d.err != nil {
				return nil
			}
		}
	case kindObject:
		for _, m := range n.members {
			p := d.key(path, m.key)
			add(m.key, m.off, p, m.val)
			if d.err != nil {
				return nil
			}
		}
	default:
		d.expect(n, path, kindString, kindArray, kindObject)
	}
	return out
}

func (d *decoder) agents(n *node, path string) map[string]AgentRule {
	if n.kind == kindNull {
		return nil
	}
	out := map[string]AgentRule{}
	if !d.object(n, path) {
		return nil
	}
	for _, m := range n.members {
		p := d.key(path, m.key)
		var a AgentRule
		d.fields(m.val, p, agentKeys, func(key, kp string, v *node) {
			switch key {
			case "capabilities":
				a.Capabilities = d.names(v, kp)
				if a.Capabilities == nil {
					a.Capabilities = []string{}
				}
			case "roles":
				a.Roles = d.names(v, kp)
				if a.Roles == nil {
					a.Roles = []string{}
				}
			case "grant":
				g := AgentGrant{}
				d.fields(v, kp, grantKeys, func(key, gp string, gv *node) {
					switch key {
					case "capabilities":
						g.Capabilities = d.names(gv, gp)
					case "roles":
						g.Roles = d.names(gv, gp)
					}
				})
				a.Grant = &g
			case "comments":
				a.Comments = d.str(v, kp)
			}
		})
		out[m.key] = a
	}
	return out
}

func (d *decoder) methods(n *node, path string) map[string]MethodRule {
	out := map[string]MethodRule{}
	if n.kind == kindNull {
		return out
	}
	if !d.object(n, path) {
		return nil
	}
	for _, m := range n.members {
		p := d.key(path, m.key)
		if i := strings.LastIndexByte(m.key, '.'); i <= 0 || i == len(m.key)-1 {
			d.fail(m.off, p, "expected a key of the form \"identity.method\"")
			return nil
		}
		var r MethodRule
		d.fields(m.val, p, methodKeys, func(key, kp string, v *node) {
			switch key {
			case "capabilities":
				r.Capabilities = d.names(v, kp)
			case "roles":
				r.Roles = d.names(v, kp)
			case "self":
				r.Self = d.boolean(v, kp)
			case "caller_attributes":
				r.CallerAttributes = d.stringMap(v, kp)
			case "same_attributes":
				r.SameAttributes = d.names(v, kp)
			case "comments":
				r.Comments = d.str(v, kp)
			}
		})
		out[m.key] = r
	}
	return out
}

func (d *decoder) topics(n *node, path string) map[string]TopicRule {
	out := map[string]TopicRule{}
	if n.kind == kindNull {
		return out
	}
	if !d.object(n, path) {
		return nil
	}
	for _, m := range n.members {
		p := d.key(path, m.key)
		if msg := checkTopicPattern(m.key); msg != "" {
			d.fail(m.off, p, "%s", msg)
			return nil
		}
		var r TopicRule
		d.fields(m.val, p, topicKeys, func(key, kp string, v *node) {
			switch key {
			case "publish", "subscribe":
				list := d.names(v, kp)
				if list == nil {
					list = []string{}
				}
				if key == "publish" {
					r.Publish = &list
				} else {
					r.Subscribe = &list
				}
			case "comments":
				r.Comments = d.str(v, kp)
			}
		})
		out[m.key] = r
	}
	return out
}

func (d *decoder) site(n *node, path string) map[string]SiteRule {
	out := map[string]SiteRule{}
	if n.kind == kindNull {
		return out
	}
	if !d.object(n, path) {
		return nil
	}
	for _, m := range n.members {
		p := d.key(path, m.key)
		var r SiteRule
		d.fields(m.val, p, siteKeys, func(key, kp string, v *node) {
			switch key {
			case "limit":
				list := d.names(v, kp)
				if list == nil {
					list = []string{}
				}
				r.Limit = &list
			case "default":
				r.Default = d.names(v, kp)
			case "comments":
				r.Comments = d.str(v, kp)
			}
		})
		out[m.key] = r
	}
	return out
}

// suggest returns the known key closest to key, if it is close enough to be
// a likely typo.
func suggest(key string, known []string) string {
	best, bestD := "", len(key)/2+2
	if bestD > 4 {
		bestD = 4
	}
	cands := append([]string(nil), known...)
	sort.Strings(cands)
	for _, k := range cands {
		if dist := editDistance(strings.ToLower(key), k); dist < bestD {
			best, bestD = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance, counting an adjacent
// transposition as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
