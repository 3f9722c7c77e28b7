package main

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/spf13/cobra"

	"github.com/capbus/capbus/auth"
)

func newAuthCheckCommand(g *globals, ed func() *authEditor) *cobra.Command {
	var offline bool
	cmd := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate an auth.json as the platform would, and warn about requirements nobody can meet",
		Long: `check validates an auth.json exactly as the platform does and prints the first error
as FILE:LINE:COLUMN: PATH: MESSAGE. It exits 0 when the file is valid.

It then warns (on stderr, exit code still 0) about roles that calls require but that no
entry holds, which makes every call of those methods refused:

  warning: role "admin" (required by weather.set_units) grants no capability in auth.json: ...

The requirements come from the file's "methods" rules and, when a platform is reachable
with the CLI's key (for at most 3 s), from what the connected agents declare in code
(rpc.AllowRoles). --offline skips the platform.`,
		Example: `  capbus auth check
  capbus auth check ./auth.json --offline`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ed().path
			if len(args) == 1 {
				path = args[0]
			}
			pol, err := auth.LoadFile(path)
			if err != nil {
				return err
			}
			f, err := (&authEditor{path: path}).load()
			if err != nil {
				return err
			}
			warnings, note := roleWarnings(cmd.Context(), g, pol, f, offline)
			fmt.Fprintf(g.stdout, "%s: ok\n", path)
			for _, w := range warnings {
				fmt.Fprintf(g.stderr, "warning: %s\n", w)
			}
			if note != "" {
				fmt.Fprintf(g.stderr, "note: %s\n", note)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "do not ask a running platform for the requirements its agents declare")
	return cmd
}

// roleWarnings lists the required roles pol lets nobody hold: those of
// the file's "methods" rules, and (unless offline) those the agents
// connected to the platform declare. note says why the platform was not
// asked.
func roleWarnings(ctx context.Context, g *globals, pol *auth.Policy, f *auth.File, offline bool) (warnings []string, note string) {
	add := func(w string) {
		if w != "" && !slices.Contains(warnings, w) {
			warnings = append(warnings, w)
		}
	}
	targets := make([]string, 0, len(f.Methods))
	for t := range f.Methods {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	for _, t := range targets {
		for _, r := range f.Methods[t].Roles {
			add(pol.RoleWarning(r, t))
		}
	}
	if offline {
		return warnings, ""
	}
	a, stop, why := probe(ctx, g)
	if a == nil {
		return warnings, "the roles that connected agents declare were not checked: " + why
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	peers, err := a.Peers(ctx)
	if err != nil {
		return warnings, "the roles that connected agents declare were not checked: " + err.Error()
	}
	for _, p := range peers {
		if p == a.Identity() {
			continue
		}
		d, err := a.Describe(ctx, p)
		if err != nil {
			continue // it left meanwhile
		}
		for _, m := range d.Methods {
			for _, r := range m.DeclaredRoles {
				add(pol.RoleWarning(r, p+"."+m.Name))
			}
		}
	}
	return warnings, ""
}
