package rpc

// Export is what an exported method declares to the platform: the
// capabilities and roles a caller must all hold, and the names of its
// parameters (used by parameter restrictions in auth.json).
type Export struct {
	// Name is the method name callers use.
	Name string
	// Capabilities must all be held by the caller.
	Capabilities []string
	// Roles must all be held by the caller.
	Roles []string
	// Params are the positional parameter names.
	Params []string
	// Inline says that the handler never blocks, so the agent may run it on
	// the goroutine that receives calls (see Inline). It is not sent to the
	// platform.
	Inline bool
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
// built with Func on a struct argument name their parameters themselves;
// Params given for one must name them the same, in the same order (the
// agent's Export refuses others, since auth.json would then judge other
// values than the handler receives).
func Params(names ...string) ExportOption {
	return exportOptionFunc(func(e *Export) { e.Params = append([]string{}, names...) })
}

// Inline declares that the handler returns promptly and never blocks (no
// I/O, no lock held long, no call of another agent), so that the agent
// runs it on the goroutine that receives calls, without handing it to a
// worker, and sends the replies to the calls received together in one
// write. It is the fastest way to serve small, CPU-only methods. A handler
// exported Inline that blocks stops the agent from receiving anything until
// it returns.
func Inline() ExportOption {
	return exportOptionFunc(func(e *Export) { e.Inline = true })
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
