package curve

import "github.com/capbus/capbus/auth"

// PeerInfo is what one side knows about the other side of an authenticated
// connection. On the server it describes the client; on the client it
// describes the server (PublicKey is the server key, Identity and SocketType
// come from the server's READY metadata, RoutingID and UserID are empty).
type PeerInfo struct {
	// RoutingID is the per-connection token chosen by the server; it is
	// given to zmq4 as the peer's Identity.
	RoutingID string
	// PublicKey is the peer's long-term public key (for a client, verified
	// through its vouch).
	PublicKey auth.Key
	// UserID is what the Authenticator answered.
	UserID string
	// RemoteAddr is the peer's network address.
	RemoteAddr string
	// Identity is the "Identity" metadata property the peer claimed (may be
	// empty). It is informational only: routing uses RoutingID.
	Identity string
	// SocketType is the peer's "Socket-Type" metadata property.
	SocketType string
}
