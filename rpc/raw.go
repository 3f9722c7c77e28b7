package rpc

import (
	"github.com/vmihailenco/msgpack/v5"

	"github.com/capbus/capbus/internal/codec"
)

// Kwargs are keyword arguments. Passed as the last argument of a call, they
// travel as the call's keyword map instead of as a positional argument:
//
//	a.Call(ctx, "weather", "forecast", "Paris", rpc.Kwargs{"days": 3})
type Kwargs map[string]any

// Raw is one encoded value, not yet decoded: an argument of a call, the
// result of a call, the value of a published message. Passing a Raw as an
// argument or result sends its bytes unchanged.
type Raw []byte

// Decode decodes the value into v, which must be a non-nil pointer. An empty
// Raw (no value at all) leaves v unchanged.
func (r Raw) Decode(v any) error {
	if len(r) == 0 {
		return nil
	}
	return codec.Unmarshal(r, v)
}

// EncodeMsgpack writes r unchanged (r is already msgpack).
func (r Raw) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(r) == 0 {
		return enc.EncodeNil()
	}
	_, err := enc.Writer().Write(r)
	return err
}

// DecodeMsgpack keeps the next value undecoded.
func (r *Raw) DecodeMsgpack(dec *msgpack.Decoder) error {
	b, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	*r = Raw(b)
	return nil
}
