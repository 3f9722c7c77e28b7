package curve

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeCommand feeds arbitrary bytes to every command decoder and to
// the metadata and greeting parsers: none may panic, and whatever decodes
// must encode back to something that decodes to the same value.
func FuzzDecodeCommand(f *testing.F) {
	hello := helloCommand{ClientTransient: [32]byte{1, 2, 3}, Nonce: 1, Box: [80]byte{9}}
	welcome := welcomeCommand{Nonce: [16]byte{7}, Box: [144]byte{8}}
	initiate := initiateCommand{Cookie: [cookieSize]byte{5}, Nonce: 2, Box: bytes.Repeat([]byte{6}, 128+16+40)}
	ready := shortNonceCommand{Nonce: 1, Box: bytes.Repeat([]byte{4}, 16+30)}
	message := shortNonceCommand{Nonce: 3, Box: bytes.Repeat([]byte{3}, 16+1+5)}
	errCmd := errorCommand{Reason: "400"}
	md := appendMetadata(nil, metadata{{"Socket-Type", "DEALER"}, {"Identity", "agent"}, {"X-Empty", ""}})
	for _, seed := range [][]byte{
		hello.append(nil), welcome.append(nil), initiate.append(nil),
		ready.append(nil, nameReady), message.append(nil, nameMessage), errCmd.append(nil),
		md, append([]byte("\x05READY"), md...), nil, {0}, {0xff}, []byte("\x05HELLO"),
		[]byte("\x0bSocket-Type\xff\xff\xff\xff"),
	} {
		f.Add(seed)
	}
	g := greeting("CURVE", false)
	f.Add(g[:])

	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeHello(b); err == nil {
			again, err := decodeHello(h.append(nil))
			require.NoError(t, err)
			require.Equal(t, h, again)
		}
		if w, err := decodeWelcome(b); err == nil {
			requireSameBytes(t, b, w.append(nil))
		}
		if c, err := decodeInitiate(b); err == nil {
			requireSameBytes(t, b, c.append(nil))
		}
		if c, err := decodeReady(b); err == nil {
			requireSameBytes(t, b, c.append(nil, nameReady))
		}
		if c, err := decodeMessage(b); err == nil {
			requireSameBytes(t, b, c.append(nil, nameMessage))
		}
		if e, err := decodeError(b); err == nil {
			requireSameBytes(t, b, e.append(nil))
		}
		if m, err := parseMetadata(b); err == nil {
			requireSameBytes(t, b, appendMetadata(nil, m))
			for _, p := range m {
				v, ok := m.Get(p.Name)
				require.True(t, ok)
				_ = v
			}
		}
		if len(b) == greetingSize {
			_ = checkGreeting(b)
		}
		_, _, _ = readFrame(bytes.NewReader(b), 1<<16)
		_ = commandName(b)
	})
}

// requireSameBytes compares contents, treating nil and empty alike.
func requireSameBytes(t *testing.T, want, got []byte) {
	t.Helper()
	require.Equal(t, string(want), string(got))
}

// FuzzConnRead feeds an arbitrary byte stream to the message reader of an
// established server conn (fixed key): it must never panic, never allocate
// beyond the frame limit, and fail cleanly.
