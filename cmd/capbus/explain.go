package main

import (
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
	cmd := &cobra.Command{
		Use:   "explain USER [--call IDENTITY.METHOD]",
		Short: "Explain what a user may do, or why a call would be allowed or refused",
		Long: `explain answers from the file alone, without a running platform.

Without --call it lists what USER may do: effective capabilities and roles with where
each comes from (direct grant, role, group, capability group, "*"), and what a negation,
a site limit or agent narrowing removed.

With --call IDENTITY.METHOD it judges that call the way the platform would. The
requirements an agent declares in its code (rpc.Allow, rpc.AllowRoles) are not in
auth.json: pass them with --capabilities and --roles; what auth.json itself adds for
the method is included automatically. Exit code 3 means the call would be refused.`,
		Example: `  capbus auth explain alice
  capbus auth explain bobby --call weather.temperature --capabilities can_read_temp
  capbus auth explain ops --call weather.set_units --roles admin --identity ops-console`,
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
			if _, err := findEntry(f, user); err != nil {
				return err
			}
			id := identity
			if id == "" {
				id = user
			}
			subj, err := pol.Subject(rpc.Principal{UserID: user, Identity: id})
			if err != nil {
				return withCode(exitNotFound, err)
			}
			if call == "" {
				printPermissions(g, pol.Permissions(subj))
				return nil
			}
			callee, method, ok := strings.Cut(call, ".")
			if !ok || callee == "" || method == "" {
				return &usageError{fmt.Sprintf("--call %q: want IDENTITY.METHOD, e.g. weather.temperature", call)}
			}
			req := pol.Requirement(rpc.Principal{UserID: calleeUser(f, callee), Identity: callee}, method, auth.Declared{Capabilities: caps, Roles: roles, Params: params})
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
			if !d.Allowed {
				return withCode(exitRefused, fmt.Errorf("refused: %s", d.Reason()))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&call, "call", "", "judge a call of IDENTITY.METHOD")
	fl.StringVar(&identity, "identity", "", "the caller's agent identity (default: the user id)")
	fl.StringSliceVar(&caps, "capabilities", nil, "capabilities the method declares in code (rpc.Allow)")
	fl.StringSliceVar(&roles, "roles", nil, "roles the method declares in code (rpc.AllowRoles)")
	fl.StringSliceVar(&params, "params", nil, "the method's positional parameter names")
	fl.StringArrayVar(&args, "arg", nil, "a named call argument NAME=VALUE, for parameter restrictions (repeatable)")
	return cmd
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
