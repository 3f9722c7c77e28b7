package agent

import (
	"context"

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
	return Self{Principal: rpc.Principal{UserID: p.UserID, Identity: p.Identity, Key: k}, Generation: p.Generation}, nil
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

// query runs the query subsystem: ["query", what] answered by
// ["query", what, VALUE].
func (a *Agent) query(ctx context.Context, what string, v any) error {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	s, err := a.current(ctx)
	if err != nil {
		return err
	}
	r, err := s.request(ctx, &message{Subsys: vip.SubQuery, Args: [][]byte{[]byte(what)}}, 0)
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
