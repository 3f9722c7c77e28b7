package curve

import (
	"fmt"
	"io"
)

// greetingSize is the size of a ZMTP 3 greeting.
const greetingSize = 64

// mechanismCurve is the greeting's mechanism field for CURVE, compared over
// all 20 bytes as libzmq does.
var mechanismCurve = [20]byte{'C', 'U', 'R', 'V', 'E'}

// greeting returns a ZMTP 3.0 greeting for the mechanism. We announce 3.0,
// as zmq4 does, so a libzmq peer sends subscriptions as messages; libzmq
// itself ignores the as-server flag and so do we: roles come from
// configuration.
func greeting(mechanism string, asServer bool) [greetingSize]byte {
	var g [greetingSize]byte
	g[0] = 0xFF
	g[9] = 0x7F
	g[10] = 3 // major
	g[11] = 0 // minor
	copy(g[12:32], mechanism)
	if asServer {
		g[32] = 1
	}
	return g
}

// writeGreeting writes our CURVE greeting.
func writeGreeting(w io.Writer, asServer bool) error {
	g := greeting("CURVE", asServer)
	_, err := w.Write(g[:])
	return err
}

// readGreeting reads the peer's greeting and checks that it is ZMTP 3 or
// later with the CURVE mechanism.
func readGreeting(r io.Reader) error {
	var g [greetingSize]byte
	if _, err := io.ReadFull(r, g[:]); err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	return checkGreeting(g[:])
}

func checkGreeting(g []byte) error {
	if len(g) != greetingSize {
		return malformed("greeting of %d bytes", len(g))
	}
	if g[0] != 0xFF || g[9] != 0x7F {
		return malformed("not a ZMTP greeting (signature % x)", g[:10])
	}
	if g[10] < 3 {
		return malformed("ZMTP version %d.%d, want 3.0 or later", g[10], g[11])
	}
	if [20]byte(g[12:32]) != mechanismCurve {
		return malformed("mechanism %q, want CURVE", trimZeros(g[12:32]))
	}
	return nil
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// compatible lists, for each ZMTP socket type, the peer socket types it
// can talk to (ZMTP 3.0, RFC 23, "Socket Type Compatibility").
var compatible = map[string][]string{
	"REQ":    {"REP", "ROUTER"},
	"REP":    {"REQ", "DEALER"},
	"DEALER": {"REP", "DEALER", "ROUTER"},
	"ROUTER": {"REQ", "DEALER", "ROUTER"},
	"PUB":    {"SUB", "XSUB"},
	"XPUB":   {"SUB", "XSUB"},
	"SUB":    {"PUB", "XPUB"},
	"XSUB":   {"PUB", "XPUB"},
	"PUSH":   {"PULL"},
	"PULL":   {"PUSH"},
	"PAIR":   {"PAIR"},
}

// checkSocketTypes refuses a peer whose socket type cannot talk to ours,
// as libzmq does after the handshake.
func checkSocketTypes(ours, theirs string) error {
	for _, t := range compatible[ours] {
		if t == theirs {
			return nil
		}
	}
	return malformed("peer socket type %q cannot talk to %q", theirs, ours)
}
