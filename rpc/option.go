package rpc

// Export is what an exported method declares to the platform: the
// capabilities and roles a caller must all hold, and the names of its
// parameters (used by parameter restrictions in auth.json).
//
// On the wire (the EXPORT map of docs/PROTOCOL.md) every list is present,
// empty rather than nil.
type Export struct {
	// Name is the method name callers use.
	Name string `msgpack:"name"`
	// Capabilities must all be held by the caller.
	Capabilities []string `msgpack:"capabilities"`
	// Roles must all be held by the caller.
	Roles []string `msgpack:"roles"`
	// Params are the positional parameter names.
	Params []string `msgpack:"params"`
}

// ExportOption configures an exported method: Allow, AllowRoles, Params.
type ExportOption interface {
	applyExport(*Export)
}

type exportOptionFunc func(*Export)

func (f exportOptionFunc) applyExport(e *Export) { f(e) }

// Allow requires the caller to hold every one of caps (all-of), like
// VOLTTRON's @RPC.allow.
func Allow(caps ...string) ExportOption {
	return exportOptionFunc(func(e *Export) { e.Capabilities = appendUnique(e.Capabilities, caps) })
}

// AllowRoles requires the caller to hold every one of roles (all-of).
func AllowRoles(roles ...string) ExportOption {
	return exportOptionFunc(func(e *Export) { e.Roles = appendUnique(e.Roles, roles) })
}

// Params names the method's positional parameters, so that keyword
// arguments and auth.json parameter restrictions can refer to them. Handlers
// built with Func on a struct argument name their parameters themselves.
func Params(names ...string) ExportOption {
	return exportOptionFunc(func(e *Export) { e.Params = append([]string{}, names...) })
}

// NewExport builds the declaration of method name from opts.
func NewExport(name string, opts ...ExportOption) Export {
	e := Export{Name: name, Capabilities: []string{}, Roles: []string{}, Params: []string{}}
	for _, o := range opts {
		if o != nil {
			o.applyExport(&e)
		}
	}
	return e
}

func appendUnique(dst, src []string) []string {
	for _, s := range src {
		dup := false
		for _, d := range dst {
			if d == s {
				dup = true
				break
			}
		}
		if !dup {
			dst = append(dst, s)
		}
	}
	return dst
}
