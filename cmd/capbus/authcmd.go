package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/keys"
)

func newAuthCommand(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Read, edit, check and explain auth.json; list and approve refused keys",
		Long: `auth reads and edits the platform's auth.json (default: auth.json in the home directory).

Every edit is validated before it is written (an edit that would make the file invalid
is refused, nothing changes and nothing is reported as done), is atomic (a temporary
file renamed over the old one; the previous version is kept as auth.json.bak), and is
locked against concurrent edits. An edit changes only the entries and keys it touches:
comments and formatting elsewhere are kept. A running platform picks the change up
within a second, without a restart.

Keys: the CLI prints every key in Z85 (libzmq's form, 40 characters), single-quoted
where it is meant to be pasted ('...': Z85 holds ( & < and other shell characters).
--credentials accepts Z85 or base64url (VOLTTRON's form); entries the CLI writes store
the key in Z85; existing entries keep the form they have.
See docs/AUTH.md for every key of the file.`,
		Example: `  capbus auth add alice --credentials "$(capbus keygen --out alice.json)" --grant can_read_temp
  capbus auth update bobby --grant can_read_temp --add-role viewer
  capbus auth explain bobby --call weather.temperature
  capbus auth pending
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
		newAuthPendingCommand(g, ed),
		newAuthApproveCommand(g, ed),
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
		Short:   "Show one allow entry as JSON (its key in Z85)",
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
			e := f.Allow[i]
			if k, err := keys.Parse(strings.TrimPrefix(e.Credentials, "CURVE:")); err == nil {
				e.Credentials = k.Z85() // one key form in what the CLI prints
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			return enc.Encode(e)
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
	addRoles     []string
	removeRoles  []string
	groups       []string
	addGroups    []string
	removeGroups []string
	comments     string
	admitFrom    string
	disabled     bool
}

func (ef *entryFlags) register(cmd *cobra.Command, add bool) {
	fl := cmd.Flags()
	fl.StringVar(&ef.credentials, "credentials", "", "the agent's CURVE public key (Z85, or base64url as VOLTTRON writes it); stored in Z85")
	fl.StringVar(&ef.identity, "identity", "", "the agent identity this key may claim (exact, or /regex/)")
	fl.StringSliceVar(&ef.identities, "identities", nil, "more identities this key may claim (comma-separated; replaces the list)")
	fl.StringSliceVar(&ef.capabilities, "capabilities", nil, "replace the capabilities with these (comma-separated; !cap negates)")
	fl.StringSliceVar(&ef.grant, "grant", nil, "add capabilities (comma-separated)")
	fl.StringSliceVar(&ef.roles, "roles", nil, "replace the roles with these (comma-separated; each must be defined: capbus auth role set)")
	fl.StringSliceVar(&ef.groups, "groups", nil, "replace the groups with these (comma-separated)")
	fl.StringVar(&ef.comments, "comments", "", "a comment for people")
	fl.StringVar(&ef.admitFrom, "admit-from", "", "admit this key only from this peer address (host or host:port, exact or /regex/); the entry's \"address\"")
	if add {
		fl.BoolVar(&ef.disabled, "disabled", false, "add the entry disabled")
	} else {
		fl.StringSliceVar(&ef.revoke, "revoke", nil, "remove capabilities (comma-separated)")
		fl.StringSliceVar(&ef.addRoles, "add-role", nil, "add roles, keeping the others (comma-separated)")
		fl.StringSliceVar(&ef.removeRoles, "remove-role", nil, "remove roles (comma-separated)")
		fl.StringSliceVar(&ef.addGroups, "add-group", nil, "add groups, keeping the others (comma-separated)")
		fl.StringSliceVar(&ef.removeGroups, "remove-group", nil, "remove groups (comma-separated)")
	}
}

// addNames appends the names not yet in list.
func addNames(list, names []string) []string {
	for _, n := range names {
		if !slices.Contains(list, n) {
			list = append(list, n)
		}
	}
	return list
}

// removeNames removes names from list; a name not there is "not found".
func removeNames(user, what string, list, names []string) ([]string, error) {
	for _, n := range names {
		i := slices.Index(list, n)
		if i < 0 {
			return nil, withCode(exitNotFound, fmt.Errorf("user %q does not hold %s %q", user, what, n))
		}
		list = slices.Delete(list, i, i+1)
	}
	return list, nil
}

func (ef *entryFlags) apply(cmd *cobra.Command, e *auth.Entry) error {
	ch := cmd.Flags().Changed
	if ch("credentials") {
		k, err := keys.Parse(strings.TrimPrefix(ef.credentials, "CURVE:"))
		if err != nil {
			return &usageError{fmt.Sprintf("--credentials: %v", err)}
		}
		e.Credentials = k.Z85()
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
	// Revocations first: --revoke X --grant X replaces a restricted X by
	// an unrestricted one.
	for _, c := range ef.revoke {
		i := slices.Index(e.Capabilities.Names(), c)
		if i < 0 {
			return withCode(exitNotFound, fmt.Errorf("user %q does not hold capability %q", e.UserID, c))
		}
		e.Capabilities = slices.Delete(e.Capabilities, i, i+1)
	}
	for _, c := range ef.grant {
		i := slices.Index(e.Capabilities.Names(), c)
		if i < 0 {
			e.Capabilities = append(e.Capabilities, auth.Capability{Name: c})
			continue
		}
		if held := e.Capabilities[i]; held.Params != nil {
			return fmt.Errorf("user %q already holds capability %q, restricted to %s; to lift the restriction: capbus auth update %s --revoke %s --grant %s",
				e.UserID, c, restriction(held.Params), e.UserID, c, c)
		}
	}
	var err error
	if ch("roles") {
		e.Roles = ef.roles
	}
	e.Roles = addNames(e.Roles, ef.addRoles)
	if e.Roles, err = removeNames(e.UserID, "role", e.Roles, ef.removeRoles); err != nil {
		return err
	}
	if ch("groups") {
		e.Groups = ef.groups
	}
	e.Groups = addNames(e.Groups, ef.addGroups)
	if e.Groups, err = removeNames(e.UserID, "group", e.Groups, ef.removeGroups); err != nil {
		return err
	}
	if ch("comments") {
		e.Comments = ef.comments
	}
	if ch("admit-from") {
		e.Address = ef.admitFrom
	}
	if ch("disabled") && ef.disabled {
		f := false
		e.Enabled = &f
	}
	return nil
}

// summary describes an entry in one line, its key quoted for pasting.
func summary(e auth.Entry) string {
	var parts []string
	if k, err := keys.Parse(strings.TrimPrefix(e.Credentials, "CURVE:")); err == nil {
		parts = append(parts, "key "+quoteKey(k))
	}
	if ids := nonEmpty(append([]string{e.Identity}, e.Identities...)); len(ids) > 0 {
		parts = append(parts, "identity "+strings.Join(ids, ","))
	}
	caps := make([]string, len(e.Capabilities))
	for i, c := range e.Capabilities {
		caps[i] = c.Name
		if c.Params != nil {
			caps[i] += " (" + restriction(c.Params) + ")"
		}
	}
	parts = append(parts, "capabilities ["+strings.Join(caps, ", ")+"]")
	if len(e.Roles) > 0 {
		parts = append(parts, "roles ["+strings.Join(e.Roles, ", ")+"]")
	}
	if len(e.Groups) > 0 {
		parts = append(parts, "groups ["+strings.Join(e.Groups, ", ")+"]")
	}
	if e.Address != "" {
		parts = append(parts, "admitted only from "+e.Address)
	}
	if !e.IsEnabled() {
		parts = append(parts, "disabled")
	}
	return strings.Join(parts, ", ")
}

// editHint adds what to do to an edit refused because the result would
// be invalid.
func editHint(err error) error {
	if errors.Is(err, auth.ErrInvalidEdit) && strings.Contains(err.Error(), `is not defined in "roles"`) {
		return fmt.Errorf("%w\n(define the role first: capbus auth role set ROLE CAPABILITY...)", err)
	}
	return err
}

func newAuthAddCommand(g *globals, ed func() *authEditor) *cobra.Command {
	var ef entryFlags
	cmd := &cobra.Command{
		Use:   "add USER --credentials KEY",
		Short: "Add an allow entry for a user's key",
		Long: `add appends an allow entry: the key may connect as USER and gets the given grants.
The key is stored in Z85. A user id or key already in the file is refused.
--admit-from limits where the key may connect from; the platform's own address is the
global --address.`,
		Example: `  capbus auth add alice --credentials "$(capbus keygen --out alice.json)" --grant can_read_temp
  capbus auth add weather --credentials KEY --identity weather --roles admin
  capbus auth add sensor --credentials KEY --admit-from '/192\.168\..*/'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("credentials") {
				return &usageError{"add: --credentials is required (the agent's public key; see capbus keygen)"}
			}
			user := args[0]
			var added auth.Entry
			err := ed().edit(cmd.Context(), func(f *auth.File) error {
				return addEntry(cmd, &ef, f, user, &added)
			})
			if err != nil {
				return editHint(err)
			}
			fmt.Fprintf(g.stdout, "added %s: %s\n", user, summary(added))
			return nil
		},
	}
	ef.register(cmd, true)
	return cmd
}

// addEntry appends the entry of user built from ef to f.
func addEntry(cmd *cobra.Command, ef *entryFlags, f *auth.File, user string, added *auth.Entry) error {
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
	*added = e
	return nil
}

func newAuthUpdateCommand(g *globals, ed func() *authEditor) *cobra.Command {
	var ef entryFlags
	cmd := &cobra.Command{
		Use:   "update USER",
		Short: "Change a user's entry: grant or revoke capabilities, add or remove roles and groups, change the key",
		Long: `update changes USER's allow entry. --grant and --revoke add and remove capabilities,
--add-role and --remove-role roles, --add-group and --remove-group groups, keeping the
rest. --capabilities, --roles and --groups replace the whole list. A role must be
defined (capbus auth role set) before an entry can hold it. The entry as it now stands
is printed once the file is written.`,
		Example: `  capbus auth update bobby --grant can_read_temp
  capbus auth update bobby --revoke can_read_temp
  capbus auth update alice --add-role admin --remove-role viewer
  capbus auth update alice --roles admin,operator     # replaces every role`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			changed := false // --home, --file and the like change nothing
			cmd.LocalFlags().VisitAll(func(f *pflag.Flag) { changed = changed || f.Changed })
			if !changed {
				return &usageError{"update: nothing to change; see capbus auth update --help"}
			}
			var updated auth.Entry
			err := ed().edit(cmd.Context(), func(f *auth.File) error {
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
				updated = f.Allow[i]
				return nil
			})
			if err != nil {
				return editHint(err)
			}
			fmt.Fprintf(g.stdout, "updated %s: %s\n", args[0], summary(updated))
			return nil
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
			err := ed().edit(cmd.Context(), func(f *auth.File) error {
				i, err := findEntry(f, args[0])
				if err != nil {
					return err
				}
				f.Allow = slices.Delete(f.Allow, i, i+1)
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed %s\n", args[0])
			return nil
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
			err := ed().edit(cmd.Context(), func(f *auth.File) error {
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
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%sd %s\n", verb, args[0])
			return nil
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
		Example: fmt.Sprintf("  capbus auth %s set NAME MEMBER...\n  capbus auth %[1]s set NAME MEMBER,MEMBER", noun),
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Members separated by commas too, as --grant a,b takes them.
			var list []string
			for _, a := range args[1:] {
				list = append(list, nonEmpty(strings.Split(a, ","))...)
			}
			for i := range list {
				list[i] = strings.TrimSpace(list[i])
			}
			list = nonEmpty(list)
			if len(list) == 0 {
				return &usageError{fmt.Sprintf("%s set %s: no members", noun, args[0])}
			}
			err := ed().edit(cmd.Context(), func(f *auth.File) error {
				m := field(f)
				if *m == nil {
					*m = map[string][]string{}
				}
				(*m)[args[0]] = list
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "set %s %s: %s\n", noun, args[0], strings.Join(list, ", "))
			return nil
		},
	}, &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove " + noun + " NAME (refused while anything still uses it)",
		Example: fmt.Sprintf("  capbus auth %s remove NAME", noun),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := ed().edit(cmd.Context(), func(f *auth.File) error {
				m := field(f)
				if _, ok := (*m)[args[0]]; !ok {
					return withCode(exitNotFound, fmt.Errorf("no %s %q", noun, args[0]))
				}
				// An undefined role or group is an error the file's
				// validation reports; an undefined capability group would
				// silently become a capability of that name.
				if noun == "capgroup" {
					if u := capgroupUses(f, args[0]); len(u) > 0 {
						return fmt.Errorf("capgroup %q is still used by %s; take it out there first", args[0], strings.Join(u, ", "))
					}
				}
				delete(*m, args[0])
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed %s %s\n", noun, args[0])
			return nil
		},
	})
	return cmd
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

// capgroupUses lists where auth.json grants capability group name (or
// negates it): entries' capabilities, their agents' narrowing and grants,
// roles and other capability groups.
func capgroupUses(f *auth.File, name string) []string {
	var out []string
	has := func(l []string) bool {
		return slices.ContainsFunc(l, func(c string) bool { return strings.TrimPrefix(c, "!") == name })
	}
	for i, e := range f.Allow {
		if has(e.Capabilities.Names()) {
			out = append(out, fmt.Sprintf("allow[%d] (%s)", i, e.UserID))
		}
		for _, id := range slices.Sorted(maps.Keys(e.Agents)) {
			a := e.Agents[id]
			if has(a.Capabilities) || (a.Grant != nil && has(a.Grant.Capabilities)) {
				out = append(out, fmt.Sprintf("allow[%d].agents[%q]", i, id))
			}
		}
	}
	for _, r := range slices.Sorted(maps.Keys(f.Roles)) {
		if has(f.Roles[r]) {
			out = append(out, fmt.Sprintf("roles[%q]", r))
		}
	}
	for _, c := range slices.Sorted(maps.Keys(f.CapabilityGroups)) {
		if c != name && has(f.CapabilityGroups[c]) {
			out = append(out, fmt.Sprintf("capability_groups[%q]", c))
		}
	}
	return out
}

// restriction writes a capability's parameter restrictions, days=3,
// city=/par.*/, sorted by parameter.
func restriction(params map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		out = append(out, k+"="+params[k])
	}
	return strings.Join(out, ", ")
}
