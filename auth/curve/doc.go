// Package curve implements CurveZMQ (ZeroMQ RFC 25 ZMTP-CURVE and RFC 26
// CurveZMQ) for capbus, interoperable with libzmq 4.3.4.
//
// Towards the wire a [Conn] speaks the ZMTP 3 greeting, the CURVE handshake
// (HELLO, WELCOME, INITIATE, READY or ERROR) and encrypted MESSAGE commands.
// Towards the program it carries whole multipart messages: [Conn.ReadMsg]
// returns the decrypted frames of the next message (one buffer, no
// per-frame allocation; [WithMessageLimits] bounds it), [Conn.WriteMsg]
// seals a message and writes it with one write, and [Conn.WriteMsgs] writes
// several queued messages with one write. The conn reads through a buffer.
//
// The socket types of both ends are checked after the handshake as ZMTP
// requires (a ROUTER talks to DEALER, REQ and ROUTER peers). The platform
// and the agent SDK use the message API directly. A program that wants
// zmq4's own socket loop over CURVE wraps the conn with [NewZMQ4Conn] and
// hands it to zmq4.Open with the NULL mechanism.
//
// MESSAGE boxes are crypto_box_afternm (XSalsa20-Poly1305) with the MESSAGE
// nonce. Because the first 16 bytes of that nonce are fixed per direction,
// the conn derives the XSalsa20 subkey (HSalsa20) once per direction and
// runs only Salsa20 per frame; HSalsa20 and Poly1305 are those of
// golang.org/x/crypto, and so is Salsa20 except on amd64 CPUs with AVX2,
// where a kernel generated with avo computes eight blocks at once for the
// frames in hand: those WriteMsg seals, and the MESSAGE commands already
// in the read buffer when ReadMsg opens one (GODEBUG=cpu.avx2=off or the
// purego build tag turn it off). A box's tag is verified in constant time
// before it is decrypted. The boxes are byte for byte those of
// golang.org/x/crypto/nacl/box (tested, with the published NaCl vectors).
//
// On the server side ([Listen], [Listener.Accept]) every client is
// authenticated by its long-term public key
// (proven by the vouch of the INITIATE command) and then authorized by the
// [Authenticator] the listener was given; a refused client receives an ERROR
// command with reason "400", as libzmq's ZAP would send.
//
// Heartbeats: a PING command sent by the peer (libzmq's ZMQ_HEARTBEAT_IVL)
// is answered with PONG by ReadMsg and never returned to the program.
//
// Limits: every frame length declared by the peer is checked against the
// maximum frame size ([WithMaxFrameSize], 16 MiB by default) before anything
// is allocated, and each handshake must complete within the handshake
// timeout ([WithHandshakeTimeout], 10 s by default). Handshakes run in their
// own goroutine per connection, so a stalled peer never delays others.
package curve
