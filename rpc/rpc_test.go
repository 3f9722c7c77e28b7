package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capbus/capbus/rpc"
)

func mustDecode(t *testing.T, method string, args ...any) *rpc.Request {
	t.Helper()
	payload, err := rpc.EncodeCall(args...)
	if err != nil {
		t.Fatal(err)
	}
	req, err := rpc.DecodeCall(method, payload)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestCodec_CallRoundTrip(t *testing.T) {
	req := mustDecode(t, "m", "Paris", 3, []string{"a", "b"}, rpc.Kwargs{"unit": "C", "n": 2.5})
	if req.Method != "m" || len(req.Args) != 3 || len(req.Kwargs) != 2 {
		t.Fatalf("decoded %+v", req)
	}
	var city string
	var n int
	var l []string
	var unit string
	var f float64
	for _, err := range []error{req.Args[0].Decode(&city), req.Args[1].Decode(&n), req.Args[2].Decode(&l),
		req.Kwargs["unit"].Decode(&unit), req.Kwargs["n"].Decode(&f)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if city != "Paris" || n != 3 || !reflect.DeepEqual(l, []string{"a", "b"}) || unit != "C" || f != 2.5 {
		t.Fatalf("values: %q %d %v %q %v", city, n, l, unit, f)
	}
}

func TestCodec_EmptyPayloadIsNoArguments(t *testing.T) {
	req, err := rpc.DecodeCall("m", nil)
	if err != nil || len(req.Args) != 0 || len(req.Kwargs) != 0 {
		t.Fatalf("%+v, %v", req, err)
	}
	req = mustDecode(t, "m")
	if len(req.Args) != 0 || len(req.Kwargs) != 0 {
		t.Fatalf("%+v", req)
	}
}

func TestCodec_MalformedPayloadIsInvalidArgs(t *testing.T) {
	for _, payload := range [][]byte{{0xc0}, {0x91, 0x90}, {0x92, 0x01, 0x80}, {0x92, 0x90, 0x01}} {
		_, err := rpc.DecodeCall("m", payload)
		if !errors.Is(err, rpc.ErrInvalidArgs) {
			t.Errorf("payload %x: %v, want ErrInvalidArgs", payload, err)
		}
	}
	if _, err := rpc.EncodeCall(make(chan int)); !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Errorf("unencodable argument: %v", err)
	}
}

func TestCodec_ErrorRoundTrip(t *testing.T) {
	in := rpc.NewError(rpc.CodeUnauthorized, "method \"t\" requires [a b]").
		WithData("required", []string{"a", "b"}).WithData("missing", []string{"b"})
	payload, err := rpc.EncodeError(in)
	if err != nil {
		t.Fatal(err)
	}
	out := rpc.DecodeError(payload)
	if out.Code != in.Code || out.Message != in.Message ||
		!reflect.DeepEqual(out.Required(), []string{"a", "b"}) || !reflect.DeepEqual(out.Missing(), []string{"b"}) {
		t.Fatalf("round trip: %+v", out)
	}
	if e := rpc.DecodeError([]byte{0xc1}); e.Code != rpc.CodeProtocol {
		t.Fatalf("garbage error payload: %+v", e)
	}
}

func TestRaw_EmbedsUnchanged(t *testing.T) {
	inner, _ := rpc.Marshal(map[string]int{"x": 1})
	outer, err := rpc.Marshal([]any{rpc.Raw(inner), "y"})
	if err != nil {
		t.Fatal(err)
	}
	var back []rpc.Raw
	if err := rpc.Unmarshal(outer, &back); err != nil || len(back) != 2 {
		t.Fatalf("%v %v", back, err)
	}
	var m map[string]int
	if err := back[0].Decode(&m); err != nil || m["x"] != 1 {
		t.Fatalf("%v %v", m, err)
	}
}

type forecastArgs struct {
	City  string `msgpack:"city"`
	Days  int    `msgpack:"days"`
	Units string
	note  string // unexported fields are not parameters
	Skip  string `msgpack:"-"`
}

func serve(t *testing.T, h rpc.Handler, args ...any) (any, error) {
	t.Helper()
	return h.ServeRPC(context.Background(), mustDecode(t, "m", args...))
}

func TestFunc_BindsStructByPositionAndKeyword(t *testing.T) {
	h := rpc.Func(func(ctx context.Context, a forecastArgs) (forecastArgs, error) { return a, nil })
	if got := h.(rpc.ParamNamer).ParamNames(); !reflect.DeepEqual(got, []string{"city", "days", "Units"}) {
		t.Fatalf("ParamNames = %v", got)
	}
	v, err := serve(t, h, "Paris", rpc.Kwargs{"days": 3, "Units": "C"})
	if err != nil || v.(forecastArgs) != (forecastArgs{City: "Paris", Days: 3, Units: "C"}) {
		t.Fatalf("%+v, %v", v, err)
	}
	for _, bad := range [][]any{
		{"Paris", 1, "C", "extra"},
		{rpc.Kwargs{"nope": 1}},
		{"Paris", rpc.Kwargs{"city": "Rome"}},
		{1},
	} {
		if _, err := serve(t, h, bad...); !errors.Is(err, rpc.ErrInvalidArgs) {
			t.Errorf("args %v: %v, want ErrInvalidArgs", bad, err)
		}
	}
}

func TestFunc_BindsPointerToStruct(t *testing.T) {
	h := rpc.Func(func(ctx context.Context, a *forecastArgs) (string, error) { return a.City, nil })
	if v, err := serve(t, h, rpc.Kwargs{"city": "Oslo"}); err != nil || v != "Oslo" {
		t.Fatalf("%v, %v", v, err)
	}
}

func TestFunc_BindsSliceMapSingleAndNone(t *testing.T) {
	sum := rpc.Func(func(ctx context.Context, xs []float64) (float64, error) {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s, nil
	})
	if v, err := serve(t, sum, 1, 2.5, 3); err != nil || v != 6.5 {
		t.Fatalf("slice: %v, %v", v, err)
	}
	if _, err := serve(t, sum, rpc.Kwargs{"x": 1}); !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Fatalf("slice with keywords: %v", err)
	}

	kw := rpc.Func(func(ctx context.Context, m map[string]int) (int, error) { return m["a"] + m["b"], nil })
	if v, err := serve(t, kw, rpc.Kwargs{"a": 1, "b": 2}); err != nil || v != 3 {
		t.Fatalf("map: %v, %v", v, err)
	}
	if _, err := serve(t, kw, 1); !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Fatalf("map with positional: %v", err)
	}

	kwargs := rpc.Func(func(ctx context.Context, m rpc.Kwargs) (int, error) { return len(m), nil })
	if v, err := serve(t, kwargs, rpc.Kwargs{"a": 1, "b": "x"}); err != nil || v != 2 {
		t.Fatalf("rpc.Kwargs: %v, %v", v, err)
	}

	single := rpc.Func(func(ctx context.Context, s string) (string, error) { return s + "!", nil })
	if v, err := serve(t, single, "hi"); err != nil || v != "hi!" {
		t.Fatalf("single: %v, %v", v, err)
	}
	if v, err := serve(t, single, rpc.Kwargs{"s": "kw"}); err != nil || v != "kw!" {
		t.Fatalf("single by keyword: %v, %v", v, err)
	}
	if _, err := serve(t, single, "a", "b"); !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Fatalf("single with two: %v", err)
	}

	none := rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "ok", nil })
	if v, err := serve(t, none); err != nil || v != "ok" {
		t.Fatalf("none: %v, %v", v, err)
	}
	if _, err := serve(t, none, 1); !errors.Is(err, rpc.ErrInvalidArgs) {
		t.Fatalf("none with one: %v", err)
	}
}

func TestFunc_HandlerSeesCaller(t *testing.T) {
	h := rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
		c, ok := rpc.CallerFrom(ctx)
		if !ok {
			return "", errors.New("no caller")
		}
		return c.UserID + "/" + c.Identity, nil
	})
	ctx := rpc.WithCaller(context.Background(), rpc.Caller{UserID: "alice", Identity: "a1"})
	v, err := h.ServeRPC(ctx, &rpc.Request{Method: "m"})
	if err != nil || v != "alice/a1" {
		t.Fatalf("%v, %v", v, err)
	}
	if _, ok := rpc.CallerFrom(context.Background()); ok {
		t.Fatal("caller outside a handler")
	}
}

// TestWithCaller_BehavesAsAContextValue checks the caller context under
// contexts derived from it, the values of the contexts it derives from, and
// cancellation through it.
func TestWithCaller_BehavesAsAContextValue(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "below"))
	ctx := rpc.WithCaller(parent, rpc.Caller{UserID: "alice", Identity: "a1"})
	derived, stop := context.WithCancel(context.WithValue(ctx, key{}, "above"))
	defer stop()
	if c, ok := rpc.CallerFrom(derived); !ok || c != (rpc.Caller{UserID: "alice", Identity: "a1"}) {
		t.Fatalf("CallerFrom(derived) = %v, %v", c, ok)
	}
	if v := ctx.Value(key{}); v != "below" {
		t.Fatalf("a value of the parent: %v", v)
	}
	inner := rpc.WithCaller(derived, rpc.Caller{UserID: "bobby", Identity: "b1"})
	if c, _ := rpc.CallerFrom(inner); c.UserID != "bobby" {
		t.Fatalf("the innermost caller wins: %v", c)
	}
	cancel()
	select {
	case <-derived.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the parent did not reach through the caller context")
	}
	if !strings.Contains(fmt.Sprint(ctx), "WithCaller(a1 as alice)") {
		t.Fatalf("String: %v", ctx)
	}
}

func TestError_IsAndAs(t *testing.T) {
	e := rpc.NewError(rpc.CodeUnauthorized, "nope").WithData("missing", []any{"can_read_temp"})
	e.Peer, e.Method = "weather", "temperature"
	wrapped := fmt.Errorf("checking weather: %w", e)
	if !errors.Is(wrapped, rpc.ErrUnauthorized) || errors.Is(wrapped, rpc.ErrNotFound) {
		t.Fatal("errors.Is on the sentinel of the code")
	}
	var got *rpc.Error
	if !errors.As(wrapped, &got) || got.Code != rpc.CodeUnauthorized || got.Missing()[0] != "can_read_temp" {
		t.Fatalf("errors.As: %+v", got)
	}
	if got.Error() != "rpc: weather.temperature: unauthorized: nope" {
		t.Fatalf("Error() = %q", got.Error())
	}
	timeout := rpc.NewError(rpc.CodeTimeout, "late").WithCause(context.DeadlineExceeded)
	if !errors.Is(timeout, rpc.ErrTimeout) || !errors.Is(timeout, context.DeadlineExceeded) {
		t.Fatal("cause not found")
	}
}

func TestCodeOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want rpc.Code
	}{
		{nil, rpc.CodeUnknown},
		{errors.New("x"), rpc.CodeUnknown},
		{rpc.NewError(rpc.CodeNoRoute, "x"), rpc.CodeNoRoute},
		{fmt.Errorf("wrap: %w", rpc.ErrNotFound), rpc.CodeNotFound},
		{context.DeadlineExceeded, rpc.CodeTimeout},
		{context.Canceled, rpc.CodeCanceled},
	} {
		if got := rpc.CodeOf(tc.err); got != tc.want {
			t.Errorf("CodeOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestFromError(t *testing.T) {
	if rpc.FromError(nil) != nil {
		t.Fatal("FromError(nil)")
	}
	if e := rpc.FromError(errors.New("disk full")); e.Code != rpc.CodeApplication || e.Message != "disk full" {
		t.Fatalf("plain error: %+v", e)
	}
	own := rpc.NewError(rpc.CodeInvalidArgs, "bad city")
	if e := rpc.FromError(fmt.Errorf("x: %w", own)); e != own {
		t.Fatalf("own *Error: %+v", e)
	}
	if e := rpc.FromError(fmt.Errorf("lookup: %w", rpc.ErrNotFound)); e.Code != rpc.CodeNotFound {
		t.Fatalf("sentinel: %+v", e)
	}
}

func TestCode_StringAndWire(t *testing.T) {
	if rpc.CodeUnauthorized.String() != "unauthorized" || rpc.CodeUnauthorized.Wire() != "13" {
		t.Fatal(rpc.CodeUnauthorized)
	}
	if rpc.ParseCode("113") != rpc.CodeNoRoute || rpc.ParseCode("x") != rpc.CodeUnknown {
		t.Fatal("ParseCode")
	}
	if rpc.Code(999).String() != "code_999" {
		t.Fatal(rpc.Code(999).String())
	}
}

func TestNewExport_AllOfOptions(t *testing.T) {
	e := rpc.NewExport("temperature", rpc.Allow("can_read_temp"), rpc.Allow("can_read_weather", "can_read_temp"),
		rpc.AllowRoles("admin"), rpc.Params("city"))
	want := rpc.Export{Name: "temperature", Capabilities: []string{"can_read_temp", "can_read_weather"},
		Roles: []string{"admin"}, Params: []string{"city"}}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("%+v", e)
	}
	if e := rpc.NewExport("open"); e.Capabilities == nil || e.Roles == nil || e.Params == nil {
		t.Fatalf("lists must be empty, not nil, on the wire: %+v", e)
	}
}

func TestRequest_NamedArgs(t *testing.T) {
	req := mustDecode(t, "set", "platform.a", rpc.Kwargs{"value": 3})
	m, err := req.NamedArgs([]string{"identity", "value"})
	if err != nil || m["identity"] != "platform.a" || fmt.Sprint(m["value"]) != "3" {
		t.Fatalf("%v, %v", m, err)
	}
}

func BenchmarkCodec_EncodeDecodeCall(b *testing.B) {
	h := rpc.Func(func(ctx context.Context, a forecastArgs) (string, error) { return a.City, nil })
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := rpc.EncodeCall("Paris", 3, rpc.Kwargs{"Units": "C"})
		if err != nil {
			b.Fatal(err)
		}
		req, err := rpc.DecodeCall("forecast", p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.ServeRPC(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEncodeCall_SingleStructTravelsAsKeywords(t *testing.T) {
	type args struct {
		City string `msgpack:"city"`
		Days int    `msgpack:"days"`
	}
	for _, in := range []any{args{City: "oslo", Days: 2}, &args{City: "oslo", Days: 2}} {
		req := mustDecode(t, "forecast", in)
		if len(req.Args) != 0 || len(req.Kwargs) != 2 {
			t.Fatalf("%T: want 0 positional and 2 keyword arguments, got %d and %d", in, len(req.Args), len(req.Kwargs))
		}
		var got args
		h := rpc.Func(func(ctx context.Context, a args) (args, error) { got = a; return a, nil })
		if _, err := h.ServeRPC(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if got != (args{City: "oslo", Days: 2}) {
			t.Fatalf("%T: handler got %+v", in, got)
		}
	}
}
