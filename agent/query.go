package agent

import (
	"context"
	"strconv"

	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// Self is who the platform says the agent is, and which policy judges it.
type Self struct {
	// Principal is the agent's user, identity and key, as authenticated.
	rpc.Principal
	// Generation is the generation of the policy in force.
	Generation uint64
	// PolicyNote is empty when the policy in force is the platform's
	// auth.json as it is on disk. Otherwise it says why not: the file was
	// rejected and an older (or a closed) policy is in force.
	PolicyNote string
	// Rejected locates the error of the rejected auth.json; nil when the
	// file on disk is in force.
	Rejected *RejectedFile
}

// RejectedFile is where the platform's auth.json is wrong, when the
// platform rejected the file and kept an older policy.
type RejectedFile struct {
	// File is the path of auth.json on the platform's host.
	File string
	// Line and Column locate the error (1-based; 0 when unknown).
	Line, Column int
	// Path is the JSON path of the offending value, such as
	// "allow[1].capabilities".
	Path string
	// Message says what is wrong.
	Message string
}

// String reads like a compiler diagnostic: FILE:LINE:COLUMN: PATH: MESSAGE.
func (r RejectedFile) String() string {
	s := r.File
	if r.Line > 0 {
		s += ":" + strconv.Itoa(r.Line) + ":" + strconv.Itoa(r.Column)
	}
	s += ": "
	if r.Path != "" {
		s += r.Path + ": "
	}
	return s + r.Message
}

// Description is what a connected agent serves, as the platform sees it:
// its methods, what each requires under the policy in force, and whether
// the asking agent may call each one.
type Description struct {
	// Identity and UserID are the described agent's identity and user.
	Identity, UserID string
	// Generation is the generation of the policy that judged.
	Generation uint64
	// Methods are the agent's methods, sorted by name.
	Methods []MethodDescription
}

// MethodDescription is one method of a Description.
type MethodDescription struct {
	// Name is the method name.
	Name string
	// Params are its positional parameter names, as declared.
	Params []string
	// Capabilities and Roles are what a caller must hold: the agent's
	// declaration (rpc.Allow, rpc.AllowRoles) plus what auth.json adds
	// ("methods", rpc_method_authorizations, deny_by_default).
	Capabilities, Roles []string
	// DeclaredCapabilities and DeclaredRoles are the agent's declaration
	// alone.
	DeclaredCapabilities, DeclaredRoles []string
	// Allowed is true when the asking agent may call the method now.
	Allowed bool
	// Conditional is true when the decision depends on the call's
	// arguments (an auth.json parameter restriction applies).
	Conditional bool
	// Missing is what the asking agent lacks: capabilities, then roles as
	// "role:name".
	Missing []string
	// Reason says why the asking agent may not call it ("" if it may).
	Reason string
	// Warnings name problems of the requirement that auth.json shows, such
	// as a required role that nobody holds.
	Warnings []string
}

// Describe asks the platform what the connected agent identity serves:
// each method with its parameters, its requirement under the policy in
// force, and whether this agent may call it. An identity that is not
// connected fails with rpc.ErrNoRoute.
func (a *Agent) Describe(ctx context.Context, identity string) (Description, error) {
	var d vip.Description
	if err := a.query(ctx, vip.QueryDescribe, &d, identity); err != nil {
		return Description{}, err
	}
	return descriptionOf(d), nil
}

func descriptionOf(d vip.Description) Description {
	out := Description{Identity: d.Identity, UserID: d.UserID, Generation: d.Generation,
		Methods: make([]MethodDescription, len(d.Methods))}
	for i, m := range d.Methods {
		out.Methods[i] = MethodDescription{Name: m.Name, Params: m.Params, Capabilities: m.Capabilities, Roles: m.Roles,
			DeclaredCapabilities: m.DeclaredCapabilities, DeclaredRoles: m.DeclaredRoles, Allowed: m.Allowed,
			Conditional: m.Conditional, Missing: m.Missing, Reason: m.Reason, Warnings: m.Warnings}
	}
	return out
}

// Method is a method of a connected agent that the agent may call.
type Method struct {
	// Peer is the identity of the agent that exports the method.
	Peer string
	// Method is the method name.
	Method string
	// Conditional is true when the decision depends on the call's
	// arguments (an auth.json parameter restriction applies).
	Conditional bool
}

// String returns "peer.method", with " (conditional)" when the decision
// depends on the arguments.
func (m Method) String() string {
	if m.Conditional {
		return m.Peer + "." + m.Method + " (conditional)"
	}
	return m.Peer + "." + m.Method
}

// Permissions are the capabilities and roles in effect for the agent.
type Permissions struct {
	// UserID and Identity are the agent's user id and identity.
	UserID, Identity string
	// Capabilities are the effective capabilities: direct grants, roles,
	// groups and the any-peer entry, after negations and site limits.
	Capabilities []string
	// Roles are the roles held, directly or through groups.
	Roles []string
	// Restricted are the capabilities held only with parameter
	// restrictions.
	Restricted []string
	// Narrowed is true when auth.json narrows this identity's grants
	// below its user's.
	Narrowed bool
	// Generation is the generation of the policy in force.
	Generation uint64
}

// WhoAmI asks the platform who the agent is: its user id, identity, key
// and the policy generation.
func (a *Agent) WhoAmI(ctx context.Context) (Self, error) {
	var p vip.Principal
	if err := a.query(ctx, vip.QueryWhoami, &p); err != nil {
		return Self{}, err
	}
	k, _ := keys.Parse(p.Key)
	self := Self{Principal: rpc.Principal{UserID: p.UserID, Identity: p.Identity, Key: k}, Generation: p.Generation, PolicyNote: p.PolicyNote}
	if r := p.Rejected; r != nil {
		self.Rejected = &RejectedFile{File: r.File, Line: r.Line, Column: r.Column, Path: r.Path, Message: r.Message}
	}
	return self, nil
}

// Callable asks the platform which methods of the connected agents the
// agent may call now, sorted by peer then method. The platform's call hook,
// if any, is not consulted.
func (a *Agent) Callable(ctx context.Context) ([]Method, error) {
	var v []vip.Method
	if err := a.query(ctx, vip.QueryCallable, &v); err != nil {
		return nil, err
	}
	m := make([]Method, len(v))
	for i := range v {
		m[i] = Method{Peer: v[i].Peer, Method: v[i].Method, Conditional: v[i].Conditional}
	}
	return m, nil
}

// Permissions asks the platform for the capabilities and roles in effect
// for the agent.
func (a *Agent) Permissions(ctx context.Context) (Permissions, error) {
	var p vip.Permissions
	if err := a.query(ctx, vip.QueryPermissions, &p); err != nil {
		return Permissions{}, err
	}
	return Permissions{UserID: p.UserID, Identity: p.Identity, Capabilities: p.Capabilities, Roles: p.Roles,
		Restricted: p.Restricted, Narrowed: p.Narrowed, Generation: p.Generation}, nil
}

// Peers returns the identities of the agents connected to the platform.
func (a *Agent) Peers(ctx context.Context) ([]string, error) {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	s, err := a.current(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.request(ctx, &message{Subsys: vip.SubPeerlist, Args: [][]byte{[]byte(vip.OpList)}}, 0)
	if err != nil {
		return nil, err
	}
	if r.arg(0) != vip.OpListing {
		return nil, rpc.Errorf(rpc.CodeProtocol, "peerlist answered with %q, want %q", r.arg(0), vip.OpListing)
	}
	peers := make([]string, 0, len(r.Args)-1)
	for _, p := range r.Args[1:] {
		peers = append(peers, string(p))
	}
	return peers, nil
}

// Ping checks the round trip to the platform.
func (a *Agent) Ping(ctx context.Context) error {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	s, err := a.current(ctx)
	if err != nil {
		return err
	}
	_, err = s.request(ctx, &message{Subsys: vip.SubPing}, 0)
	return err
}

// query runs the query subsystem: ["query", what, args...] answered by
// ["query", what, VALUE].
func (a *Agent) query(ctx context.Context, what string, v any, args ...string) error {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	s, err := a.current(ctx)
	if err != nil {
		return err
	}
	return s.query(ctx, what, v, args...)
}

// query runs a query on this session.
func (s *session) query(ctx context.Context, what string, v any, args ...string) error {
	frames := [][]byte{[]byte(what)}
	for _, x := range args {
		frames = append(frames, []byte(x))
	}
	r, err := s.request(ctx, &message{Subsys: vip.SubQuery, Args: frames}, 0)
	if err != nil {
		return err
	}
	if len(r.Args) < 2 {
		return rpc.Errorf(rpc.CodeProtocol, "query %s: no value in the answer", what)
	}
	if err := codec.Unmarshal(r.Args[1], v); err != nil {
		return rpc.Errorf(rpc.CodeProtocol, "query %s: undecodable answer: %v", what, err)
	}
	return nil
}
