package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/capbus/capbus/agent"
)

// methodJSON is one method in capbus describe --json.
type methodJSON struct {
	Name                 string   `json:"name"`
	Params               []string `json:"params"`
	Capabilities         []string `json:"capabilities"`
	Roles                []string `json:"roles"`
	DeclaredCapabilities []string `json:"declared_capabilities"`
	DeclaredRoles        []string `json:"declared_roles"`
	Allowed              bool     `json:"allowed"`
	Conditional          bool     `json:"conditional"`
	Missing              []string `json:"missing"`
	Reason               string   `json:"reason,omitempty"`
	Warnings             []string `json:"warnings"`
}

// describeJSON is the output of capbus describe --json.
type describeJSON struct {
	Identity   string       `json:"identity"`
	UserID     string       `json:"user_id"`
	Generation uint64       `json:"generation"`
	Methods    []methodJSON `json:"methods"`
}

func newDescribeCommand(g *globals, cf *clientFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "describe AGENT",
		Short: "List a connected agent's methods, what each requires, and whether you may call it",
		Long: `describe asks the platform about the connected agent AGENT: each method it exports, its
parameters, what a caller must hold (what the agent declares in code plus what auth.json
adds) and whether you, the CLI's key, may call it now, with what you are missing.
"conditional" means the decision depends on the call's arguments (a parameter
restriction). Warnings name requirements nobody can meet, such as a role that no
entry of auth.json holds.`,
		Example: `  capbus describe weather
  capbus describe weather --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				d, err := a.Describe(ctx, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return printDescriptionJSON(g, d)
				}
				printDescription(g, d)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the description as JSON")
	return cmd
}

func printDescriptionJSON(g *globals, d agent.Description) error {
	out := describeJSON{Identity: d.Identity, UserID: d.UserID, Generation: d.Generation, Methods: []methodJSON{}}
	for _, m := range d.Methods {
		out.Methods = append(out.Methods, methodJSON{Name: m.Name, Params: m.Params, Capabilities: m.Capabilities,
			Roles: m.Roles, DeclaredCapabilities: m.DeclaredCapabilities, DeclaredRoles: m.DeclaredRoles,
			Allowed: m.Allowed, Conditional: m.Conditional, Missing: m.Missing, Reason: m.Reason, Warnings: m.Warnings})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}

func printDescription(g *globals, d agent.Description) {
	fmt.Fprintf(g.stdout, "%s (user %s), policy generation %d\n", d.Identity, d.UserID, d.Generation)
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METHOD\tPARAMS\tREQUIRES\tYOU MAY CALL")
	var warnings []string
	for _, m := range d.Methods {
		req := append([]string(nil), m.Capabilities...)
		for _, r := range m.Roles {
			req = append(req, "role:"+r)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, dash(strings.Join(m.Params, ", ")), dash(strings.Join(req, ", ")), mayCall(m))
		warnings = append(warnings, m.Warnings...)
	}
	_ = tw.Flush()
	for _, w := range warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", w)
	}
}

// mayCall says whether the asker may call m, and what is missing if not.
func mayCall(m agent.MethodDescription) string {
	switch {
	case m.Allowed:
		return "yes"
	case m.Conditional:
		return "conditional: depends on the arguments (" + m.Reason + ")"
	case len(m.Missing) > 0:
		return "no: missing " + strings.Join(m.Missing, ", ")
	}
	return "no: " + m.Reason
}
