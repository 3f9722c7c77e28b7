package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/rpc"
)

func newAuthExplainCommand(g *globals, ed func() *authEditor) *cobra.Command {
	var call, identity string
	var caps, roles, params []string
	var args []string
	var offline bool
	cmd := &cobra.Command{
		Use:   "explain USER [--call IDENTITY.METHOD]",
		Short: "Explain what a user may do, or why a call would be allowed or refused",
		Long: `explain judges from the file (auth.json, or --file): a change is explained before it
is made.

Without --call it lists what USER may do: effective capabilities and roles with where
each comes from (direct grant, role, group, capability group, "*"), and what a negation,
a site limit or agent narrowing removed.

With --call IDENTITY.METHOD it judges that call the way the platform would. What the
agent declares in its code (rpc.Allow, rpc.AllowRoles, its parameter names) is taken
from the running platform when one is reachable with the CLI's key (for at most 3 s)
and the agent is connected; otherwise a note says so and only auth.json's own rules
count. --capabilities, --roles and --params add to the declaration (use them with
--offline to judge an agent that is not running). Exit code 3 means the call would be
refused.`,
		Example: `  capbus auth explain alice
  capbus auth explain bobby --call weather.temperature
  capbus auth explain ops --call weather.set_units --identity ops-console
  capbus auth explain bobby --call weather.forecast --offline --capabilities can_read_temp,can_read_weather_data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			e := ed()
			f, err := e.load()
			if err != nil {
				return err
			}
			pol, err := f.Compile(e.path)
			if err != nil {
				return err
			}
			user := a[0]
			i, err := findEntry(f, user)
			if err != nil {
				return err
			}
			id := identity
			if id == "" {
				id = claimedIdentity(f.Allow[i])
			}
			subj, err := pol.Subject(rpc.Principal{UserID: user, Identity: id})
			if errors.Is(err, auth.ErrDisabled) || errors.Is(err, auth.ErrDenied) {
				return withCode(exitRefused, fmt.Errorf("refused: %w", err)) // the entry exists; the platform refuses it
			}
			if err != nil {
				return withCode(exitNotFound, err)
			}
			claim := pol.CheckIdentity(user, id)
			if call == "" {
				if claim != nil {
					fmt.Fprintf(g.stderr, "note: as identity %q: %v\n", id, claim)
				}
				printPermissions(g, pol.Permissions(subj))
				return nil
			}
			// An identity may hold dots (platform.driver); a method does not.
			dot := strings.LastIndexByte(call, '.')
			if dot <= 0 || dot == len(call)-1 {
				return &usageError{fmt.Sprintf("--call %q: want IDENTITY.METHOD, e.g. weather.temperature", call)}
			}
			callee, method := call[:dot], call[dot+1:]
			if claim != nil {
				return withCode(exitRefused, fmt.Errorf("refused: the platform would not admit this caller: %w (--identity chooses another)", claim))
			}
			declared := auth.Declared{Capabilities: caps, Roles: roles, Params: params}
			if !offline {
				if err := declaredByPlatform(cmd.Context(), g, callee, method, &declared); err != nil {
					return err
				}
			}
			req := pol.Requirement(rpc.Principal{UserID: calleeUser(f, callee), Identity: callee}, method, declared)
			var named map[string]any
			if len(args) > 0 {
				named = map[string]any{}
				for _, kv := range args {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return &usageError{fmt.Sprintf("--arg %q: want NAME=VALUE", kv)}
					}
					named[k] = v
				}
			}
			d := pol.Decide(subj, req, named)
			fmt.Fprintln(g.stdout, d.Explanation().String())
			for _, r := range req.Roles() {
				if w := pol.RoleWarning(r, call); w != "" {
					fmt.Fprintf(g.stderr, "warning: %s\n", w)
				}
			}
			if !d.Allowed {
				return withCode(exitRefused, fmt.Errorf("refused: %s", d.Reason()))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&call, "call", "", "judge a call of IDENTITY.METHOD")
	fl.StringVar(&identity, "identity", "", "the caller's agent identity (default: the one the entry may claim, else the user id)")
	fl.StringSliceVar(&caps, "capabilities", nil, "capabilities the method declares in code (rpc.Allow), added to what the platform reports")
	fl.StringSliceVar(&roles, "roles", nil, "roles the method declares in code (rpc.AllowRoles), added to what the platform reports")
	fl.StringSliceVar(&params, "params", nil, "the method's positional parameter names (default: from the platform)")
	fl.StringArrayVar(&args, "arg", nil, "a named call argument NAME=VALUE, for parameter restrictions (repeatable)")
	fl.BoolVar(&offline, "offline", false, "do not ask a running platform what the agent declares")
	return cmd
}

// declaredByPlatform adds to d what the connected agent callee declares
// for method, as the platform reports it (capbus describe). When no
// platform or agent can be asked it writes a note on stderr and leaves d
// as it is; a method the connected agent does not export is "not found".
func declaredByPlatform(ctx context.Context, g *globals, callee, method string, d *auth.Declared) error {
	a, stop, why := probe(ctx, g)
	if a == nil {
		fmt.Fprintf(g.stderr, "note: no platform asked (%s): what %s declares in code for %s is not known; judging auth.json's rules and --capabilities/--roles only\n", why, callee, method)
		return nil
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	desc, err := a.Describe(ctx, callee)
	if err != nil {
		fmt.Fprintf(g.stderr, "note: the platform at %s could not describe %s (%v): judging auth.json's rules and --capabilities/--roles only\n", g.address, callee, err)
		return nil
	}
	names := make([]string, 0, len(desc.Methods))
	for _, m := range desc.Methods {
		names = append(names, m.Name)
		if m.Name != method {
			continue
		}
		d.Capabilities = append(d.Capabilities, m.DeclaredCapabilities...)
		d.Roles = append(d.Roles, m.DeclaredRoles...)
		if len(d.Params) == 0 {
			d.Params = m.Params
		}
		fmt.Fprintf(g.stderr, "note: %s.%s declares capabilities [%s] and roles [%s] (from the platform at %s)\n",
			callee, method, strings.Join(m.DeclaredCapabilities, ", "), strings.Join(m.DeclaredRoles, ", "), g.address)
		return nil
	}
	return withCode(exitNotFound, fmt.Errorf("%s does not export %s; it exports: %s", callee, method, strings.Join(names, ", ")))
}

// calleeUser finds the user whose entry binds identity, for conditions such
// as "self"; "" when no entry names it.
func calleeUser(f *auth.File, identity string) string {
	for _, e := range f.Allow {
		if e.Identity == identity {
			return e.UserID
		}
		for _, id := range e.Identities {
			if id == identity {
				return e.UserID
			}
		}
	}
	return ""
}

func printPermissions(g *globals, p auth.Permissions) {
	fmt.Fprintf(g.stdout, "user %s (identity %s), policy generation %d\n", p.UserID, p.Identity, p.Generation)
	if p.Narrowed {
		fmt.Fprintln(g.stdout, "this identity's grants are narrowed by the entry's \"agents\"")
	}
	section := func(title string, grants []auth.Grant) {
		fmt.Fprintf(g.stdout, "%s:\n", title)
		if len(grants) == 0 {
			fmt.Fprintln(g.stdout, "  (none)")
		}
		for _, gr := range grants {
			src := make([]string, len(gr.Sources))
			for i, s := range gr.Sources {
				src[i] = s.String()
			}
			extra := ""
			if gr.Restricted {
				extra = " (with parameter restrictions)"
			}
			fmt.Fprintf(g.stdout, "  %s%s  <- %s\n", gr.Name, extra, strings.Join(src, "; "))
		}
	}
	section("capabilities", p.Capabilities)
	section("roles", p.Roles)
	if len(p.Removed) > 0 {
		fmt.Fprintln(g.stdout, "removed:")
		for _, r := range p.Removed {
			by := make([]string, len(r.By))
			for i, s := range r.By {
				by[i] = s.String()
			}
			fmt.Fprintf(g.stdout, "  %s by %s (%s)\n", r.Name, r.Cause, strings.Join(by, "; "))
		}
	}
}

// claimedIdentity is the identity a caller of entry e claims unless told
// otherwise: the entry's exact identity, else the first exact one of its
// identities, else its user id.
func claimedIdentity(e auth.Entry) string {
	exact := func(s string) bool { return s != "" && !(len(s) > 1 && s[0] == '/' && s[len(s)-1] == '/') }
	if exact(e.Identity) {
		return e.Identity
	}
	for _, id := range e.Identities {
		if exact(id) {
			return id
		}
	}
	return e.UserID
}
