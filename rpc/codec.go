package rpc

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Kwargs are keyword arguments. Passed as the last argument of a call, they
// travel as the call's keyword map instead of as a positional argument.
type Kwargs map[string]any

// Request is a decoded call as a handler receives it: positional and keyword
// arguments still in msgpack, decoded by the handler into its own types.
type Request struct {
	// Method is the method name.
	Method string
	// Caller is the authenticated caller, as stamped by the platform.
	Caller Caller
	// Args are the positional arguments, each one msgpack value.
	Args []msgpack.RawMessage
	// Kwargs are the keyword arguments.
	Kwargs map[string]msgpack.RawMessage
}

// EncodeCall encodes the payload of a call: a msgpack array of two elements,
// the positional arguments (an array) and the keyword arguments (a map). A
// trailing Kwargs argument becomes the keyword map.
func EncodeCall(args ...any) ([]byte, error) {
	var kw Kwargs
	if n := len(args); n > 0 {
		if k, ok := args[n-1].(Kwargs); ok {
			kw, args = k, args[:n-1]
		}
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.EncodeArrayLen(2); err != nil {
		return nil, err
	}
	if err := enc.EncodeArrayLen(len(args)); err != nil {
		return nil, err
	}
	for i, a := range args {
		if err := enc.Encode(a); err != nil {
			return nil, fmt.Errorf("%w: argument %d (%T): %v", ErrInvalidArgs, i, a, err)
		}
	}
	if err := enc.EncodeMapLen(len(kw)); err != nil {
		return nil, err
	}
	for k, v := range kw {
		if err := enc.EncodeString(k); err != nil {
			return nil, err
		}
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("%w: keyword argument %q (%T): %v", ErrInvalidArgs, k, v, err)
		}
	}
	return buf.Bytes(), nil
}

// DecodeCall decodes a call payload written by EncodeCall (or by any client
// following docs/PROTOCOL.md). An empty payload is a call without arguments.
func DecodeCall(method string, payload []byte) (*Request, error) {
	req := &Request{Method: method}
	if len(payload) == 0 {
		return req, nil
	}
	dec := msgpack.NewDecoder(bytes.NewReader(payload))
	n, err := dec.DecodeArrayLen()
	if err != nil || n != 2 {
		return nil, fmt.Errorf("%w: call payload must be a msgpack array [args, kwargs]", ErrInvalidArgs)
	}
	na, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, fmt.Errorf("%w: call args must be an array: %v", ErrInvalidArgs, err)
	}
	if na > 0 {
		req.Args = make([]msgpack.RawMessage, na)
		for i := range req.Args {
			if req.Args[i], err = dec.DecodeRaw(); err != nil {
				return nil, fmt.Errorf("%w: argument %d: %v", ErrInvalidArgs, i, err)
			}
		}
	}
	nk, err := dec.DecodeMapLen()
	if err != nil {
		return nil, fmt.Errorf("%w: call kwargs must be a map: %v", ErrInvalidArgs, err)
	}
	if nk > 0 {
		req.Kwargs = make(map[string]msgpack.RawMessage, nk)
		for i := 0; i < nk; i++ {
			k, err := dec.DecodeString()
			if err != nil {
				return nil, fmt.Errorf("%w: keyword %d: name is not a string", ErrInvalidArgs, i)
			}
			if req.Kwargs[k], err = dec.DecodeRaw(); err != nil {
				return nil, fmt.Errorf("%w: keyword %q: %v", ErrInvalidArgs, k, err)
			}
		}
	}
	return req, nil
}

// Marshal encodes a value (a result, an error's data) in msgpack.
func Marshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal decodes msgpack data into v.
func Unmarshal(data []byte, v any) error { return msgpack.Unmarshal(data, v) }

// EncodeError encodes e as the payload of an RPC error reply.
func EncodeError(e *Error) ([]byte, error) { return msgpack.Marshal(e) }

// DecodeError decodes the payload of an RPC error reply. A payload that is
// not an error map still yields an *Error (CodeProtocol) that says so.
func DecodeError(payload []byte) *Error {
	var e Error
	if err := msgpack.Unmarshal(payload, &e); err != nil {
		return Errorf(CodeProtocol, "undecodable error payload: %v", err)
	}
	return &e
}
