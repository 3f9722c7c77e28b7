package auth

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// File is the parsed, editable form of an auth.json document: VOLTTRON's
// format 1.4 plus the capbus extensions. ParseFile produces it, Compile turns
// it into a Policy and Marshal writes it back (stable key order, two-space
// indentation; comments in the original text are not kept: EditFile, which
// writes only what changed into the original text, keeps them).
type File struct {
	// Version is the document version. VOLTTRON writes {"major": 1,
	// "minor": 4}, which reads as "1.4"; a plain string is kept as is.
	Version string
	// Allow lists the peers that may connect and what they are granted.
	// An entry whose user_id is "*" holds grants for every authenticated
	// peer and matches no key itself.
	Allow []Entry
	// Deny lists peers that are refused even when an allow entry matches
	// them (by credentials, address, domain or user_id).
	Deny []Entry
	// Roles maps a role to capabilities (capability groups and !negations
	// allowed).
	Roles map[string][]string
	// Groups maps a group to roles.
	Groups map[string][]string

	// CapabilityGroups (capbus) maps a name such as READ to capabilities
	// or other capability groups; a group name can be used wherever a
	// capability can.
	CapabilityGroups map[string][]string
	// Methods (capbus) adds operator requirements to "identity.method".
	Methods map[string]MethodRule
	// Topics (capbus) protects topic trees for publish and subscribe.
	Topics map[string]TopicRule
	// Site (capbus) holds limits and defaults per user id; "*" applies to
	// every user without a section of its own.
	Site map[string]SiteRule
	// DenyByDefault (capbus) refuses methods that declare no requirement
	// unless the caller holds the capability "identity.method": for every
	// caller (DenyAll, written true) or only for callers that did not
	// connect from loopback (DenyRemote, written "remote").
	DenyByDefault DenyMode

	name string
	data []byte
	root *node // the parsed text, for error positions; nil when built in memory
}

// Entry is one allow or deny entry.
type Entry struct {
	Domain      string // ZAP domain (VOLTTRON); accepted and validated, not checked: capbus has one domain
	Address     string // peer address, exact or /regex/; "" matches any
	Mechanism   string // CURVE (the default), NULL or PLAIN; capbus admits CURVE only
	Credentials string // the CURVE public key (base64url, Z85 or hex), "CURVE:<key>", or /regex/
	UserID      string // the user this entry authenticates as; "*" for the any-peer entry
	Identity    string // the agent identity the key may claim, exact or /regex/
	// Capabilities granted, in file order.
	Capabilities Capabilities
	Roles        []string // roles granted (must be defined in "roles")
	Groups       []string // groups granted (must be defined in "groups")
	// RPCMethodAuthorizations maps a method of this entry's agent to the
	// capabilities a caller needs (VOLTTRON).
	RPCMethodAuthorizations map[string][]string
	Comments                string // free text (VOLTTRON)
	Enabled                 *bool  // nil means true

	// Identities (capbus) lists more agent identities the key may claim,
	// exact or /regex/.
	Identities []string
	// Agents (capbus) narrows what one agent identity of this user gets:
	// the intersection of the user's grants and the listed ones.
	Agents map[string]AgentRule
	// Attributes (capbus) are caller attributes such as "org", used by
	// method conditions.
	Attributes map[string]string
}

// DenyMode says whom deny_by_default applies to.
type DenyMode string

// The values of DenyMode.
const (
	// DenyNone: a method without requirements is open to every
	// authenticated peer (VOLTTRON's behaviour); written false or absent.
	DenyNone DenyMode = ""
	// DenyAll: a method without requirements needs the capability
	// "identity.method", whoever calls; written true.
	DenyAll DenyMode = "all"
	// DenyRemote: as DenyAll for callers that did not connect from
	// loopback (127.0.0.0/8, ::1); local callers keep the open default;
	// written "remote".
	DenyRemote DenyMode = "remote"
)

// MarshalJSON writes DenyAll as true, DenyRemote as "remote", DenyNone as
// false.
func (m DenyMode) MarshalJSON() ([]byte, error) {
	switch m {
	case DenyAll:
		return []byte("true"), nil
	case DenyRemote:
		return []byte(`"remote"`), nil
	}
	return []byte("false"), nil
}

// IsEnabled reports whether the entry is enabled (absent means enabled).
func (e *Entry) IsEnabled() bool { return e.Enabled == nil || *e.Enabled }

// Capability is one granted capability: a capability or capability-group
// name, or a negation "!name", with optional VOLTTRON parameter restrictions
// (parameter -> exact value, or "/regex/" matched against the whole value).
type Capability struct {
	Name   string            // a capability, a capability group, or "!name"
	Params map[string]string // parameter -> value or /regex/; nil when unrestricted
}

// Capabilities is the capabilities field of an entry. It reads VOLTTRON's
// three forms (a string, a list, or an object of name -> restrictions or
// null) and writes a list when no restriction is present, an object
// otherwise.
type Capabilities []Capability

// Names returns the capability names in order.
func (c Capabilities) Names() []string {
	out := make([]string, len(c))
	for i, x := range c {
		out[i] = x.Name
	}
	return out
}

// AgentRule narrows, or widens, what one agent identity of a user gets.
//
// Narrowing: when Capabilities or Roles is present, the identity gets the
// intersection of the user's grants and the listed ones (an omitted list
// then grants nothing of that kind). Widening: Grant gives the identity
// capabilities and roles on top of the user's (the seed's "authorize at
// the agent level"); the user's negations and the site limit still apply.
// A rule with only Grant does not narrow.
type AgentRule struct {
	Capabilities []string    `json:"capabilities,omitempty"`
	Roles        []string    `json:"roles,omitempty"`
	Grant        *AgentGrant `json:"grant,omitempty"`
	Comments     string      `json:"comments,omitempty"`
}

// Narrows reports whether the rule narrows the user's grants.
func (a AgentRule) Narrows() bool {
	return a.Capabilities != nil || a.Roles != nil || a.Grant == nil
}

// AgentGrant is what an AgentRule grants one identity beyond its user's
// grants.
type AgentGrant struct {
	Capabilities []string `json:"capabilities,omitempty"`
	Roles        []string `json:"roles,omitempty"`
}

// MethodRule is an operator requirement for one "identity.method": all
// listed capabilities and roles, and every condition.
type MethodRule struct {
	Capabilities []string `json:"capabilities,omitempty"`
	Roles        []string `json:"roles,omitempty"`
	// Self requires the caller to be the callee's own user.
	Self bool `json:"self,omitempty"`
	// CallerAttributes requires caller attributes with these exact values.
	CallerAttributes map[string]string `json:"caller_attributes,omitempty"`
	// SameAttributes requires these caller attributes to equal the
	// callee's (NVFlare's "org:site").
	SameAttributes []string `json:"same_attributes,omitempty"`
	Comments       string   `json:"comments,omitempty"`
}

// TopicRule protects a topic tree. A nil list means nobody may perform that
// operation (deny by default); an empty list means any authenticated peer.
type TopicRule struct {
	Publish   *[]string `json:"publish,omitempty"`
	Subscribe *[]string `json:"subscribe,omitempty"`
	Comments  string    `json:"comments,omitempty"`
}

// SiteRule is a site limit and default (Cylc). Limit caps every capability
// a user ends up with (nil: no limit); Default is granted to a user whose
// entry grants nothing itself.
type SiteRule struct {
	Limit    *[]string `json:"limit,omitempty"`
	Default  []string  `json:"default,omitempty"`
	Comments string    `json:"comments,omitempty"`
}

// unmodified reports whether f still says what the text it was parsed from
// says, so that positions in that text apply to it. It runs only when
// reporting an error.
func (f *File) unmodified() bool {
	d := &decoder{name: f.name, data: f.data}
	g := d.file(f.root)
	if d.err != nil {
		return false
	}
	a, err1 := f.Marshal()
	b, err2 := g.Marshal()
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// Marshal encodes the document as indented JSON with a stable key order. The
// result parses back to an equal File.
func (f *File) Marshal() ([]byte, error) {
	type fileJSON struct {
		Version          json.RawMessage       `json:"version,omitempty"`
		Allow            []Entry               `json:"allow"`
		Deny             []Entry               `json:"deny,omitempty"`
		Roles            map[string][]string   `json:"roles,omitempty"`
		Groups           map[string][]string   `json:"groups,omitempty"`
		CapabilityGroups map[string][]string   `json:"capability_groups,omitempty"`
		Methods          map[string]MethodRule `json:"methods,omitempty"`
		Topics           map[string]TopicRule  `json:"topics,omitempty"`
		Site             map[string]SiteRule   `json:"site,omitempty"`
		DenyByDefault    DenyMode              `json:"deny_by_default,omitempty"`
	}
	out := fileJSON{
		Version: marshalVersion(f.Version), Allow: f.Allow, Deny: f.Deny,
		Roles: f.Roles, Groups: f.Groups, CapabilityGroups: f.CapabilityGroups,
		Methods: f.Methods, Topics: f.Topics, Site: f.Site, DenyByDefault: f.DenyByDefault,
	}
	if out.Allow == nil {
		out.Allow = []Entry{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// marshalVersion writes "1.4" as VOLTTRON's {"major": 1, "minor": 4}.
func marshalVersion(v string) json.RawMessage {
	if v == "" {
		return nil
	}
	if maj, min, ok := strings.Cut(v, "."); ok {
		a, err1 := strconv.Atoi(maj)
		b, err2 := strconv.Atoi(min)
		if err1 == nil && err2 == nil && a >= 0 && b >= 0 && strconv.Itoa(a) == maj && strconv.Itoa(b) == min {
			return json.RawMessage(`{"major": ` + maj + `, "minor": ` + min + `}`)
		}
	}
	b, _ := marshalNoHTML(v)
	return b
}

// MarshalJSON implements json.Marshaler.
func (e Entry) MarshalJSON() ([]byte, error) {
	type entryJSON struct {
		Domain                  string               `json:"domain,omitempty"`
		Address                 string               `json:"address,omitempty"`
		Mechanism               string               `json:"mechanism,omitempty"`
		Credentials             string               `json:"credentials,omitempty"`
		UserID                  string               `json:"user_id,omitempty"`
		Identity                string               `json:"identity,omitempty"`
		Identities              []string             `json:"identities,omitempty"`
		Capabilities            Capabilities         `json:"capabilities,omitempty"`
		Roles                   []string             `json:"roles,omitempty"`
		Groups                  []string             `json:"groups,omitempty"`
		RPCMethodAuthorizations map[string][]string  `json:"rpc_method_authorizations,omitempty"`
		Agents                  map[string]AgentRule `json:"agents,omitempty"`
		Attributes              map[string]string    `json:"attributes,omitempty"`
		Comments                string               `json:"comments,omitempty"`
		Enabled                 *bool                `json:"enabled,omitempty"`
	}
	return marshalNoHTML(entryJSON{
		Domain: e.Domain, Address: e.Address, Mechanism: e.Mechanism, Credentials: e.Credentials,
		UserID: e.UserID, Identity: e.Identity, Identities: e.Identities, Capabilities: e.Capabilities,
		Roles: e.Roles, Groups: e.Groups, RPCMethodAuthorizations: e.RPCMethodAuthorizations,
		Agents: e.Agents, Attributes: e.Attributes, Comments: e.Comments, Enabled: e.Enabled,
	})
}

// marshalNoHTML is json.Marshal without escaping <, > and &: Z85 keys and
// regular expressions stay readable (and searchable) in the file.
func marshalNoHTML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MarshalJSON implements json.Marshaler: a list of names, or an object in
// file order when any capability has parameter restrictions.
func (c Capabilities) MarshalJSON() ([]byte, error) {
	restricted := false
	for _, x := range c {
		if x.Params != nil {
			restricted = true
		}
	}
	if !restricted {
		return marshalNoHTML(c.Names())
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, x := range c {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, err := marshalNoHTML(x.Name)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		if x.Params == nil {
			buf.WriteString("null")
			continue
		}
		v, err := marshalNoHTML(x.Params)
		if err != nil {
			return nil, err
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
