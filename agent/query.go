package agent

import (
	"context"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// Principal is who the platform says the agent is: UserID, the user id of
// the agent's key in auth.json; Identity, the agent identity as admitted;
// Key, the agent's public key in Z85; Generation, the policy generation in
// force.
type Principal = vip.Principal

// Method is a method of a connected agent. Callable decodes the platform's
// answer (docs/PROTOCOL.md section 4, query "callable") with the shared wire
// definition and converts it; the msgpack tags here only serve programs
// that encode a Method themselves.
type Method struct {
	// Peer is the identity of the agent that exports the method.
	Peer string `msgpack:"peer"`
	// Method is the method name.
	Method string `msgpack:"method"`
	// Conditional is true when the decision depends on the call's
	// arguments (an auth.json parameter restriction applies).
	Conditional bool `msgpack:"conditional"`
}

// String returns "peer.method", with " (conditional)" when the decision
// depends on the arguments.
func (m Method) String() string {
	if m.Conditional {
		return m.Peer + "." + m.Method + " (conditional)"
	}
	return m.Peer + "." + m.Method
}

// Permissions are the capabilities and roles effective for the agent:
// UserID and Identity, the agent's user id and identity; Capabilities, the
// effective capabilities (direct grants, roles, groups and the any-peer
// entry, after negations and site limits); Roles, the roles held, directly
// or through groups; Restricted, the capabilities held only with parameter
// restrictions; Narrowed, true when auth.json narrows this identity's
// grants below its user's; Generation, the policy generation in force.
type Permissions = vip.Permissions

// WhoAmI asks the platform who the agent is: its user id, identity, key
// and the policy generation.
func (a *Agent) WhoAmI(ctx context.Context) (Principal, error) {
	var p Principal
	err := a.query(ctx, vip.QueryWhoami, &p)
	return p, err
}

// Callable asks the platform which methods of the connected agents the
// agent may call now, sorted by peer then method. The platform's call hook,
// if any, is not consulted.
func (a *Agent) Callable(ctx context.Context) ([]Method, error) {
	var v []vip.Method
	err := a.query(ctx, vip.QueryCallable, &v)
	var m []Method
	if v != nil {
		m = make([]Method, len(v))
		for i := range v {
			m[i] = Method(v[i])
		}
	}
	return m, err
}

// Permissions asks the platform for the capabilities and roles in effect
// for the agent.
func (a *Agent) Permissions(ctx context.Context) (Permissions, error) {
	var p Permissions
	err := a.query(ctx, vip.QueryPermissions, &p)
	return p, err
}

// Peers returns the identities of the agents connected to the platform.
func (a *Agent) Peers(ctx context.Context) ([]string, error) {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	s, err := a.current()
	if err != nil {
		return nil, err
	}
	r, err := s.request(ctx, &message{Subsys: vip.SubPeerlist, Args: [][]byte{[]byte(vip.OpList)}})
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
	s, err := a.current()
	if err != nil {
		return err
	}
	_, err = s.request(ctx, &message{Subsys: vip.SubPing})
	return err
}

// query runs the query subsystem: ["query", what] answered by
// ["query", what, VALUE].
func (a *Agent) query(ctx context.Context, what string, v any) error {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	s, err := a.current()
	if err != nil {
		return err
	}
	r, err := s.request(ctx, &message{Subsys: vip.SubQuery, Args: [][]byte{[]byte(what)}})
	if err != nil {
		return err
	}
	if len(r.Args) < 2 {
		return rpc.Errorf(rpc.CodeProtocol, "query %s: no value in the answer", what)
	}
	if err := rpc.Unmarshal(r.Args[1], v); err != nil {
		return rpc.Errorf(rpc.CodeProtocol, "query %s: undecodable answer: %v", what, err)
	}
	return nil
}
