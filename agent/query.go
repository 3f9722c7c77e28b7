package agent

import (
	"context"

	"github.com/capbus/capbus/rpc"
)

// Principal is who the platform says the agent is.
type Principal struct {
	// UserID is the user id of the agent's key in auth.json.
	UserID string `msgpack:"user_id"`
	// Identity is the agent identity as admitted.
	Identity string `msgpack:"identity"`
	// Key is the agent's public key in Z85.
	Key string `msgpack:"key"`
	// Generation is the policy generation in force.
	Generation uint64 `msgpack:"generation"`
}

// Method is a method of a connected agent.
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

// Permissions are the capabilities and roles effective for the agent.
type Permissions struct {
	// UserID and Identity are the agent's user id and identity.
	UserID   string `msgpack:"user_id"`
	Identity string `msgpack:"identity"`
	// Capabilities are the effective capabilities: direct grants, roles,
	// groups and the any-peer entry, after negations and site limits.
	Capabilities []string `msgpack:"capabilities"`
	// Roles are the roles held, directly or through groups.
	Roles []string `msgpack:"roles"`
	// Restricted are the capabilities held only with parameter
	// restrictions.
	Restricted []string `msgpack:"restricted"`
	// Narrowed is true when auth.json narrows this identity's grants below
	// its user's.
	Narrowed bool `msgpack:"narrowed"`
	// Generation is the policy generation in force.
	Generation uint64 `msgpack:"generation"`
}

// WhoAmI asks the platform who the agent is: its user id, identity, key
// and the policy generation.
func (a *Agent) WhoAmI(ctx context.Context) (Principal, error) {
	var p Principal
	err := a.query(ctx, "whoami", &p)
	return p, err
}

// Callable asks the platform which methods of the connected agents the
// agent may call now, sorted by peer then method. The platform's call hook,
// if any, is not consulted.
func (a *Agent) Callable(ctx context.Context) ([]Method, error) {
	var m []Method
	err := a.query(ctx, "callable", &m)
	return m, err
}

// Permissions asks the platform for the capabilities and roles in effect
// for the agent.
func (a *Agent) Permissions(ctx context.Context) (Permissions, error) {
	var p Permissions
	err := a.query(ctx, "permissions", &p)
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
	r, err := s.request(ctx, &message{Subsys: subPeerlist, Args: [][]byte{[]byte("list")}})
	if err != nil {
		return nil, err
	}
	if r.arg(0) != "listing" {
		return nil, rpc.Errorf(rpc.CodeProtocol, "peerlist answered with %q, want \"listing\"", r.arg(0))
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
	_, err = s.request(ctx, &message{Subsys: subPing})
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
	r, err := s.request(ctx, &message{Subsys: subQuery, Args: [][]byte{[]byte(what)}})
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
