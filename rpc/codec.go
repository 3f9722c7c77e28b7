package rpc

import (
	"bytes"
	"errors"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Kwargs are keyword arguments. Passed as the last argument of a call, they
// travel as the call's keyword map instead of as a positional argument:
//
//	a.Call(ctx, "weather", "forecast", "Paris", rpc.Kwargs{"days": 3})
type Kwargs map[string]any

// Raw is one msgpack-encoded value, not yet decoded: an argument of a call,
// the result of a call, the value of a published message. Encoding a Raw
// writes its bytes unchanged.
type Raw []byte

// Decode decodes the value into v, which must be a non-nil pointer. An empty
// Raw (no value at all) leaves v unchanged.
func (r Raw) Decode(v any) error {
	if len(r) == 0 {
		return nil
	}
	return Unmarshal(r, v)
}

// EncodeMsgpack implements msgpack.CustomEncoder: r is written as it is.
func (r Raw) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(r) == 0 {
		return enc.EncodeNil()
	}
	_, err := enc.Writer().Write(r)
	return err
}

// DecodeMsgpack implements msgpack.CustomDecoder: the next value is kept
// undecoded.
func (r *Raw) DecodeMsgpack(dec *msgpack.Decoder) error {
	b, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	*r = Raw(b)
	return nil
}

// Request is a decoded call as a handler receives it: positional and keyword
// arguments still in msgpack, decoded by the handler into its own types.
type Request struct {
	// Method is the method name.
	Method string
	// Caller is the authenticated caller, as stamped by the platform.
	Caller Caller
	// Args are the positional arguments, each one msgpack value.
	Args []Raw
	// Kwargs are the keyword arguments.
	Kwargs map[string]Raw
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// EncodeCall encodes the payload of a call: a msgpack array of two elements,
// the positional arguments (an array) and the keyword arguments (a map). A
// trailing Kwargs argument becomes the keyword map. A single struct argument
// (or pointer to struct) travels as keyword arguments, one per field named
// by its msgpack tag, so that a caller can pass the same argument struct the
// handler declares (see Func) and the platform can judge parameter
// restrictions by name. A value that cannot be encoded is an error matching
// ErrInvalidArgs.
func EncodeCall(args ...any) ([]byte, error) {
	var kw Kwargs
	if n := len(args); n > 0 {
		if k, ok := args[n-1].(Kwargs); ok {
			kw, args = k, args[:n-1]
		}
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.UseCompactInts(true)
	_ = enc.EncodeArrayLen(2) // a bytes.Buffer never fails
	if len(args) == 1 && kw == nil && isStruct(args[0]) {
		_ = enc.EncodeArrayLen(0)
		start := buf.Len()
		if err := enc.Encode(args[0]); err != nil {
			return nil, Errorf(CodeInvalidArgs, "argument (%T): %v", args[0], err)
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
			return nil, Errorf(CodeInvalidArgs, "argument %d (%T): %v", i, a, err)
		}
	}
	_ = enc.EncodeMapLen(len(kw))
	for k, v := range kw {
		_ = enc.EncodeString(k)
		if err := enc.Encode(v); err != nil {
			return nil, Errorf(CodeInvalidArgs, "keyword argument %q (%T): %v", k, v, err)
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

// DecodeCall decodes a call payload written by EncodeCall (or by any client
// following docs/PROTOCOL.md). An empty payload is a call without arguments.
// A malformed payload is an *Error with CodeInvalidArgs. The arguments of
// the Request share payload's memory: payload must not change afterwards.
func DecodeCall(method string, payload []byte) (*Request, error) {
	// One allocation for the request and up to two positional arguments.
	r := &struct {
		req  Request
		args [2]Raw
	}{req: Request{Method: method}}
	req := &r.req
	if len(payload) == 0 {
		return req, nil
	}
	d := getDecoder(payload)
	defer putDecoder(d)
	n, err := d.dec.DecodeArrayLen()
	if err != nil || n != 2 {
		return nil, invalid(req, "call payload must be a msgpack array [args, kwargs]")
	}
	na, err := d.dec.DecodeArrayLen()
	if err != nil {
		return nil, invalid(req, "call args must be an array: %v", err)
	}
	if na > 0 {
		if na > d.r.Len() { // every value takes at least one byte
			return nil, invalid(req, "%d arguments declared in %d bytes", na, d.r.Len())
		}
		if na <= len(r.args) {
			req.Args = r.args[:na:na]
		} else {
			req.Args = make([]Raw, na)
		}
		for i := range req.Args {
			if req.Args[i], err = d.raw(payload); err != nil {
				return nil, invalid(req, "argument %d: %v", i, err)
			}
		}
	}
	nk, err := d.dec.DecodeMapLen()
	if err != nil {
		return nil, invalid(req, "call kwargs must be a map: %v", err)
	}
	if nk > 0 {
		if nk > d.r.Len() {
			return nil, invalid(req, "%d keyword arguments declared in %d bytes", nk, d.r.Len())
		}
		req.Kwargs = make(map[string]Raw, nk)
		for i := 0; i < nk; i++ {
			k, err := d.dec.DecodeString()
			if err != nil {
				return nil, invalid(req, "keyword %d: name is not a string", i)
			}
			if req.Kwargs[k], err = d.raw(payload); err != nil {
				return nil, invalid(req, "keyword %q: %v", k, err)
			}
		}
	}
	if d.r.Len() != 0 {
		return nil, invalid(req, "%d bytes after the call payload", d.r.Len())
	}
	return req, nil
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
func (d *decoder) raw(b []byte) (Raw, error) {
	start := len(b) - d.r.Len()
	if err := d.dec.Skip(); err != nil {
		return nil, err
	}
	end := len(b) - d.r.Len()
	return Raw(b[start:end:end]), nil
}

// Marshal encodes a value (a result, a published value, an error's data) in
// msgpack, with integers in their most compact form.
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

// Unmarshal decodes msgpack data into v, which must be a non-nil pointer.
// Maps decode into map[string]any when v is a pointer to an interface.
func Unmarshal(data []byte, v any) error {
	d := getDecoder(data)
	defer putDecoder(d)
	return d.dec.Decode(v)
}

// EncodeError encodes e as the payload of an RPC error reply: a map with
// "code", "message" and, when set, "data".
func EncodeError(e *Error) ([]byte, error) {
	if e == nil {
		return nil, errors.New("rpc: EncodeError of a nil *Error")
	}
	b, err := Marshal(e)
	if err != nil {
		// Data held something msgpack cannot encode: keep code and message.
		return Marshal(&Error{Code: e.Code, Message: e.Message})
	}
	return b, nil
}

// DecodeError decodes the payload of an RPC error reply. A payload that is
// not an error map still yields an *Error (CodeProtocol) that says so.
func DecodeError(payload []byte) *Error {
	var e Error
	if err := Unmarshal(payload, &e); err != nil {
		return Errorf(CodeProtocol, "undecodable error payload: %v", err)
	}
	return &e
}
