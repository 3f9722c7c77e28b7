package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// request builds the Request a handler receives for a call with args, as
// the agent SDK does: encoded as on the wire, then decoded. A trailing
// rpc.Kwargs holds the keyword arguments.
func request(t testing.TB, method string, args ...any) *rpc.Request {
	t.Helper()
	var kw map[string]any
	if n := len(args); n > 0 {
		if k, ok := args[n-1].(rpc.Kwargs); ok {
			kw, args = k, args[:n-1]
		}
	}
	payload, err := codec.EncodeCall(args, kw)
	require.NoError(t, err)
	c, err := codec.DecodeCall(payload)
	require.NoError(t, err)
	req := &rpc.Request{Method: method}
	for _, a := range c.Args {
		req.Args = append(req.Args, rpc.Raw(a))
	}
	if c.Kwargs != nil {
		req.Kwargs = map[string]rpc.Raw{}
		for k, v := range c.Kwargs {
			req.Kwargs[k] = rpc.Raw(v)
		}
	}
	return req
}

func serve(t *testing.T, h rpc.Handler, args ...any) (any, error) {
	t.Helper()
	return h.ServeRPC(context.Background(), request(t, "m", args...))
}

type forecastArgs struct {
	City  string `msgpack:"city"`
	Days  int    `msgpack:"days"`
	Units string
	note  string // unexported fields are not parameters
	Skip  string `msgpack:"-"`
}

func TestFunc_BindsStructByPositionAndKeyword(t *testing.T) {
	h := rpc.Func(func(ctx context.Context, a forecastArgs) (forecastArgs, error) { return a, nil })
	assert.Equal(t, []string{"city", "days", "Units"}, h.(rpc.ParamNamer).ParamNames())
	v, err := serve(t, h, "Paris", rpc.Kwargs{"days": 3, "Units": "C"})
	require.NoError(t, err)
	assert.Equal(t, forecastArgs{City: "Paris", Days: 3, Units: "C"}, v)
	for _, bad := range [][]any{
		{"Paris", 1, "C", "extra"},
		{rpc.Kwargs{"nope": 1}},
		{"Paris", rpc.Kwargs{"city": "Rome"}},
		{1},
	} {
		_, err := serve(t, h, bad...)
		assert.ErrorIs(t, err, rpc.ErrInvalidArgs, "args %v", bad)
	}
}

func TestFunc_RefusesAMissingOrNullArgumentNamingIt(t *testing.T) {
	type setpoint struct {
		Value float64 `msgpack:"value"`
	}
	h := rpc.Func(func(ctx context.Context, a setpoint) (float64, error) { return a.Value, nil })
	req := request(t, "set_setpoint")
	_, err := h.ServeRPC(context.Background(), req)
	require.ErrorIs(t, err, rpc.ErrInvalidArgs)
	assert.Equal(t, "rpc: invalid_args: set_setpoint: value: want a number, got nothing", err.Error())

	_, err = h.ServeRPC(context.Background(), request(t, "set_setpoint", nil))
	require.ErrorIs(t, err, rpc.ErrInvalidArgs)
	assert.Contains(t, err.Error(), "set_setpoint: value: want a number, got null")

	_, err = h.ServeRPC(context.Background(), request(t, "set_setpoint", rpc.Kwargs{"value": nil}))
	assert.ErrorContains(t, err, "value: want a number, got null")
}

func TestFunc_OptionalParametersArePointersOrOmitempty(t *testing.T) {
	type args struct {
		City  string  `msgpack:"city"`
		Days  *int    `msgpack:"days"`
		Units string  `msgpack:"units,omitempty"`
		Scale float64 `msgpack:"scale,omitempty"`
	}
	h := rpc.Func(func(ctx context.Context, a args) (string, error) {
		return fmt.Sprintf("%s %v %q %v", a.City, a.Days, a.Units, a.Scale), nil
	})
	v, err := serve(t, h, "oslo")
	require.NoError(t, err)
	assert.Equal(t, `oslo <nil> "" 0`, v)
	_, err = serve(t, h, rpc.Kwargs{"days": 2})
	assert.ErrorContains(t, err, "m: city: want a string, got nothing")
}

func TestFunc_WrongTypeSaysWhatWasExpectedWithoutCodecInternals(t *testing.T) {
	type setpoint struct {
		Value float32 `msgpack:"value"`
		Zone  int     `msgpack:"zone"`
	}
	h := rpc.Func(func(ctx context.Context, a setpoint) (float32, error) { return a.Value, nil })
	_, err := h.ServeRPC(context.Background(), request(t, "set_setpoint", "warm", 1))
	require.ErrorIs(t, err, rpc.ErrInvalidArgs)
	assert.Equal(t, "rpc: invalid_args: set_setpoint: value: want a number, got a string", err.Error())
	assert.NotContains(t, err.Error(), "code=")

	_, err = h.ServeRPC(context.Background(), request(t, "set_setpoint", 1.5, 2.5))
	assert.ErrorContains(t, err, "zone: want an integer, got a number")

	single := rpc.Func(func(ctx context.Context, on bool) (bool, error) { return on, nil })
	_, err = single.ServeRPC(context.Background(), request(t, "switch", "yes"))
	assert.ErrorContains(t, err, "switch: argument: want a boolean, got a string")
}

// TestFunc_AnIntegerOutOfItsParametersRangeIsInvalid: the codec wraps an
// integer that does not fit (-1 into a uint64, 300 into a uint8); the
// handler refuses it, wherever the integer is.
func TestFunc_AnIntegerOutOfItsParametersRangeIsInvalid(t *testing.T) {
	u8 := rpc.Func(func(ctx context.Context, n uint8) (uint8, error) { return n, nil })
	_, err := serve(t, u8, 300)
	require.ErrorIs(t, err, rpc.ErrInvalidArgs)
	assert.ErrorContains(t, err, "argument: want uint8, got 300, out of the range of uint8")
	v, err := serve(t, u8, 255)
	require.NoError(t, err)
	assert.Equal(t, uint8(255), v)

	u64 := rpc.Func(func(ctx context.Context, n uint64) (uint64, error) { return n, nil })
	_, err = serve(t, u64, -1)
	assert.ErrorContains(t, err, "want uint64, got -1, out of the range of uint64")
	v, err = serve(t, u64, uint64(1<<63))
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<63), v)

	i64 := rpc.Func(func(ctx context.Context, n int64) (int64, error) { return n, nil })
	_, err = serve(t, i64, uint64(1<<63))
	assert.ErrorContains(t, err, "want int64, got 9223372036854775808, out of the range of int64")

	type zone struct {
		ID    int8     `msgpack:"id"`
		Slots []uint16 `msgpack:"slots"`
		Floor *int8    `msgpack:"floor"`
	}
	z := rpc.Func(func(ctx context.Context, a zone) (int8, error) { return a.ID, nil })
	_, err = serve(t, z, 300, []int{1}, 1)
	assert.ErrorContains(t, err, "id: want int8, got 300, out of the range of int8")
	_, err = serve(t, z, 1, []int{1, 70000}, 1)
	assert.ErrorContains(t, err, "slots: want []uint16, got 70000, out of the range of uint16")
	_, err = serve(t, z, 1, []int{1}, -129)
	assert.ErrorContains(t, err, "floor: want *int8, got -129, out of the range of int8")
	_, err = serve(t, z, -128, []int{65535}, 127)
	assert.NoError(t, err)
}

func TestFunc_SingleParameterTakesItsDeclaredKeywordOnly(t *testing.T) {
	h := rpc.Func(func(ctx context.Context, s string) (string, error) { return s + "!", nil })
	req := request(t, "greet", rpc.Kwargs{"name": "kw"})
	_, err := h.ServeRPC(context.Background(), req)
	assert.ErrorContains(t, err, `greet: takes one positional argument, got keyword "name"`)

	req = request(t, "greet", rpc.Kwargs{"name": "kw"})
	req.Params = []string{"name"}
	v, err := h.ServeRPC(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, "kw!", v)

	req = request(t, "greet", rpc.Kwargs{"nmae": "kw"})
	req.Params = []string{"name"}
	_, err = h.ServeRPC(context.Background(), req)
	assert.ErrorContains(t, err, `greet: unknown keyword argument "nmae" (parameter: name)`)

	_, err = h.ServeRPC(context.Background(), request(t, "greet"))
	assert.ErrorContains(t, err, "greet: argument: want a string, got nothing")
}

func TestFunc_BindsPointerToStruct(t *testing.T) {
	h := rpc.Func(func(ctx context.Context, a *forecastArgs) (string, error) { return a.City, nil })
	v, err := serve(t, h, rpc.Kwargs{"city": "Oslo", "days": 1, "Units": "C"})
	require.NoError(t, err)
	assert.Equal(t, "Oslo", v)
}

func TestFunc_BindsSliceMapSingleAndNone(t *testing.T) {
	sum := rpc.Func(func(ctx context.Context, xs []float64) (float64, error) {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s, nil
	})
	v, err := serve(t, sum, 1, 2.5, 3)
	require.NoError(t, err)
	assert.Equal(t, 6.5, v)
	_, err = serve(t, sum, rpc.Kwargs{"x": 1})
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs)
	_, err = serve(t, sum, 1, "two")
	assert.ErrorContains(t, err, "argument 2: want a number, got a string")

	kw := rpc.Func(func(ctx context.Context, m map[string]int) (int, error) { return m["a"] + m["b"], nil })
	v, err = serve(t, kw, rpc.Kwargs{"a": 1, "b": 2})
	require.NoError(t, err)
	assert.Equal(t, 3, v)
	_, err = serve(t, kw, 1)
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs)

	kwargs := rpc.Func(func(ctx context.Context, m rpc.Kwargs) (int, error) { return len(m), nil })
	v, err = serve(t, kwargs, rpc.Kwargs{"a": 1, "b": "x"})
	require.NoError(t, err)
	assert.Equal(t, 2, v)

	single := rpc.Func(func(ctx context.Context, s string) (string, error) { return s + "!", nil })
	v, err = serve(t, single, "hi")
	require.NoError(t, err)
	assert.Equal(t, "hi!", v)
	_, err = serve(t, single, "a", "b")
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs)

	optional := rpc.Func(func(ctx context.Context, s *string) (bool, error) { return s == nil, nil })
	v, err = serve(t, optional)
	require.NoError(t, err)
	assert.Equal(t, true, v)

	none := rpc.Func(func(ctx context.Context, _ struct{}) (string, error) { return "ok", nil })
	v, err = serve(t, none)
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
	_, err = serve(t, none, 1)
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs)
}

func TestFunc_HandlerSeesCaller(t *testing.T) {
	h := rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
		c, ok := rpc.CallerFrom(ctx)
		if !ok {
			return "", errors.New("no caller")
		}
		return c.UserID + "/" + c.Identity, nil
	})
	ctx := rpc.WithCaller(context.Background(), rpc.Principal{UserID: "alice", Identity: "a1"})
	v, err := h.ServeRPC(ctx, &rpc.Request{Method: "m"})
	require.NoError(t, err)
	assert.Equal(t, "alice/a1", v)
	_, ok := rpc.CallerFrom(context.Background())
	assert.False(t, ok, "caller outside a handler")
}

// TestWithCaller_BehavesAsAContextValue checks the caller context under
// contexts derived from it, the values of the contexts it derives from, and
// cancellation through it.
func TestWithCaller_BehavesAsAContextValue(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "below"))
	ctx := rpc.WithCaller(parent, rpc.Principal{UserID: "alice", Identity: "a1"})
	derived, stop := context.WithCancel(context.WithValue(ctx, key{}, "above"))
	defer stop()
	c, ok := rpc.CallerFrom(derived)
	require.True(t, ok)
	assert.Equal(t, rpc.Principal{UserID: "alice", Identity: "a1"}, c)
	assert.Equal(t, "below", ctx.Value(key{}))
	inner := rpc.WithCaller(derived, rpc.Principal{UserID: "bobby", Identity: "b1"})
	c, _ = rpc.CallerFrom(inner)
	assert.Equal(t, "bobby", c.UserID, "the innermost caller wins")
	cancel()
	select {
	case <-derived.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the parent did not reach through the caller context")
	}
	assert.True(t, strings.Contains(fmt.Sprint(ctx), "WithCaller(a1 (alice))"), fmt.Sprint(ctx))
}

func TestError_IsAndAsWithAccessors(t *testing.T) {
	e := rpc.NewError(rpc.CodeUnauthorized, "nope").WithData("missing", []any{"can_read_temp"}).WithCall("weather", "temperature")
	wrapped := fmt.Errorf("checking weather: %w", e)
	assert.ErrorIs(t, wrapped, rpc.ErrUnauthorized)
	assert.NotErrorIs(t, wrapped, rpc.ErrNotFound)
	var got *rpc.Error
	require.ErrorAs(t, wrapped, &got)
	assert.Equal(t, rpc.CodeUnauthorized, got.Code())
	assert.Equal(t, []string{"can_read_temp"}, got.Missing())
	assert.Equal(t, "weather", got.Peer())
	assert.Equal(t, "temperature", got.Method())
	assert.Equal(t, "nope", got.Message())
	assert.Equal(t, "rpc: weather.temperature: unauthorized: nope", got.Error())
	got.WithCall("other", "m")
	assert.Equal(t, "weather", got.Peer(), "WithCall keeps the first call named")
	d := got.Data()
	d["missing"] = "changed"
	assert.Equal(t, []string{"can_read_temp"}, got.Missing(), "Data returns a copy")

	timeout := rpc.NewError(rpc.CodeTimeout, "late").WithCause(context.DeadlineExceeded)
	assert.ErrorIs(t, timeout, rpc.ErrTimeout)
	assert.ErrorIs(t, timeout, context.DeadlineExceeded)
	wrappedCause := rpc.Errorf(rpc.CodeInternal, "result: %w", rpc.ErrResultType)
	assert.ErrorIs(t, wrappedCause, rpc.ErrInternal)
	assert.ErrorIs(t, wrappedCause, rpc.ErrResultType)
}

func TestCodeOf_IsDeterministic(t *testing.T) {
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
		assert.Equal(t, tc.want, rpc.CodeOf(tc.err), "CodeOf(%v)", tc.err)
	}
	// An error that matches two sentinels gets the same code every time.
	both := errors.Join(rpc.ErrTimeout, rpc.ErrUnauthorized)
	for range 100 {
		require.Equal(t, rpc.CodeUnauthorized, rpc.CodeOf(both))
	}
}

func TestFromError(t *testing.T) {
	assert.Nil(t, rpc.FromError(nil))
	e := rpc.FromError(errors.New("disk full"))
	assert.Equal(t, rpc.CodeApplication, e.Code())
	assert.Equal(t, "disk full", e.Message())
	own := rpc.NewError(rpc.CodeInvalidArgs, "bad city")
	assert.Same(t, own, rpc.FromError(fmt.Errorf("x: %w", own)))
	assert.Equal(t, rpc.CodeNotFound, rpc.FromError(fmt.Errorf("lookup: %w", rpc.ErrNotFound)).Code())
}

func TestCode_String(t *testing.T) {
	assert.Equal(t, "unauthorized", rpc.CodeUnauthorized.String())
	assert.Equal(t, "code_999", rpc.Code(999).String())
}

func TestNewExport_AllOfOptions(t *testing.T) {
	e := rpc.NewExport("temperature", rpc.Allow("can_read_temp"), rpc.Allow("can_read_weather", "can_read_temp"),
		rpc.AllowRoles("admin"), rpc.Params("city"))
	assert.Equal(t, rpc.Export{Name: "temperature", Capabilities: []string{"can_read_temp", "can_read_weather"},
		Roles: []string{"admin"}, Params: []string{"city"}}, e)
	e = rpc.NewExport("open")
	assert.NotNil(t, e.Capabilities)
	assert.NotNil(t, e.Roles)
	assert.NotNil(t, e.Params)
}

func TestRaw_DecodesAndPassesThrough(t *testing.T) {
	inner, err := codec.Marshal(map[string]int{"x": 1})
	require.NoError(t, err)
	outer, err := codec.Marshal([]any{rpc.Raw(inner), "y"})
	require.NoError(t, err)
	var back []rpc.Raw
	require.NoError(t, codec.Unmarshal(outer, &back))
	require.Len(t, back, 2)
	var m map[string]int
	require.NoError(t, back[0].Decode(&m))
	assert.Equal(t, 1, m["x"])
}

func TestPrincipal_String(t *testing.T) {
	assert.Equal(t, "weather (wx)", rpc.Principal{UserID: "wx", Identity: "weather", Key: keys.Key{1}}.String())
}

func BenchmarkFunc_BindStruct(b *testing.B) {
	h := rpc.Func(func(ctx context.Context, a forecastArgs) (string, error) { return a.City, nil })
	req := request(b, "forecast", "Paris", 3, rpc.Kwargs{"Units": "C"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.ServeRPC(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// ZoneRef is embedded by pointer below; such a type must be exported for
// the binder to allocate it (as encoding/json requires).
type ZoneRef struct {
	Zone string `msgpack:"zone"`
}

type stationRef struct {
	ID   int    `msgpack:"id"`
	Name string `msgpack:"name"` // hidden by the outer name
}

// TestFunc_BindsTheFieldsOfEmbeddedStructsAsMsgpackInlinesThem: a struct
// with embedded structs, passed as itself, travels with their fields
// inlined; the handler takes it, by keyword or in declaration order.
func TestFunc_BindsTheFieldsOfEmbeddedStructsAsMsgpackInlinesThem(t *testing.T) {
	type req struct {
		stationRef
		*ZoneRef
		Name string `msgpack:"name"`
	}
	h := rpc.Func(func(ctx context.Context, r req) (string, error) {
		return fmt.Sprintf("%d %s %s", r.ID, r.Zone, r.Name), nil
	})
	assert.Equal(t, []string{"id", "zone", "name"}, h.(rpc.ParamNamer).ParamNames())
	v, err := serve(t, h, req{stationRef{ID: 7}, &ZoneRef{"north"}, "boiler"})
	require.NoError(t, err)
	assert.Equal(t, "7 north boiler", v)
	v, err = serve(t, h, 8, "south", "pump")
	require.NoError(t, err)
	assert.Equal(t, "8 south pump", v)
}
