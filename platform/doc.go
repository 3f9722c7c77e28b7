// Package platform is the capbus message bus: the process every agent
// connects to.
//
// A Platform listens on one TCP address as a CurveZMQ server (package
// auth/curve), authenticates every peer by its long-term public key against
// auth.json (package auth), and speaks the VIP framing of docs/PROTOCOL.md
// towards each connection: hello/welcome, ping, peerlist, RPC, pubsub,
// query and error. It routes by identity with a map lookup, stamps the
// authenticated user id and identity of the sender on everything it
// forwards, and judges every call, publish and subscribe against the policy
// in force before anything reaches another agent. A denied call never
// reaches its callee: the caller gets errno 13 naming the method, what was
// required and what was missing.
//
// The policy is live: when auth.json changes, connections whose key was
// removed, disabled or denied are closed, identity claims no longer allowed
// are dropped, subscriptions no longer allowed are removed, and every later
// decision uses the new policy.
//
// The embedding program can add its own checks with an AdmissionHook (run
// before an agent is admitted) and a CallHook (run before a call is
// forwarded). An error or a panic in a hook refuses; its reason reaches the
// agent or caller and the audit log.
//
// Minimal use:
//
//	p, err := platform.New(
//		platform.WithAddress("tcp://127.0.0.1:22916"),
//		platform.WithKeystore("/etc/capbus/keystore.json"),
//		platform.WithAuthFile("/etc/capbus/auth.json"),
//	)
//	if err != nil { ... }
//	err = p.Run(ctx) // returns when ctx is cancelled
//
// Hot path: each connection has one reader and one writer goroutine and a
// bounded queue; no goroutine, context or payload decoding per message
// (except for methods restricted by parameter in auth.json). Messages are
// read and written whole through the CURVE conn ([curve.Conn.ReadMsg],
// [curve.Conn.WriteMsg]); zmq4 opens each ZMTP session. A reader that
// forwards an RPC message to a connection whose writer is idle seals it
// into that connection itself and writes everything it forwarded with one
// non-blocking write per destination once it has handled all the input it
// received; what a destination's socket does not take is left to that
// connection's writer, so a peer that stops reading never stalls another
// peer's reader. Messages that queue up behind a busy writer go out
// together in one write.
package platform
