package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/capbus/capbus/rpc"
)

// parseJSON decodes one JSON value, keeping integers as integers (int64,
// or uint64 above its range) so they travel exactly as msgpack integers
// rather than as rounded floats. A number that fits neither an integer of
// 64 bits nor a finite float64 is an error, never a rounded or infinite
// value.
func parseJSON(s string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return numbers(v)
}

func numbers(v any) (any, error) {
	var err error
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u, nil
		}
		if !strings.ContainsAny(string(x), ".eE") {
			return nil, fmt.Errorf("the integer %s does not fit in 64 bits", x)
		}
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("the number %s is out of the range of a float64", x)
		}
		return f, nil
	case []any:
		for i := range x {
			if x[i], err = numbers(x[i]); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for k := range x {
			if x[k], err = numbers(x[k]); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

func rpcKwargs(m map[string]any) rpc.Kwargs { return rpc.Kwargs(m) }

// decodeAny decodes a msgpack value for printing: maps keep keys of any
// type (an agent in another language may send integer keys), which
// jsonable then writes as strings.
func decodeAny(raw rpc.Raw) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := msgpack.NewDecoder(bytes.NewReader(raw))
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) { return d.DecodeUntypedMap() })
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// jsonable turns msgpack-decoded values (maps with any keys, byte slices,
// floats JSON cannot hold) into values encoding/json can print: keys as
// strings, bytes as a string, NaN and infinities as the strings "NaN",
// "+Inf" and "-Inf".
func jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
	case []any:
		for i := range x {
			x[i] = jsonable(x[i])
		}
	case []byte:
		return string(x)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
	case float32:
		if f := float64(x); math.IsInf(f, 0) || math.IsNaN(f) {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	return v
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
