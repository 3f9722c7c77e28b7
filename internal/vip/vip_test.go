package vip

import (
	"encoding/hex"
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/capbus/capbus/internal/codec"
)

// The encodings below are pinned byte for byte: both sides encode with
// internal/codec (integers in their most compact form). Each payload is
// decoded back with the codec and with a plain msgpack decoder, as a client
// in another language would.
func TestWireEncodingPinned(t *testing.T) {
	const serverKey = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
	agentSide := codec.Marshal
	platformSide := codec.Marshal
	agentDecode := codec.Unmarshal
	platformDecode := msgpack.Unmarshal

	tests := []struct {
		name   string
		value  any // a pointer
		encode func(any) ([]byte, error)
		decode func([]byte, any) error
		keys   []string // of the (first) map, sorted
		hex    string
	}{
		{
			name: "hello",
			value: &Hello{Identity: "weather",
				Exports: []Export{{Name: "temperature", Capabilities: []string{"can_read_temp"}}},
				Meta:    map[string]string{"version": "1.2"}},
			encode: agentSide, decode: platformDecode,
			keys: []string{"exports", "identity", "meta"},
			hex:  "83a86964656e74697479a777656174686572a76578706f7274739184a46e616d65ab74656d7065726174757265ac6361706162696c697469657391ad63616e5f726561645f74656d70a5726f6c6573c0a6706172616d73c0a46d65746181a776657273696f6ea3312e32",
		},
		{
			name:   "hello without exports and meta",
			value:  &Hello{Identity: "weather"},
			encode: agentSide, decode: platformDecode,
			keys: []string{"exports", "identity", "meta"},
			hex:  "83a86964656e74697479a777656174686572a76578706f727473c0a46d657461c0",
		},
		{
			name: "welcome",
			value: &Welcome{Identity: "weather", UserID: "weather", Version: "capbus/0.1.0",
				Generation: 1, ServerKey: serverKey},
			encode: platformSide, decode: agentDecode,
			keys: []string{"generation", "identity", "server_key", "user_id", "version"},
			hex:  "85a86964656e74697479a777656174686572a7757365725f6964a777656174686572a776657273696f6eac6361706275732f302e312e30aa67656e65726174696f6e01aa7365727665725f6b6579d92872713a724d3e7d553f404c6e7334374531256b522e6f406e2546636d6d734c2f407b48385d796637",
		},
		{
			name:   "whoami",
			value:  &Principal{UserID: "alice", Identity: "alice", Key: "k", Generation: 3},
			encode: platformSide, decode: agentDecode,
			keys: []string{"generation", "identity", "key", "user_id"},
			hex:  "84a7757365725f6964a5616c696365a86964656e74697479a5616c696365a36b6579a16baa67656e65726174696f6e03",
		},
		{
			name: "callable",
			value: &[]Method{{Peer: "weather", Method: "temperature"},
				{Peer: "weather", Method: "set", Conditional: true}},
			encode: platformSide, decode: agentDecode,
			keys: []string{"method", "peer"}, // conditional is omitted when false
			hex:  "9282a470656572a777656174686572a66d6574686f64ab74656d706572617475726583a470656572a777656174686572a66d6574686f64a3736574ab636f6e646974696f6e616cc3",
		},
		{
			name: "permissions",
			value: &Permissions{UserID: "alice", Identity: "alice", Capabilities: []string{"a", "b"},
				Roles: []string{}, Restricted: []string{"b"}, Narrowed: true, Generation: 7},
			encode: platformSide, decode: agentDecode,
			keys: []string{"capabilities", "generation", "identity", "narrowed", "restricted", "roles", "user_id"},
			hex:  "87a7757365725f6964a5616c696365a86964656e74697479a5616c696365ac6361706162696c697469657392a161a162a5726f6c657390aa7265737472696374656491a162a86e6172726f776564c3aa67656e65726174696f6e07",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.encode(tt.value)
			require.NoError(t, err)
			assert.Equal(t, tt.hex, hex.EncodeToString(b), "encoding changed")

			var generic any
			require.NoError(t, msgpack.Unmarshal(b, &generic))
			if list, ok := generic.([]any); ok {
				generic = list[0]
			}
			m, ok := generic.(map[string]any)
			require.True(t, ok, "decoded %T, want a map", generic)
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			assert.Equal(t, tt.keys, keys, "keys")

			back := reflect.New(reflect.TypeOf(tt.value).Elem())
			require.NoError(t, tt.decode(b, back.Interface()))
			assert.Equal(t, tt.value, back.Interface(), "round trip")
		})
	}
}

func TestSubsystems(t *testing.T) {
	want := []string{"hello", "welcome", "ping", "pong", "peerlist", "RPC", "pubsub", "query", "error", "config"}
	assert.Equal(t, want, Subsystems, "Subsystems")
	assert.Equal(t, "VIP1", string(SignatureFrame), "constant frames modified")
	assert.Empty(t, Empty, "constant frames modified")
}
