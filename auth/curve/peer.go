package curve

import "github.com/capbus/capbus/keys"

// PeerInfo is what one side knows about the other side of an authenticated
// connection. On the server it describes the client; on the client it
// describes the server (PublicKey is the server key, SocketType comes from
// the server's READY metadata, UserID is empty).
type PeerInfo struct {
	// PublicKey is the peer's long-term public key (for a client, verified
	// through its vouch).
	PublicKey keys.Key
	// UserID is what the Authenticator answered.
	UserID string
	// RemoteAddr is the peer's network address.
	RemoteAddr string
	// Identity is the "Identity" metadata property the peer claimed (may be
	// empty). It is informational only.
	Identity string
	// SocketType is the peer's "Socket-Type" metadata property.
	SocketType string
}
