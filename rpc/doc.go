// Package rpc holds what capbus callers and callees share: the declaration
// of an exported method (Export, with the options Allow, AllowRoles and
// Params), typed handlers (Handler, Func), who a peer is (Principal, and
// CallerFrom for the caller of a handler), the error model (Code, *Error
// and one sentinel per code such as ErrUnauthorized), and the values that
// travel still encoded (Raw, Kwargs).
//
// The agent SDK, github.com/capbus/capbus/agent, uses it on both sides of a
// call; the platform uses its codes and errors.
//
// # Exporting
//
// A handler is an ordinary typed function wrapped by Func; the options say
// what a caller must hold, all of it, like VOLTTRON's @RPC.allow:
//
//	type Place struct {
//		City string `msgpack:"city"`
//		Days int    `msgpack:"days"`
//	}
//	forecast := func(ctx context.Context, p Place) ([]float64, error) {
//		caller, _ := rpc.CallerFrom(ctx) // as the platform authenticated it
//		...
//	}
//	a.Export("forecast", rpc.Func(forecast), rpc.Allow("can_read_temp"), rpc.AllowRoles("operator"))
//
// The argument type decides how a call's arguments bind: a struct takes
// positional arguments in field order and keyword arguments by name (and
// names the method's parameters for auth.json parameter restrictions); a
// slice takes all positional arguments (variadic); a map with string keys,
// such as Kwargs, takes all keyword arguments; struct{} takes none; any
// other type takes exactly one argument. Binding is strict: a missing or
// null argument (unless optional: a pointer, or a msgpack tag with
// omitempty), an unknown keyword, a value of the wrong type or an integer
// out of its parameter's range (300 for a uint8) is an *Error with
// CodeInvalidArgs naming the parameter, what was expected and what came,
// before the function runs.
//
// # Calling and errors
//
// Positional arguments follow the method name; a trailing Kwargs carries
// keyword arguments:
//
//	a.Call(ctx, "weather", "forecast", "Paris", rpc.Kwargs{"days": 3})
//
// Every failure a caller sees is an *Error whose Code says what went wrong.
// Branch with errors.Is on the sentinels, read details with errors.As:
//
//	_, err := a.Call(ctx, "weather", "forecast", "Paris")
//	switch {
//	case errors.Is(err, rpc.ErrUnauthorized):
//		var e *rpc.Error
//		errors.As(err, &e)
//		fmt.Println("missing:", e.Missing(), "code:", e.Code())
//	case errors.Is(err, rpc.ErrNoRoute):
//		fmt.Println("weather is not connected")
//	}
//
// A handler's own error reaches the caller as CodeApplication with the
// error's text; a handler that returns an *Error chooses the code and data
// (see FromError). A handler's panic reaches the caller as CodeInternal.
//
// # Wire format
//
// Call arguments travel as one msgpack array [args, kwargs]; results,
// published values and error data as one msgpack value each; error replies
// as a map {code, message, data}. docs/PROTOCOL.md is the contract.
package rpc
