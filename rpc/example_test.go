package rpc_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/capbus/capbus/rpc"
)

// A handler is an ordinary typed function. With a struct argument, callers
// may pass the fields by position or by keyword.
func ExampleFunc() {
	type Place struct {
		City string `msgpack:"city"`
		Days int    `msgpack:"days"`
	}
	forecast := rpc.Func(func(ctx context.Context, p Place) (string, error) {
		caller, _ := rpc.CallerFrom(ctx)
		return fmt.Sprintf("%s asked for %d days in %s", caller.UserID, p.Days, p.City), nil
	})

	// What the agent does with an incoming call ("Paris", days=3):
	req := &rpc.Request{Method: "forecast",
		Args:   []rpc.Raw{{0xa5, 'P', 'a', 'r', 'i', 's'}}, // "Paris" in msgpack
		Kwargs: map[string]rpc.Raw{"days": {0x03}}}         // 3
	ctx := rpc.WithCaller(context.Background(), rpc.Principal{UserID: "alice", Identity: "alice.ui"})
	result, err := forecast.ServeRPC(ctx, req)
	fmt.Println(result, err)
	fmt.Println(forecast.(rpc.ParamNamer).ParamNames())
	// Output:
	// alice asked for 3 days in Paris <nil>
	// [city days]
}

// Export options declare what a caller must hold: all of the capabilities
// and all of the roles.
func ExampleAllow() {
	e := rpc.NewExport("temperature",
		rpc.Allow("can_read_temp", "can_read_weather_data"),
		rpc.AllowRoles("operator"))
	fmt.Println(e.Name, e.Capabilities, e.Roles)
	// Output: temperature [can_read_temp can_read_weather_data] [operator]
}

// Callers branch on the kind of failure with errors.Is, and read the
// details with errors.As.
func ExampleError() {
	// An error as Agent.Call returns it when a capability is missing.
	var err error = rpc.NewError(rpc.CodeUnauthorized,
		`method "temperature" of "weather" requires capabilities [can_read_temp], but capabilities [] were provided; missing [can_read_temp]`).
		WithData("required", []string{"can_read_temp"}).
		WithData("missing", []string{"can_read_temp"})

	if errors.Is(err, rpc.ErrUnauthorized) {
		var e *rpc.Error
		errors.As(err, &e)
		fmt.Println("code:", e.Code(), int(e.Code()))
		fmt.Println("missing:", e.Missing())
	}
	// Output:
	// code: unauthorized 13
	// missing: [can_read_temp]
}

// A handler returns an *rpc.Error to choose the code its caller sees; any
// other error reaches the caller as CodeApplication.
func ExampleFromError() {
	fmt.Println(rpc.FromError(errors.New("sensor offline")).Code())
	fmt.Println(rpc.FromError(rpc.Errorf(rpc.CodeInvalidArgs, "no city %q", "Atlantis")))
	// Output:
	// application
	// rpc: invalid_args: no city "Atlantis"
}
