// Package curve implements CurveZMQ (ZeroMQ RFC 25 ZMTP-CURVE and RFC 26
// CurveZMQ) as a layer below github.com/go-zeromq/zmq4, interoperable with
// libzmq 4.3.4.
//
// Towards the wire a [Conn] speaks the ZMTP 3 greeting, the CURVE handshake
// (HELLO, WELCOME, INITIATE, READY or ERROR) and encrypted MESSAGE commands.
// Towards zmq4 it presents a peer that uses the NULL mechanism: once the
// CURVE handshake is complete,
//
//	zc, err := zmq4.Open(conn, null.Security(), zmq4.Router, "", true, nil)
//
// succeeds on a [*Conn] and every frame zmq4 writes is sealed as one CURVE
// MESSAGE, while every MESSAGE received is handed to zmq4 as a plain frame.
// The conn reads through a buffer and writes each whole zmq4 message (all its
// frames up to the last one without MORE) with a single write, which makes a
// CURVE connection cheaper in system calls than a plain zmq4 NULL connection.
//
// Message-level use: once zmq4.Open has exchanged the greeting and READY
// over a conn, a program may bypass zmq4's per-frame reading and writing and
// use [Conn.ReadMsg] and [Conn.WriteMsg], which read and seal whole
// multipart messages with no per-frame allocation ([WithMessageLimits]
// bounds what ReadMsg accepts). [Conn.QueueMsg], [Conn.TryFlush] and
// [Conn.OnReadWait] let a router seal messages for a conn from several
// goroutines and write them later without blocking; [Conn.Cork] and
// [Conn.Uncork] batch the messages of one writer into one write.
//
// MESSAGE boxes are crypto_box_afternm (XSalsa20-Poly1305) with the MESSAGE
// nonce. Because the first 16 bytes of that nonce are fixed per direction,
// the conn derives the XSalsa20 subkey (HSalsa20) once per direction and
// runs only Salsa20 per frame; Salsa20, HSalsa20 and Poly1305 are those of
// golang.org/x/crypto, and a box's tag is verified in constant time before
// it is decrypted. The boxes are byte for byte those of
// golang.org/x/crypto/nacl/box (tested, with the published NaCl vectors).
//
// On the server side ([Listen], [Listener.Accept]) the Identity that zmq4
// sees for the peer is a routing id chosen by the listener (see
// [PeerInfo.RoutingID] and [Listener.Lookup]), never the identity the peer
// claimed, so that two peers claiming the same identity cannot receive each
// other's replies. Every client is authenticated by its long-term public key
// (proven by the vouch of the INITIATE command) and then authorized by the
// [Authenticator] the listener was given; a refused client receives an ERROR
// command with reason "400", as libzmq's ZAP would send.
//
// Heartbeats: a PING command sent by the peer (libzmq's ZMQ_HEARTBEAT_IVL)
// is answered with PONG inside the conn, while some goroutine reads from it,
// and never reaches zmq4.
//
// Limits: every frame length declared by the peer is checked against the
// maximum frame size ([WithMaxFrameSize], 16 MiB by default) before anything
// is allocated, and each handshake must complete within the handshake
// timeout ([WithHandshakeTimeout], 10 s by default). Handshakes run in their
// own goroutine per connection, so a stalled peer never delays others.
package curve
