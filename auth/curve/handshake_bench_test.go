package curve

import (
	"bufio"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkHandshake is one whole CURVE handshake, client and server, over
// TCP on 127.0.0.1 (the key refused at the end, after every step): what
// each handshake of a flood costs both sides (see docs/BENCHMARKS.md).
func BenchmarkHandshake(b *testing.B) {
	server, client := newKeyPair(b), newKeyPair(b)
	so := newOptions("ROUTER", []Option{WithAuthenticator(allowKeys(nil))})
	co := newOptions("DEALER", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	b.ReportAllocs()
	for b.Loop() {
		cc, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(b, err)
		sc, err := ln.Accept()
		require.NoError(b, err)
		errc := make(chan error, 1)
		go func() {
			_, err := clientHandshake(cc, bufio.NewReader(cc), client, server.Public, &co)
			cc.Close()
			errc <- err
		}()
		_, err = serverHandshake(b.Context(), sc, bufio.NewReader(sc), server, &so, "pipe", false)
		sc.Close()
		require.Error(b, err, "the key is refused at the end: every step ran")
		<-errc
	}
}
