package rpc

// Export is what an exported method declares to the platform: the
// capabilities and roles a caller must all hold, and the names of its
// parameters (used by parameter restrictions in auth.json).
type Export struct {
	Name         string   `msgpack:"name"`
	Capabilities []string `msgpack:"capabilities,omitempty"`
	Roles        []string `msgpack:"roles,omitempty"`
	Params       []string `msgpack:"params,omitempty"`
}

// ExportOption configures an exported method.
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
	return exportOptionFunc(func(e *Export) { e.Params = append([]string(nil), names...) })
}

// NewExport builds the declaration of method name from opts.
func NewExport(name string, opts ...ExportOption) Export {
	e := Export{Name: name}
	for _, o := range opts {
		o.applyExport(&e)
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
