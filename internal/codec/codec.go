// Package codec is the msgpack encoding of capbus payloads
// (docs/PROTOCOL.md): call arguments [args, kwargs], results, published
// values, error replies {code, message, data} and the maps of the platform
// subsystems. It is the one encoder and decoder of these formats for the
// platform and the agent SDK.
package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Marshal encodes v in msgpack, with integers in their most compact form.
func Marshal(v any) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

// Unmarshal decodes msgpack data into v, a non-nil pointer. Maps decode
// into map[string]any when v points to an interface. Bytes after the value
// are an error.
func Unmarshal(data []byte, v any) error {
	d := getDecoder(data)
	defer putDecoder(d)
	if err := d.dec.Decode(v); err != nil {
		return err
	}
	if d.r.Len() != 0 {
		return fmt.Errorf("%d bytes after the value", d.r.Len())
	}
	return nil
}

// Call is a decoded call payload: each argument is still one msgpack value,
// a sub-slice of the payload.
type Call struct {
	Args   [][]byte
	Kwargs map[string][]byte
}

// ErrPayload is wrapped by the errors of DecodeCall.
var ErrPayload = errors.New("malformed call payload")

// EncodeCall encodes the payload of a call: the msgpack array
// [args, kwargs]. A single struct argument (or pointer to one) without
// keyword arguments travels as keyword arguments, one per field named by
// its msgpack tag, so that a caller can pass the argument struct a handler
// declares and the platform can judge parameter restrictions by name.
func EncodeCall(args []any, kwargs map[string]any) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.UseCompactInts(true)
	_ = enc.EncodeArrayLen(2) // a bytes.Buffer never fails
	if len(args) == 1 && kwargs == nil && isStruct(args[0]) {
		_ = enc.EncodeArrayLen(0)
		start := buf.Len()
		if err := enc.Encode(args[0]); err != nil {
			return nil, fmt.Errorf("argument (%T): %w", args[0], err)
		}
		if b := buf.Bytes()[start:]; len(b) > 0 && (b[0]&0xf0 == 0x80 || b[0] == 0xde || b[0] == 0xdf) {
			return bytes.Clone(buf.Bytes()), nil
		}
		// Encoded as something else than a map (custom encoder,
		// as_array): send it as the one positional argument instead.
		buf.Truncate(1)
	}
	_ = enc.EncodeArrayLen(len(args))
	for i, a := range args {
		if err := enc.Encode(a); err != nil {
			return nil, fmt.Errorf("argument %d (%T): %w", i, a, err)
		}
	}
	_ = enc.EncodeMapLen(len(kwargs))
	for k, v := range kwargs {
		_ = enc.EncodeString(k)
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("keyword argument %q (%T): %w", k, v, err)
		}
	}
	return bytes.Clone(buf.Bytes()), nil
}

// isStruct reports whether v is a struct or a non-nil pointer to one.
func isStruct(v any) bool {
	t := reflect.TypeOf(v)
	if t == nil {
		return false
	}
	if t.Kind() == reflect.Pointer {
		if reflect.ValueOf(v).IsNil() {
			return false
		}
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

// DecodeCall decodes a call payload. An empty payload is a call without
// arguments. The arguments share payload's memory. Errors wrap ErrPayload.
func DecodeCall(payload []byte) (Call, error) {
	var c Call
	if len(payload) == 0 {
		return c, nil
	}
	d := getDecoder(payload)
	defer putDecoder(d)
	n, err := d.dec.DecodeArrayLen()
	if err != nil || n != 2 {
		return c, fmt.Errorf("%w: want a msgpack array [args, kwargs]", ErrPayload)
	}
	na, err := d.dec.DecodeArrayLen()
	if err != nil {
		return c, fmt.Errorf("%w: args must be an array", ErrPayload)
	}
	if na > 0 {
		if na > d.r.Len() { // every value takes at least one byte
			return c, fmt.Errorf("%w: %d arguments declared in %d bytes", ErrPayload, na, d.r.Len())
		}
		c.Args = make([][]byte, na)
		for i := range c.Args {
			if c.Args[i], err = d.raw(payload); err != nil {
				return c, fmt.Errorf("%w: argument %d is not one msgpack value", ErrPayload, i)
			}
		}
	}
	nk, err := d.dec.DecodeMapLen()
	if err != nil {
		return c, fmt.Errorf("%w: kwargs must be a map", ErrPayload)
	}
	if nk > 0 {
		if nk > d.r.Len() {
			return c, fmt.Errorf("%w: %d keyword arguments declared in %d bytes", ErrPayload, nk, d.r.Len())
		}
		c.Kwargs = make(map[string][]byte, nk)
		for i := 0; i < nk; i++ {
			k, err := d.dec.DecodeString()
			if err != nil {
				return c, fmt.Errorf("%w: keyword %d: name is not a string", ErrPayload, i)
			}
			if c.Kwargs[k], err = d.raw(payload); err != nil {
				return c, fmt.Errorf("%w: keyword %q is not one msgpack value", ErrPayload, k)
			}
		}
	}
	if d.r.Len() != 0 {
		return c, fmt.Errorf("%w: %d bytes after the call payload", ErrPayload, d.r.Len())
	}
	return c, nil
}

// NamedArgs returns a call's arguments by parameter name, positional ones
// named by params, decoded to plain Go values. The platform uses it only
// for methods that auth.json restricts by parameter.
func NamedArgs(c Call, params []string) (map[string]any, error) {
	out := make(map[string]any, len(c.Args)+len(c.Kwargs))
	for i, raw := range c.Args {
		if i >= len(params) {
			break
		}
		var v any
		if err := Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("argument %d (%s): %w", i, params[i], err)
		}
		out[params[i]] = v
	}
	for k, raw := range c.Kwargs {
		var v any
		if err := Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("keyword %q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// ErrorPayload is the ERROR map of an RPC error reply.
type ErrorPayload struct {
	Code    int            `msgpack:"code"`
	Message string         `msgpack:"message"`
	Data    map[string]any `msgpack:"data,omitempty"`
}

// EncodeError encodes an error reply's payload. Data that msgpack cannot
// encode is dropped; code and message always travel.
func EncodeError(e ErrorPayload) []byte {
	b, err := Marshal(&e)
	if err != nil {
		e.Data = nil
		b, _ = Marshal(&e) // a code and a string always encode
	}
	return b
}

// DecodeError decodes an error reply's payload.
func DecodeError(payload []byte) (ErrorPayload, error) {
	var e ErrorPayload
	err := Unmarshal(payload, &e)
	return e, err
}

// decoder is a pooled msgpack decoder reading from a byte slice.
type decoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var decPool = sync.Pool{New: func() any {
	d := new(decoder)
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}}

func getDecoder(b []byte) *decoder {
	d := decPool.Get().(*decoder)
	d.r.Reset(b)
	d.dec.Reset(&d.r) // a *bytes.Reader is read directly, without a buffer
	return d
}

func putDecoder(d *decoder) {
	d.r.Reset(nil)
	decPool.Put(d)
}

// raw returns the next value as a sub-slice of b, the decoder's input.
func (d *decoder) raw(b []byte) ([]byte, error) {
	start := len(b) - d.r.Len()
	if err := d.dec.Skip(); err != nil {
		return nil, err
	}
	end := len(b) - d.r.Len()
	return b[start:end:end], nil
}
