package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/keys"
)

func newAuthCommand(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Read, edit, check and explain auth.json",
		Long: `auth reads and edits the platform's auth.json (default: auth.json in the home directory).

Every edit is validated before it is written (an edit that would make the file invalid
is refused and nothing changes), is atomic (a temporary file renamed over the old one;
the previous version is kept as auth.json.bak), and is locked against concurrent edits.
A running platform picks the change up within a second, without a restart.
See docs/AUTH.md for every key of the file.`,
		Example: `  capbus auth add alice --credentials "$(capbus keygen --out alice.json)" --grant can_read_temp
  capbus auth update bobby --grant can_read_temp
  capbus auth explain bobby --call weather.temperature --capabilities can_read_temp
  capbus auth check /etc/capbus/auth.json`,
	}
	cmd.PersistentFlags().StringVarP(&file, "file", "f", "", "auth.json to use (default: auth.json in --home)")
	ed := func() *authEditor {
		p := file
		if p == "" {
			p = g.authFile()
		}
		return &authEditor{path: p, notice: g.stderr, wait: lockTimeout}
	}
	cmd.AddCommand(
		newAuthListCommand(g, ed),
		newAuthShowCommand(g, ed),
		newAuthAddCommand(g, ed),
		newAuthUpdateCommand(g, ed),
		newAuthRemoveCommand(g, ed),
		newAuthEnableCommand(g, ed, true),
		newAuthEnableCommand(g, ed, false),
		newAuthNamedSetCommand(g, ed, "role", "roles", "capabilities", func(f *auth.File) *map[string][]string { return &f.Roles }),
		newAuthNamedSetCommand(g, ed, "group", "groups", "roles", func(f *auth.File) *map[string][]string { return &f.Groups }),
		newAuthNamedSetCommand(g, ed, "capgroup", "capability groups", "capabilities or capability groups", func(f *auth.File) *map[string][]string { return &f.CapabilityGroups }),
		newAuthCheckCommand(g, ed),
		newAuthExplainCommand(g, ed),
	)
	return cmd
}

func newAuthListCommand(g *globals, ed func() *authEditor) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the allow entries",
		Example: "  capbus auth list",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ed().load()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tENABLED\tIDENTITY\tCAPABILITIES\tROLES\tGROUPS\tKEY")
			for _, e := range f.Allow {
				ids := append([]string{e.Identity}, e.Identities...)
				fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%s\n", e.UserID, e.IsEnabled(), dash(strings.Join(nonEmpty(ids), ",")),
					dash(strings.Join(e.Capabilities.Names(), ",")), dash(strings.Join(e.Roles, ",")), dash(strings.Join(e.Groups, ",")), shortKey(e.Credentials))
			}
			return tw.Flush()
		},
	}
}

func newAuthShowCommand(g *globals, ed func() *authEditor) *cobra.Command {
	return &cobra.Command{
		Use:     "show USER",
		Short:   "Show one allow entry as JSON",
		Example: "  capbus auth show alice",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := ed().load()
			if err != nil {
				return err
			}
			i, err := findEntry(f, args[0])
			if err != nil {
				return err
			}
			out, err := json.MarshalIndent(f.Allow[i], "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, string(out))
			return nil
		},
	}
}

// entryFlags are the flags add and update share.
type entryFlags struct {
	credentials  string
	identity     string
	identities   []string
	capabilities []string
	grant        []string
	revoke       []string
	roles        []string
	groups       []string
	comments     string
	address      string
	disabled     bool
}

func (ef *entryFlags) register(cmd *cobra.Command, add bool) {
	fl := cmd.Flags()
	fl.StringVar(&ef.credentials, "credentials", "", "the agent's CURVE public key (Z85, or base64url as VOLTTRON writes it)")
	fl.StringVar(&ef.identity, "identity", "", "the agent identity this key may claim (exact, or /regex/)")
	fl.StringSliceVar(&ef.identities, "identities", nil, "more identities this key may claim (comma-separated)")
	fl.StringSliceVar(&ef.capabilities, "capabilities", nil, "set the capabilities (comma-separated; !cap negates)")
	fl.StringSliceVar(&ef.grant, "grant", nil, "add capabilities (comma-separated)")
	fl.StringSliceVar(&ef.roles, "roles", nil, "set the roles (comma-separated)")
	fl.StringSliceVar(&ef.groups, "groups", nil, "set the groups (comma-separated)")
	fl.StringVar(&ef.comments, "comments", "", "a comment for people")
	fl.StringVar(&ef.address, "address", "", "only admit this key from this address (exact, or /regex/)")
	if add {
		fl.BoolVar(&ef.disabled, "disabled", false, "add the entry disabled")
	} else {
		fl.StringSliceVar(&ef.revoke, "revoke", nil, "remove capabilities (comma-separated)")
	}
}

func (ef *entryFlags) apply(cmd *cobra.Command, e *auth.Entry) error {
	ch := cmd.Flags().Changed
	if ch("credentials") {
		k, err := keys.Parse(strings.TrimPrefix(ef.credentials, "CURVE:"))
		if err != nil {
			return &usageError{fmt.Sprintf("--credentials: %v", err)}
		}
		e.Credentials = k.Base64URL()
	}
	if ch("identity") {
		e.Identity = ef.identity
	}
	if ch("identities") {
		e.Identities = ef.identities
	}
	if ch("capabilities") {
		e.Capabilities = nil
		for _, c := range ef.capabilities {
			e.Capabilities = append(e.Capabilities, auth.Capability{Name: c})
		}
	}
	for _, c := range ef.grant {
		if !slices.Contains(e.Capabilities.Names(), c) {
			e.Capabilities = append(e.Capabilities, auth.Capability{Name: c})
		}
	}
	for _, c := range ef.revoke {
		i := slices.Index(e.Capabilities.Names(), c)
		if i < 0 {
			return withCode(exitNotFound, fmt.Errorf("user %q does not hold capability %q", e.UserID, c))
		}
		e.Capabilities = slices.Delete(e.Capabilities, i, i+1)
	}
	if ch("roles") {
		e.Roles = ef.roles
	}
	if ch("groups") {
		e.Groups = ef.groups
	}
	if ch("comments") {
		e.Comments = ef.comments
	}
	if ch("address") {
		e.Address = ef.address
	}
	if ch("disabled") && ef.disabled {
		f := false
		e.Enabled = &f
	}
	return nil
}

func newAuthAddCommand(g *globals, ed func() *authEditor) *cobra.Command {
	var ef entryFlags
	cmd := &cobra.Command{
		Use:   "add USER --credentials KEY",
		Short: "Add an allow entry for a user's key",
		Long: `add appends an allow entry: the key may connect as USER and gets the given grants.
The key is stored in base64url (VOLTTRON's form). A user id or key already in the file
is refused.`,
		Example: `  capbus auth add alice --credentials "$(capbus keygen --out alice.json)" --grant can_read_temp
  capbus auth add weather --credentials KEY --identity weather --roles admin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("credentials") {
				return &usageError{"add: --credentials is required (the agent's public key; see capbus keygen)"}
			}
			user := args[0]
			return ed().edit(func(f *auth.File) error {
				if _, err := findEntry(f, user); err == nil {
					return fmt.Errorf("add: user %q already has an entry; use capbus auth update", user)
				}
				e := auth.Entry{UserID: user}
				if err := ef.apply(cmd, &e); err != nil {
					return err
				}
				for _, o := range f.Allow {
					if sameKey(o.Credentials, e.Credentials) {
						return fmt.Errorf("add: key %s is already used by user %q", shortKey(e.Credentials), o.UserID)
					}
				}
				f.Allow = append(f.Allow, e)
				fmt.Fprintf(g.stdout, "added %s\n", user)
				return nil
			})
		},
	}
	ef.register(cmd, true)
	return cmd
}

func newAuthUpdateCommand(g *globals, ed func() *authEditor) *cobra.Command {
	var ef entryFlags
	cmd := &cobra.Command{
		Use:   "update USER",
		Short: "Change a user's entry: grant or revoke capabilities, set roles, groups, key",
		Example: `  capbus auth update bobby --grant can_read_temp
  capbus auth update bobby --revoke can_read_temp
  capbus auth update alice --roles admin,operator`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().NFlag() == 0 {
				return &usageError{"update: nothing to change; see capbus auth update --help"}
			}
			return ed().edit(func(f *auth.File) error {
				i, err := findEntry(f, args[0])
				if err != nil {
					return err
				}
				if err := ef.apply(cmd, &f.Allow[i]); err != nil {
					return err
				}
				for j, o := range f.Allow {
					if j != i && sameKey(o.Credentials, f.Allow[i].Credentials) {
						return fmt.Errorf("update: key %s is already used by user %q", shortKey(o.Credentials), o.UserID)
					}
				}
				fmt.Fprintf(g.stdout, "updated %s\n", args[0])
				return nil
			})
		},
	}
	ef.register(cmd, false)
	return cmd
}

func newAuthRemoveCommand(g *globals, ed func() *authEditor) *cobra.Command {
	return &cobra.Command{
		Use:     "remove USER",
		Short:   "Remove a user's entry; a running platform disconnects the user at once",
		Example: "  capbus auth remove bobby",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ed().edit(func(f *auth.File) error {
				i, err := findEntry(f, args[0])
				if err != nil {
					return err
				}
				f.Allow = slices.Delete(f.Allow, i, i+1)
				fmt.Fprintf(g.stdout, "removed %s\n", args[0])
				return nil
			})
		},
	}
}

func newAuthEnableCommand(g *globals, ed func() *authEditor, enable bool) *cobra.Command {
	verb := "enable"
	short := "Enable a user's entry"
	if !enable {
		verb, short = "disable", "Disable a user's entry; a running platform disconnects the user at once"
	}
	return &cobra.Command{
		Use:     verb + " USER",
		Short:   short,
		Example: "  capbus auth " + verb + " bobby",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ed().edit(func(f *auth.File) error {
				i, err := findEntry(f, args[0])
				if err != nil {
					return err
				}
				if enable {
					f.Allow[i].Enabled = nil
				} else {
					v := false
					f.Allow[i].Enabled = &v
				}
				fmt.Fprintf(g.stdout, "%sd %s\n", verb, args[0])
				return nil
			})
		},
	}
}

// newAuthNamedSetCommand builds "role", "group" and "capgroup": named lists
// with set, remove and list.
func newAuthNamedSetCommand(g *globals, ed func() *authEditor, noun, plural, members string, field func(*auth.File) *map[string][]string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   noun,
		Short: "List, set or remove " + plural,
		Example: fmt.Sprintf(`  capbus auth %[1]s list
  capbus auth %[1]s set NAME MEMBER...
  capbus auth %[1]s remove NAME`, noun),
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Short:   "List the " + plural,
		Example: fmt.Sprintf("  capbus auth %s list", noun),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ed().load()
			if err != nil {
				return err
			}
			m := *field(f)
			names := make([]string, 0, len(m))
			for k := range m {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				fmt.Fprintf(g.stdout, "%s: %s\n", k, strings.Join(m[k], ", "))
			}
			return nil
		},
	}, &cobra.Command{
		Use:     "set NAME MEMBER...",
		Short:   "Define or replace " + noun + " NAME as a list of " + members,
		Example: fmt.Sprintf("  capbus auth %s set NAME MEMBER...", noun),
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ed().edit(func(f *auth.File) error {
				m := field(f)
				if *m == nil {
					*m = map[string][]string{}
				}
				(*m)[args[0]] = args[1:]
				fmt.Fprintf(g.stdout, "set %s %s\n", noun, args[0])
				return nil
			})
		},
	}, &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove " + noun + " NAME (refused while anything still uses it)",
		Example: fmt.Sprintf("  capbus auth %s remove NAME", noun),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ed().edit(func(f *auth.File) error {
				m := field(f)
				if _, ok := (*m)[args[0]]; !ok {
					return withCode(exitNotFound, fmt.Errorf("no %s %q", noun, args[0]))
				}
				delete(*m, args[0])
				fmt.Fprintf(g.stdout, "removed %s %s\n", noun, args[0])
				return nil
			})
		},
	})
	return cmd
}

func newAuthCheckCommand(g *globals, ed func() *authEditor) *cobra.Command {
	return &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate an auth.json as the platform would",
		Long: `check validates an auth.json exactly as the platform does and prints the first error
as FILE:LINE:COLUMN: PATH: MESSAGE. It exits 0 when the file is valid.`,
		Example: `  capbus auth check
  capbus auth check ./auth.json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ed().path
			if len(args) == 1 {
				path = args[0]
			}
			p, err := auth.LoadFile(path)
			if err != nil {
				return err
			}
			_ = p
			fmt.Fprintf(g.stdout, "%s: ok\n", path)
			return nil
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nonEmpty(l []string) []string {
	out := l[:0:0]
	for _, s := range l {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// shortKey abbreviates a credential for tables.
func shortKey(cred string) string {
	k, err := keys.Parse(strings.TrimPrefix(cred, "CURVE:"))
	if err != nil {
		return dash(cred)
	}
	z := k.Z85()
	return z[:8] + "…"
}

func sameKey(a, b string) bool {
	ka, err1 := keys.Parse(strings.TrimPrefix(a, "CURVE:"))
	kb, err2 := keys.Parse(strings.TrimPrefix(b, "CURVE:"))
	return err1 == nil && err2 == nil && ka == kb
}
