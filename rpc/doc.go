// Package rpc holds what capbus callers and callees share: the options an
// exported method declares (Allow, AllowRoles), typed handlers (Func), the
// caller stamped by the platform (CallerFrom), the error model (Code, *Error
// and sentinels such as ErrUnauthorized) and the msgpack codec of calls.
//
// An agent exports a method like this:
//
//	a.Export("temperature", rpc.Func(temperature), rpc.Allow("can_read_temp"))
//
// and a caller branches on failures with errors.Is and errors.As:
//
//	_, err := a.Call(ctx, "weather", "temperature")
//	if errors.Is(err, rpc.ErrUnauthorized) {
//		var e *rpc.Error
//		errors.As(err, &e)
//		fmt.Println("missing:", e.Missing())
//	}
package rpc
