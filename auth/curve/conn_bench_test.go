package curve

import (
	"bufio"
	"bytes"
	"testing"
)

// BenchmarkConnMessages measures whole messages through the conn's one
// data path: WriteMsg seals a message into memory and a second conn's
// ReadMsg, reading through its buffer, opens it (the crypto and framing of
// one message at one end). vip-call is the eight frames of a VIP call.
//
// It uses only newConn, WriteMsg and ReadMsg, so that the same file
// measures older versions too (docs/BENCHMARKS.md).
func BenchmarkConnMessages(b *testing.B) {
	for _, tc := range []struct {
		name   string
		frames [][]byte
	}{
		{"vip-call", vipCallFrames},
		{"1x4B", [][]byte{make([]byte, 4)}},
		{"1x200B", [][]byte{make([]byte, 200)}},
		{"3x100B", [][]byte{make([]byte, 100), make([]byte, 100), make([]byte, 100)}},
		{"1x4KiB", [][]byte{make([]byte, 4096)}},
		{"1x64KiB", [][]byte{make([]byte, 64<<10)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var s session
			for i := range s.key {
				s.key[i] = byte(i)
			}
			o := newOptions("ROUTER", nil)
			wire := new(bytes.Buffer)
			client := newConn(pipeConn{buf: wire}, nil, s, &o, false)
			server := newConn(pipeConn{}, bufio.NewReaderSize(wire, readBufferSize), s, &o, true)
			size := 0
			for _, f := range tc.frames {
				size += len(f)
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := client.WriteMsg(tc.frames); err != nil {
					b.Fatal(err)
				}
				if _, err := server.ReadMsg(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
