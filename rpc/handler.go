package rpc

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/capbus/capbus/internal/codec"
)

// Request is a call as a handler receives it: the arguments still encoded,
// decoded by the handler into its own types.
type Request struct {
	// Method is the method name.
	Method string
	// Caller is the authenticated caller, as stamped by the platform.
	Caller Principal
	// Params are the parameter names the method was exported with, if any
	// (Params, or the fields of Func's argument struct).
	Params []string
	// Args are the positional arguments, each one value.
	Args []Raw
	// Kwargs are the keyword arguments.
	Kwargs map[string]Raw
}

// Handler serves one exported method. ServeRPC returns the result value,
// which the agent encodes, or an error: an *Error keeps its code, any other
// error reaches the caller as CodeApplication with its message.
//
// ctx is the call's own context: it carries the caller (CallerFrom), ends
// at the caller's deadline, and is cancelled when the caller cancels the
// call or disconnects, or when the agent stops.
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
// how the call's arguments bind, strictly:
//
//   - a struct (or pointer to struct): its exported fields are the
//     parameters, in order, named by their msgpack tag or field name.
//     Positional arguments fill fields in order, keyword arguments by name.
//     Every field must be given, except pointer fields and fields whose
//     msgpack tag says omitempty, which are optional; null counts as
//     missing. The names are declared as the method's parameters, so
//     auth.json parameter restrictions can name them.
//   - a slice: all positional arguments (variadic).
//   - a map with string keys: all keyword arguments.
//   - struct{}: no arguments.
//   - any other type: exactly one argument, positional (or by keyword under
//     the one name given with Params); it is optional only when A is a
//     pointer.
//
// A missing argument, an unknown keyword, a surplus argument, a value of
// the wrong type or an integer out of its parameter's range (in the
// parameter itself or in its elements, map values and struct fields) is an
// *Error with CodeInvalidArgs that names the method,
// the parameter, what was expected and what came, such as
//
//	set_setpoint: value: want a number, got nothing
func Func[A, R any](fn func(ctx context.Context, args A) (R, error)) Handler {
	return &typedHandler[A, R]{fn: fn, binder: newBinder(reflect.TypeFor[A]())}
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
	kind     bindKind
	ptr      bool // a pointer to the struct
	names    []string
	fields   [][]int // each parameter's field, by index path (embedded structs)
	optional []bool
	index    map[string]int
}

// addFields makes the exported fields of struct t parameters, in
// declaration order, named by their msgpack tags, with the fields of
// embedded structs inlined where they are declared, as msgpack inlines
// them (unless tagged noinline): a caller that passes the struct itself
// sends them so. Of fields of one name, the least deeply embedded wins.
func (b *binder) addFields(t reflect.Type, path []int) {
	type param struct {
		name     string
		path     []int
		optional bool
	}
	var all []param
	var walk func(t reflect.Type, path []int)
	walk = func(t reflect.Type, path []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, opts, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
			if tag == "-" {
				continue
			}
			at := append(slices.Clone(path), i)
			inner := f.Type
			if inner.Kind() == reflect.Pointer {
				inner = inner.Elem()
			}
			if f.Anonymous && inner.Kind() == reflect.Struct && !strings.Contains(","+opts+",", ",noinline,") &&
				(f.IsExported() || f.Type.Kind() != reflect.Pointer) {
				walk(inner, at)
				continue
			}
			if !f.IsExported() {
				continue
			}
			name := f.Name
			if tag != "" {
				name = tag
			}
			all = append(all, param{name, at, f.Type.Kind() == reflect.Pointer || strings.Contains(","+opts+",", ",omitempty,")})
		}
	}
	walk(t, path)
	depth := map[string]int{}
	for _, p := range all {
		if d, ok := depth[p.name]; !ok || len(p.path) < d {
			depth[p.name] = len(p.path)
		}
	}
	for _, p := range all {
		if _, dup := b.index[p.name]; dup || len(p.path) != depth[p.name] {
			continue
		}
		b.index[p.name] = len(b.fields)
		b.names = append(b.names, p.name)
		b.fields = append(b.fields, p.path)
		b.optional = append(b.optional, p.optional)
	}
}

// fieldAt returns the field of struct v at path, allocating the embedded
// structs behind nil pointers on the way.
func fieldAt(v reflect.Value, path []int) reflect.Value {
	for i, x := range path {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

func newBinder(t reflect.Type) *binder {
	b := &binder{}
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		b.ptr, t = true, t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t.NumField() == 0:
		b.kind = bindNone
	case t.Kind() == reflect.Struct && t != reflect.TypeFor[time.Time]():
		b.kind = bindStruct
		b.index = map[string]int{}
		b.addFields(t, nil)
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		b.kind = bindSlice
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		b.kind = bindMap
	default:
		b.kind = bindSingle
		b.optional = []bool{t.Kind() == reflect.Pointer}
	}
	return b
}

func invalid(req *Request, format string, args ...any) *Error {
	return Errorf(CodeInvalidArgs, "%s: %s", req.Method, fmt.Sprintf(format, args...))
}

// decodeArg decodes raw into dst, explaining a mismatch for people: "want
// a number, got a string".
func decodeArg(req *Request, what string, raw Raw, dst reflect.Value) error {
	if err := codec.Unmarshal(raw, dst.Addr().Interface()); err != nil {
		if convertNumber(raw, dst) {
			return nil
		}
		want, got := wantOf(dst.Type()), codec.Kind(raw)
		if want != got && want != "any value" {
			return invalid(req, "%s: want %s, got %s", what, want, got)
		}
		return invalid(req, "%s: want %s (%s)", what, want, dst.Type())
	}
	if msg, ok := outOfRange(raw, dst); !ok {
		return invalid(req, "%s: want %s, %s", what, dst.Type(), msg)
	}
	return nil
}

// outOfRange checks the integers the codec decoded into dst against the
// integers that were sent, in dst itself or in its elements, map values
// and struct fields: the codec converts without a range check, so that -1
// would become 2^64-1 in a uint64 and 300 become 44 in a uint8. ok is
// false when one does not fit, with a message that says which.
func outOfRange(raw Raw, dst reflect.Value) (msg string, ok bool) {
	if !mayHoldIntegers(dst.Type()) {
		return "", true
	}
	var v any
	if codec.Unmarshal(raw, &v) != nil {
		return "", true
	}
	return fits(dst, v)
}

// mayHoldIntegers tells, without following types into themselves, whether
// a value of t can hold an integer: bytes, strings, floats and booleans
// cannot.
func mayHoldIntegers(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Map, reflect.Struct:
		return true
	case reflect.Slice, reflect.Array:
		return t.Elem().Kind() != reflect.Uint8
	}
	return false
}

// fits walks dst and v, what the codec decoded and the same value decoded
// as any, and finds an integer of v that dst's type could not hold.
func fits(dst reflect.Value, v any) (string, bool) {
	for dst.Kind() == reflect.Pointer || dst.Kind() == reflect.Interface {
		if dst.IsNil() || dst.Kind() == reflect.Interface {
			return "", true
		}
		dst = dst.Elem()
	}
	n := reflect.ValueOf(v)
	var sent string
	var fit bool
	switch {
	case dst.CanInt() && n.CanInt():
		sent, fit = strconv.FormatInt(n.Int(), 10), !dst.OverflowInt(n.Int())
	case dst.CanUint() && n.CanInt():
		sent, fit = strconv.FormatInt(n.Int(), 10), n.Int() >= 0 && !dst.OverflowUint(uint64(n.Int()))
	case dst.CanInt() && n.CanUint():
		sent, fit = strconv.FormatUint(n.Uint(), 10), n.Uint() <= math.MaxInt64 && !dst.OverflowInt(int64(n.Uint()))
	case dst.CanUint() && n.CanUint():
		sent, fit = strconv.FormatUint(n.Uint(), 10), !dst.OverflowUint(n.Uint())
	default:
		fit = true
	}
	if sent != "" {
		if fit {
			return "", true
		}
		return "got " + sent + ", out of the range of " + dst.Type().String(), false
	}
	switch x := v.(type) {
	case []any:
		if dst.Kind() == reflect.Slice || dst.Kind() == reflect.Array {
			for i := 0; i < min(dst.Len(), len(x)); i++ {
				if s, ok := fits(dst.Index(i), x[i]); !ok {
					return s, false
				}
			}
		}
	case map[string]any:
		switch dst.Kind() {
		case reflect.Map:
			if dst.Type().Key().Kind() != reflect.String {
				return "", true
			}
			for k, e := range x {
				if m := dst.MapIndex(reflect.ValueOf(k).Convert(dst.Type().Key())); m.IsValid() {
					if s, ok := fits(m, e); !ok {
						return s, false
					}
				}
			}
		case reflect.Struct:
			t := dst.Type()
			for i := 0; i < t.NumField(); i++ {
				name, _, _ := strings.Cut(t.Field(i).Tag.Get("msgpack"), ",")
				if name == "" {
					name = t.Field(i).Name
				}
				if e, ok := x[name]; ok && t.Field(i).IsExported() {
					if s, ok := fits(dst.Field(i), e); !ok {
						return s, false
					}
				}
			}
		}
	}
	return "", true // floats are converted and checked by convertNumber
}

// convertNumber decodes a number the codec would not put into dst as it
// is: any number into a float32 or float64 (a float64 into a float32 loses
// precision, as a Go conversion does), and a whole number sent as a float
// into an integer that holds it. It reports whether it did.
func convertNumber(raw Raw, dst reflect.Value) bool {
	var v any
	if codec.Unmarshal(raw, &v) != nil {
		return false
	}
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case float32:
		f = float64(n)
	case int64:
		f = float64(n)
	case uint64:
		f = float64(n)
	case int8, int16, int32, uint8, uint16, uint32:
		f = float64(reflect.ValueOf(n).Convert(reflect.TypeFor[float64]()).Float())
	default:
		return false
	}
	switch dst.Kind() {
	case reflect.Float32, reflect.Float64:
		dst.SetFloat(f)
		return true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if f != math.Trunc(f) || dst.OverflowInt(int64(f)) || f < math.MinInt64 || f >= math.MaxInt64 {
			return false
		}
		dst.SetInt(int64(f))
		return true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if f != math.Trunc(f) || f < 0 || f >= math.MaxUint64 || dst.OverflowUint(uint64(f)) {
			return false
		}
		dst.SetUint(uint64(f))
		return true
	}
	return false
}

// wantOf names what a Go type accepts, in the words of codec.Kind.
func wantOf(t reflect.Type) string {
	if t == reflect.TypeFor[time.Time]() {
		return "a timestamp"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return wantOf(t.Elem())
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "binary data"
		}
		return "an array"
	case reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "a map"
	}
	return "any value"
}

func (b *binder) bind(v reflect.Value, req *Request) error {
	switch b.kind {
	case bindNone:
		if len(req.Args)+len(req.Kwargs) > 0 {
			return invalid(req, "takes no arguments, got %d positional and %d keyword", len(req.Args), len(req.Kwargs))
		}
	case bindSingle:
		return b.bindSingle(v, req)
	case bindSlice:
		if len(req.Kwargs) > 0 {
			return invalid(req, "takes positional arguments only, got keyword %q", firstKey(req.Kwargs))
		}
		s := reflect.MakeSlice(v.Type(), len(req.Args), len(req.Args))
		for i, raw := range req.Args {
			if err := decodeArg(req, fmt.Sprintf("argument %d", i+1), raw, s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
	case bindMap:
		if len(req.Args) > 0 {
			return invalid(req, "takes keyword arguments only, got %d positional", len(req.Args))
		}
		m := reflect.MakeMapWithSize(v.Type(), len(req.Kwargs))
		for k, raw := range req.Kwargs {
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := decodeArg(req, k, raw, ev); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
	case bindStruct:
		return b.bindStruct(v, req)
	}
	return nil
}

func (b *binder) bindSingle(v reflect.Value, req *Request) error {
	name := "argument"
	if len(req.Params) == 1 {
		name = req.Params[0]
	}
	var raw Raw
	switch {
	case len(req.Args) == 1 && len(req.Kwargs) == 0:
		raw = req.Args[0]
	case len(req.Args) == 0 && len(req.Kwargs) == 1:
		k := firstKey(req.Kwargs)
		if len(req.Params) != 1 || k != req.Params[0] {
			if len(req.Params) == 1 {
				return invalid(req, "unknown keyword argument %q (parameter: %s)", k, req.Params[0])
			}
			return invalid(req, "takes one positional argument, got keyword %q", k)
		}
		raw = req.Kwargs[k]
	case len(req.Args)+len(req.Kwargs) > 1:
		return invalid(req, "takes one argument, got %d positional and %d keyword", len(req.Args), len(req.Kwargs))
	}
	if codec.IsNil(raw) {
		if b.optional[0] {
			return nil
		}
		return invalid(req, "%s: want %s, got %s", name, wantOf(v.Type()), codec.Kind(raw))
	}
	return decodeArg(req, name, raw, v)
}

func (b *binder) bindStruct(v reflect.Value, req *Request) error {
	if b.ptr {
		v.Set(reflect.New(v.Type().Elem()))
		v = v.Elem()
	}
	if len(req.Args) > len(b.fields) {
		return invalid(req, "takes %d arguments (%s), got %d", len(b.fields), strings.Join(b.names, ", "), len(req.Args))
	}
	given := make([]Raw, len(b.fields))
	for i, raw := range req.Args {
		given[i] = raw
	}
	for k, raw := range req.Kwargs {
		j, ok := b.index[k]
		if !ok {
			return invalid(req, "unknown keyword argument %q (parameters: %s)", k, strings.Join(b.names, ", "))
		}
		if j < len(req.Args) {
			return invalid(req, "argument %q given both by position and by keyword", k)
		}
		given[j] = raw
	}
	for j, raw := range given {
		f := fieldAt(v, b.fields[j])
		if codec.IsNil(raw) {
			if b.optional[j] {
				continue
			}
			return invalid(req, "%s: want %s, got %s", b.names[j], wantOf(f.Type()), codec.Kind(raw))
		}
		if err := decodeArg(req, b.names[j], raw, f); err != nil {
			return err
		}
	}
	return nil
}

func firstKey(m map[string]Raw) string {
	for k := range m {
		return k
	}
	return ""
}
