package rpc

import (
	"context"
	"fmt"
	"reflect"
	"strings"
)

// Handler serves one exported method. ServeRPC returns the result value,
// which the agent encodes in msgpack, or an error: an *Error keeps its code,
// any other error reaches the caller as CodeApplication with its message.
type Handler interface {
	ServeRPC(ctx context.Context, req *Request) (any, error)
}

// ParamNamer is implemented by handlers that know their parameter names;
// Export declares them to the platform.
type ParamNamer interface {
	ParamNames() []string
}

// HandlerFunc adapts an untyped function to a Handler.
type HandlerFunc func(ctx context.Context, req *Request) (any, error)

// ServeRPC calls f.
func (f HandlerFunc) ServeRPC(ctx context.Context, req *Request) (any, error) { return f(ctx, req) }

// Func adapts a typed function to a Handler. A, the argument type, decides
// how the call's arguments are decoded:
//
//   - a struct (or pointer to struct): its exported fields are the
//     parameters, in order. Positional arguments fill fields in order and
//     keyword arguments fill them by name (the msgpack tag, or the field
//     name). Unknown keywords and surplus positional arguments are
//     ErrInvalidArgs. The field names are declared as the method's
//     parameters, so auth.json parameter restrictions can name them.
//   - a slice: all positional arguments (variadic).
//   - a map with string keys: all keyword arguments.
//   - struct{}: no arguments.
//   - anything else: the single positional argument (or single keyword).
func Func[A, R any](fn func(ctx context.Context, args A) (R, error)) Handler {
	t := reflect.TypeFor[A]()
	return &typedHandler[A, R]{fn: fn, binder: newBinder(t)}
}

type typedHandler[A, R any] struct {
	fn     func(context.Context, A) (R, error)
	binder *binder
}

func (h *typedHandler[A, R]) ServeRPC(ctx context.Context, req *Request) (any, error) {
	var a A
	if err := h.binder.bind(reflect.ValueOf(&a).Elem(), req); err != nil {
		return nil, err
	}
	return h.fn(ctx, a)
}

func (h *typedHandler[A, R]) ParamNames() []string { return h.binder.names }

type bindKind int

const (
	bindSingle bindKind = iota
	bindStruct
	bindSlice
	bindMap
	bindNone
)

type binder struct {
	kind   bindKind
	ptr    bool
	names  []string
	fields []int
	index  map[string]int
}

func newBinder(t reflect.Type) *binder {
	b := &binder{}
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		b.ptr, t = true, t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t.NumField() == 0:
		b.kind = bindNone
	case t.Kind() == reflect.Struct:
		b.kind = bindStruct
		b.index = map[string]int{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := f.Name
			if tag, _, _ := strings.Cut(f.Tag.Get("msgpack"), ","); tag == "-" {
				continue
			} else if tag != "" {
				name = tag
			}
			b.index[name] = len(b.fields)
			b.names = append(b.names, name)
			b.fields = append(b.fields, i)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		b.kind = bindSlice
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		b.kind = bindMap
	default:
		b.kind = bindSingle
	}
	return b
}

func invalid(req *Request, format string, args ...any) error {
	return Errorf(CodeInvalidArgs, "%s: %s", req.Method, fmt.Sprintf(format, args...))
}

func (b *binder) bind(v reflect.Value, req *Request) error {
	switch b.kind {
	case bindNone:
		if len(req.Args)+len(req.Kwargs) > 0 {
			return invalid(req, "takes no arguments, got %d positional and %d keyword", len(req.Args), len(req.Kwargs))
		}
	case bindSingle:
		raw, err := b.single(req)
		if err != nil {
			return err
		}
		if raw != nil {
			if err := Unmarshal(raw, v.Addr().Interface()); err != nil {
				return invalid(req, "argument: %v", err)
			}
		}
	case bindSlice:
		if len(req.Kwargs) > 0 {
			return invalid(req, "takes positional arguments only")
		}
		s := reflect.MakeSlice(v.Type(), len(req.Args), len(req.Args))
		for i, raw := range req.Args {
			if err := Unmarshal(raw, s.Index(i).Addr().Interface()); err != nil {
				return invalid(req, "argument %d: %v", i, err)
			}
		}
		v.Set(s)
	case bindMap:
		if len(req.Args) > 0 {
			return invalid(req, "takes keyword arguments only")
		}
		m := reflect.MakeMapWithSize(v.Type(), len(req.Kwargs))
		for k, raw := range req.Kwargs {
			ev := reflect.New(v.Type().Elem())
			if err := Unmarshal(raw, ev.Interface()); err != nil {
				return invalid(req, "keyword %q: %v", k, err)
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev.Elem())
		}
		v.Set(m)
	case bindStruct:
		if b.ptr {
			v.Set(reflect.New(v.Type().Elem()))
			v = v.Elem()
		}
		if len(req.Args) > len(b.fields) {
			return invalid(req, "takes %d arguments (%s), got %d", len(b.fields), strings.Join(b.names, ", "), len(req.Args))
		}
		for i, raw := range req.Args {
			if err := Unmarshal(raw, v.Field(b.fields[i]).Addr().Interface()); err != nil {
				return invalid(req, "argument %d (%s): %v", i, b.names[i], err)
			}
		}
		for k, raw := range req.Kwargs {
			j, ok := b.index[k]
			if !ok {
				return invalid(req, "unknown keyword argument %q (parameters: %s)", k, strings.Join(b.names, ", "))
			}
			if j < len(req.Args) {
				return invalid(req, "argument %q given both by position and by keyword", k)
			}
			if err := Unmarshal(raw, v.Field(b.fields[j]).Addr().Interface()); err != nil {
				return invalid(req, "keyword %q: %v", k, err)
			}
		}
	}
	return nil
}

func (b *binder) single(req *Request) (Raw, error) {
	switch {
	case len(req.Args) == 1 && len(req.Kwargs) == 0:
		return req.Args[0], nil
	case len(req.Args) == 0 && len(req.Kwargs) == 1:
		for _, raw := range req.Kwargs {
			return raw, nil
		}
	case len(req.Args) == 0 && len(req.Kwargs) == 0:
		return nil, nil
	}
	return nil, invalid(req, "takes one argument, got %d positional and %d keyword", len(req.Args), len(req.Kwargs))
}

// NamedArgs returns the call's arguments by parameter name (positional ones
// named by params), decoded to plain Go values. The platform uses it only for
// methods that auth.json restricts by parameter.
func (req *Request) NamedArgs(params []string) (map[string]any, error) {
	out := make(map[string]any, len(req.Args)+len(req.Kwargs))
	for i, raw := range req.Args {
		if i >= len(params) {
			break
		}
		var v any
		if err := Unmarshal(raw, &v); err != nil {
			return nil, invalid(req, "argument %d: %v", i, err)
		}
		out[params[i]] = v
	}
	for k, raw := range req.Kwargs {
		var v any
		if err := Unmarshal(raw, &v); err != nil {
			return nil, invalid(req, "keyword %q: %v", k, err)
		}
		out[k] = v
	}
	return out, nil
}
