package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/capbus/capbus/rpc"
)

// parseJSON decodes one JSON value, keeping integers as int64 so they travel
// as msgpack integers rather than floats.
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
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}

func rpcKwargs(m map[string]any) rpc.Kwargs { return rpc.Kwargs(m) }

// jsonable turns msgpack-decoded values (maps with any keys, byte slices)
// into values encoding/json can print.
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
