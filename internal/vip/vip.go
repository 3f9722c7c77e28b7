// Package vip is the VIP wire vocabulary of docs/PROTOCOL.md, defined once
// for the platform and the agent SDK: the signature, the frame layout, the
// subsystem and operation names, the msgpack maps carried in payload
// frames, and the topic syntax.
//
// It holds names and shapes only, and the two topic functions. Each side
// keeps its own code that builds and parses frames and encodes and decodes
// payloads; those use the definitions here so that both agree by
// construction.
package vip

import "github.com/capbus/capbus/rpc"

// Signature is the protocol signature and version frame (docs/PROTOCOL.md
// section 2, "Framing").
const Signature = "VIP1"

// Constant frames shared by the messages both sides build. They are never
// modified: zmq4 and the CURVE layer only read the frames they are given.
var (
	// SignatureFrame is Signature as a frame.
	SignatureFrame = []byte(Signature)
	// Empty is the empty frame: the platform as recipient or sender, no
	// user, no msg-id (docs/PROTOCOL.md section 2).
	Empty = []byte{}
)

// Frame indexes of a VIP message (docs/PROTOCOL.md section 2): a client
// sends [recipient, "VIP1", user, msg-id, subsystem, args...] and receives
// [sender, "VIP1", user, msg-id, subsystem, args...].
const (
	// FramePeer is the recipient of a message a client sends and the
	// sender of a message it receives.
	FramePeer      = 0
	FrameSignature = 1
	FrameUser      = 2
	FrameMsgID     = 3
	FrameSubsystem = 4
	// FrameArgs is the first argument frame.
	FrameArgs = 5
	// MinFrames is the fewest frames a message has.
	MinFrames = 5
)

// Limits of docs/PROTOCOL.md sections 2 to 4.
const (
	// MaxMsgID is the longest msg-id, in bytes.
	MaxMsgID = 64
	// MaxIdentity is the longest identity, in bytes (section 3, "hello /
	// welcome").
	MaxIdentity = 128
	// MaxMethodName is the longest export name, in bytes (section 3,
	// "hello / welcome", EXPORT).
	MaxMethodName = 256
	// MaxTopic is the longest topic or pattern, in bytes (section 4,
	// "pubsub").
	MaxTopic = 1024
)

// Subsystem names (docs/PROTOCOL.md section 2, "subsystem").
const (
	SubHello    = "hello"
	SubWelcome  = "welcome"
	SubPing     = "ping"
	SubPong     = "pong"
	SubPeerlist = "peerlist"
	SubRPC      = "RPC"
	SubPubsub   = "pubsub"
	SubQuery    = "query"
	SubError    = "error"
	SubConfig   = "config"
)

// Subsystems lists every subsystem name. It is never modified.
var Subsystems = []string{SubHello, SubWelcome, SubPing, SubPong, SubPeerlist, SubRPC, SubPubsub, SubQuery, SubError, SubConfig}

// Operations: the first argument frame of a message of a subsystem.
const (
	// OpExport and OpExported add exports after hello, on the RPC
	// subsystem addressed to the platform (docs/PROTOCOL.md section 3,
	// "export").
	OpExport   = "export"
	OpExported = "exported"

	// RPC between peers (docs/PROTOCOL.md section 4, "RPC").
	OpCall   = "call"
	OpNotify = "notify"
	OpResult = "result"
	OpError  = "error"
	OpCancel = "cancel"

	// peerlist (docs/PROTOCOL.md section 4, "peerlist").
	OpList    = "list"
	OpListing = "listing"
	OpAdd     = "add"
	OpDrop    = "drop"

	// pubsub (docs/PROTOCOL.md section 4, "pubsub").
	OpSubscribe   = "subscribe"
	OpUnsubscribe = "unsubscribe"
	OpPublish     = "publish"
	OpMessage     = "message"
	OpOK          = "ok"
)

// Query names: the what frame of the query subsystem (docs/PROTOCOL.md
// section 4, "query").
const (
	QueryServerKey   = "serverkey"
	QueryVersion     = "version"
	QueryWhoami      = "whoami"
	QueryCallable    = "callable"
	QueryPermissions = "permissions"
	// QueryDescribe is followed by an identity frame: ["query",
	// "describe", identity].
	QueryDescribe = "describe"
)

// Argument indexes of an RPC message between peers, [op, method, PAYLOAD,
// TIMEOUT], counted from FrameArgs (docs/PROTOCOL.md section 4, "RPC"):
// PAYLOAD is the ARGS of a call or notify and the VALUE or ERROR of a
// reply; TIMEOUT, on a call only, the time left to the caller's deadline
// in decimal milliseconds.
const (
	RPCArgOp      = 0
	RPCArgMethod  = 1
	RPCArgPayload = 2
	RPCArgTimeout = 3
)

// Argument indexes of an error-subsystem message, [errno, text, recipient,
// subsystem, DATA], counted from FrameArgs (docs/PROTOCOL.md section 4,
// "error"). DATA, an optional msgpack map, is absent when there is nothing
// to add.
const (
	ErrArgErrno     = 0
	ErrArgText      = 1
	ErrArgRecipient = 2
	ErrArgSubsystem = 3
	ErrArgData      = 4
)

// Hello is the HELLO payload (docs/PROTOCOL.md section 3, "hello /
// welcome").
type Hello struct {
	// Identity is the agent identity claimed.
	Identity string `msgpack:"identity"`
	// Exports are the methods the agent serves.
	Exports []Export `msgpack:"exports"`
	// Meta is free metadata shown to admission hooks. One key has a
	// meaning for the platform: MetaPeerlist.
	Meta map[string]string `msgpack:"meta"`
}

// MetaPeerlist set to PeerlistOff in a hello's meta asks the platform not
// to send the peer peerlist add and drop (docs/PROTOCOL.md, "peerlist").
const (
	MetaPeerlist = "peerlist"
	PeerlistOff  = "off"
)

// Export is the EXPORT map (docs/PROTOCOL.md section 3, "hello /
// welcome"): a method and what a caller must hold. Every list is present,
// empty rather than nil.
type Export struct {
	Name         string   `msgpack:"name"`
	Capabilities []string `msgpack:"capabilities"`
	Roles        []string `msgpack:"roles"`
	Params       []string `msgpack:"params"`
}

// ExportOf returns the wire form of e.
func ExportOf(e rpc.Export) Export {
	return Export{Name: e.Name, Capabilities: e.Capabilities, Roles: e.Roles, Params: e.Params}
}

// Decl returns the declaration e carries.
func (e Export) Decl() rpc.Export {
	return rpc.Export{Name: e.Name, Capabilities: e.Capabilities, Roles: e.Roles, Params: e.Params}
}

// Welcome is the WELCOME payload (docs/PROTOCOL.md section 3, "hello /
// welcome").
type Welcome struct {
	// Identity is the identity as admitted.
	Identity string `msgpack:"identity"`
	// UserID is the user id of the agent's key in auth.json.
	UserID string `msgpack:"user_id"`
	// Version is the platform's version.
	Version string `msgpack:"version"`
	// Generation is the policy generation in force.
	Generation uint64 `msgpack:"generation"`
	// ServerKey is the platform's public key in Z85.
	ServerKey string `msgpack:"server_key"`
}

// Principal is the VALUE of query "whoami" (docs/PROTOCOL.md section 4,
// "query").
type Principal struct {
	// UserID is the user id of the agent's key in auth.json.
	UserID string `msgpack:"user_id"`
	// Identity is the agent identity as admitted ("" before hello).
	Identity string `msgpack:"identity"`
	// Key is the agent's public key in Z85.
	Key string `msgpack:"key"`
	// Generation is the policy generation in force.
	Generation uint64 `msgpack:"generation"`
	// PolicyNote, when set, says that the policy in force is not the
	// auth.json on disk, and why.
	PolicyNote string `msgpack:"policy_note,omitempty"`
	// Rejected is where the auth.json on disk is wrong, when the platform
	// rejected it and an older (or closed) policy is in force.
	Rejected *Rejected `msgpack:"rejected,omitempty"`
}

// Rejected locates the error of a rejected auth.json (in the VALUE of
// query "whoami").
type Rejected struct {
	File    string `msgpack:"file"`
	Line    int    `msgpack:"line"`
	Column  int    `msgpack:"column"`
	Path    string `msgpack:"path"`
	Message string `msgpack:"message"`
}

// Description is the VALUE of query "describe" (docs/PROTOCOL.md section
// 4, "query"): a connected agent's methods, what each requires and whether
// the asking peer may call it.
type Description struct {
	Identity   string              `msgpack:"identity"`
	UserID     string              `msgpack:"user_id"`
	Generation uint64              `msgpack:"generation"`
	Methods    []MethodDescription `msgpack:"methods"`
}

// MethodDescription is one method of a Description. Every list is present,
// empty rather than nil.
type MethodDescription struct {
	Name   string   `msgpack:"name"`
	Params []string `msgpack:"params"`
	// Capabilities and Roles are the requirement in force: the agent's
	// declaration plus what auth.json adds.
	Capabilities []string `msgpack:"capabilities"`
	Roles        []string `msgpack:"roles"`
	// DeclaredCapabilities and DeclaredRoles are the agent's declaration
	// alone.
	DeclaredCapabilities []string `msgpack:"declared_capabilities"`
	DeclaredRoles        []string `msgpack:"declared_roles"`
	// Allowed says whether the asking peer may call the method now;
	// Conditional that the decision depends on the call's arguments.
	Allowed     bool `msgpack:"allowed"`
	Conditional bool `msgpack:"conditional"`
	// Missing lists what the asking peer lacks (roles as "role:name"), and
	// Reason why it is refused ("" when allowed).
	Missing []string `msgpack:"missing"`
	Reason  string   `msgpack:"reason"`
	// Warnings are problems of the requirement that auth.json shows, such
	// as a required role that nobody can hold.
	Warnings []string `msgpack:"warnings"`
}

// Method is one element of the VALUE of query "callable" (docs/PROTOCOL.md
// section 4, "query"): conditional is present only when true.
type Method struct {
	// Peer is the identity of the agent that exports the method.
	Peer string `msgpack:"peer"`
	// Method is the method name.
	Method string `msgpack:"method"`
	// Conditional is true when the decision depends on the call's
	// arguments (an auth.json parameter restriction applies).
	Conditional bool `msgpack:"conditional,omitempty"`
}

// Permissions is the VALUE of query "permissions" (docs/PROTOCOL.md
// section 4, "query").
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
