package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/configstore"
)

// configDB is the platform's configuration store in the home directory.
func (g *globals) configDB() string { return filepath.Join(g.home, "config.db") }

// kindFlags are --json, --csv and --raw.
type kindFlags struct{ json, csv, raw bool }

func (kf *kindFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().BoolVar(&kf.json, "json", false, what+" is JSON (an object or an array)")
	cmd.Flags().BoolVar(&kf.csv, "csv", false, what+" is CSV with a header row")
	cmd.Flags().BoolVar(&kf.raw, "raw", false, what+" is text, stored as it is")
}

// check refuses more than one kind.
func (kf *kindFlags) check() error {
	n := 0
	for _, set := range []bool{kf.json, kf.csv, kf.raw} {
		if set {
			n++
		}
	}
	if n > 1 {
		return &usageError{fmt.Sprintf("give one of --json, --csv and --raw, not %d", n)}
	}
	return nil
}

// kind returns the kind the flags give, or else the one the file name
// suggests (.csv, .json; anything else is JSON, as in VOLTTRON). guessed
// reports that no flag gave it.
func (kf *kindFlags) kind(file string) (k configstore.Kind, guessed bool) {
	switch {
	case kf.json:
		return configstore.KindJSON, false
	case kf.csv:
		return configstore.KindCSV, false
	case kf.raw:
		return configstore.KindRaw, false
	case strings.EqualFold(filepath.Ext(file), ".csv"):
		return configstore.KindCSV, true
	}
	return configstore.KindJSON, true
}

// set reports whether a kind flag was given.
func (kf *kindFlags) set() bool { return kf.json || kf.csv || kf.raw }

// checkAgentName refuses an agent name that is not a valid identity (the
// platform's rules: 1 to 128 bytes of UTF-8, no control characters).
func checkAgentName(s string) error {
	why := ""
	switch {
	case s == "" || len(s) > 128:
		why = fmt.Sprintf("must be 1 to 128 bytes, not %d", len(s))
	case !utf8.ValidString(s):
		why = "is not valid UTF-8"
	default:
		for i, r := range s {
			if unicode.IsControl(r) {
				why = fmt.Sprintf("contains the control character %U at byte %d", r, i)
				break
			}
		}
	}
	if why == "" {
		return nil
	}
	return &usageError{fmt.Sprintf("AGENT %q is not a valid agent identity: %s", s, why)}
}

// validate checks data read from file for kind, naming file, line and
// column; a JSON refusal of a file the kind was guessed for suggests the
// flags.
func validate(kind configstore.Kind, guessed bool, file string, data []byte) error {
	err := configstore.Validate(kind, file, data)
	if err != nil && guessed && kind == configstore.KindJSON && !strings.EqualFold(filepath.Ext(file), ".json") {
		return fmt.Errorf("%w (stored as JSON by default: give --raw or --csv for other text)", err)
	}
	return err
}

func newConfigCommand(g *globals) *cobra.Command {
	cf := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage the agents' configuration store",
		Long: `config reads and changes the platform's configuration store: named entries of JSON,
CSV or raw text per agent identity, which the platform gives each agent when it connects
and pushes to it whenever one changes (VOLTTRON's "vctl config").

The CLI acts as a small agent with its own key. Changing any agent's entries needs the
capability edit_config_store; reading another agent's needs read_config_store or
edit_config_store. auth.json may restrict either to some identities:
  "capabilities": [{"edit_config_store": {"identity": "/platform\\..*/"}}]
Input is checked before anything is sent: invalid JSON or CSV is refused naming the file,
line and column, and the stored entry is left unchanged. Every change keeps the previous
versions (history, rollback) and is written to the platform's audit log with your user.`,
		Example: `  capbus config store weather config weather.json
  capbus config get weather config
  capbus config edit weather config
  capbus config history weather config`,
	}
	cf.register(cmd)
	cmd.AddCommand(
		newConfigStoreCommand(g, cf),
		newConfigGetCommand(g, cf),
		newConfigListCommand(g, cf),
		newConfigDeleteCommand(g, cf),
		newConfigEditCommand(g, cf),
		newConfigHistoryCommand(g, cf),
		newConfigRollbackCommand(g, cf),
	)
	return cmd
}

func newConfigStoreCommand(g *globals, cf *clientFlags) *cobra.Command {
	var kf kindFlags
	cmd := &cobra.Command{
		Use:   "store AGENT NAME FILE",
		Short: "Store FILE as the entry NAME of AGENT (a new version if it exists)",
		Long: `store reads FILE ("-" for standard input), checks it, and stores it as the entry NAME
of the agent AGENT. The kind is --json, --csv or --raw; without one, a .csv file is CSV and
anything else JSON. A running agent receives the new entry at once.`,
		Example: `  capbus config store weather config weather.json
  capbus config store platform.driver devices/boiler boiler.csv
  capbus config store weather notes notes.txt --raw
  echo '{"units": "F"}' | capbus config store weather config - --json`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			identity, name, file := args[0], args[1], args[2]
			if err := checkAgentName(identity); err != nil {
				return err
			}
			if err := kf.check(); err != nil {
				return err
			}
			kind, guessed := kf.kind(file)
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(g.stdin)
				file = "<stdin>"
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", file, err)
			}
			if err := validate(kind, guessed, file, data); err != nil {
				return err
			}
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				e, err := a.ConfigStore(identity).Put(ctx, name, kind, data)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "stored %s %q version %d (%s, %d bytes)\n", identity, name, e.Version, kind, len(data))
				return nil
			})
		},
	}
	kf.register(cmd, "FILE")
	return cmd
}

// entryJSON is an entry as the CLI prints it with --json.
func entryJSON(e configstore.Entry) map[string]any {
	m := map[string]any{"identity": e.Identity, "name": e.Name, "version": e.Version, "revision": e.Revision,
		"user": e.User, "time": e.Time.Format(time.RFC3339Nano)}
	if e.Deleted {
		m["deleted"] = true
	} else {
		m["kind"], m["data"] = string(e.Kind), string(e.Data)
	}
	return m
}

func newConfigGetCommand(g *globals, cf *clientFlags) *cobra.Command {
	var meta bool
	cmd := &cobra.Command{
		Use:   "get AGENT NAME",
		Short: "Print the entry NAME of AGENT, as it was stored",
		Long: `get prints the data of the entry exactly as it was stored (so that
capbus config get weather config > weather.json gives the file back); --json prints the
entry with its version, revision, kind, author and time as one JSON object.`,
		Example: `  capbus config get weather config
  capbus config get weather config --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAgentName(args[0]); err != nil {
				return err
			}
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				e, err := a.ConfigStore(args[0]).Get(ctx, args[1])
				if err != nil {
					return err
				}
				if meta {
					return printJSON(g.stdout, entryJSON(e))
				}
				_, err = g.stdout.Write(e.Data)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&meta, "json", false, "print the entry and its metadata as JSON")
	return cmd
}

func newConfigListCommand(g *globals, cf *clientFlags) *cobra.Command {
	var long bool
	cmd := &cobra.Command{
		Use:   "list AGENT",
		Short: "List the entries of AGENT",
		Example: `  capbus config list weather
  capbus config list weather --long`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAgentName(args[0]); err != nil {
				return err
			}
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				list, err := a.ConfigStore(args[0]).List(ctx)
				if err != nil {
					return err
				}
				if !long {
					for _, e := range list {
						fmt.Fprintln(g.stdout, e.Name)
					}
					return nil
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tVERSION\tBYTES\tCHANGED\tBY")
				for _, e := range list {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", e.Name, e.Kind, e.Version, len(e.Data), e.Time.Format(time.RFC3339), e.User)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "also show kind, version, size, time and author")
	return cmd
}

func newConfigDeleteCommand(g *globals, cf *clientFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "delete AGENT [NAME]",
		Short: "Delete the entry NAME of AGENT, or with --all every entry",
		Long: `delete deletes an entry; its history is kept, so rollback can bring it back.
--all deletes every entry of AGENT (VOLTTRON's delete --all).`,
		Example: `  capbus config delete weather config
  capbus config delete weather --all`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAgentName(args[0]); err != nil {
				return err
			}
			if all == (len(args) == 2) {
				return &usageError{"give either NAME or --all"}
			}
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				store := a.ConfigStore(args[0])
				if all {
					gone, err := store.DeleteAll(ctx)
					if err != nil {
						return err
					}
					fmt.Fprintf(g.stdout, "deleted %d entries of %s\n", len(gone), args[0])
					return nil
				}
				e, err := store.Delete(ctx, args[1])
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "deleted %s %q (version %d)\n", args[0], args[1], e.Version)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "delete every entry of AGENT")
	return cmd
}

func newConfigHistoryCommand(g *globals, cf *clientFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history AGENT NAME",
		Short: "List the kept versions of the entry NAME of AGENT, newest first",
		Example: `  capbus config history weather config
  capbus config history weather config --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAgentName(args[0]); err != nil {
				return err
			}
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				hist, err := a.ConfigStore(args[0]).History(ctx, args[1])
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]map[string]any, len(hist))
					for i, e := range hist {
						out[i] = entryJSON(e)
					}
					return printJSON(g.stdout, out)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tCHANGED\tBY\tCHANGE")
				for _, e := range hist {
					change := fmt.Sprintf("%s, %d bytes", e.Kind, len(e.Data))
					if e.Deleted {
						change = "deleted"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Version, e.Time.Format(time.RFC3339), e.User, change)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the versions, with their data, as JSON")
	return cmd
}

func newConfigRollbackCommand(g *globals, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rollback AGENT NAME VERSION",
		Short: "Store an earlier version of the entry NAME of AGENT as its new version",
		Long: `rollback stores the data of VERSION (see history) as a new version of the entry;
the history is kept. It brings a deleted entry back too.`,
		Example:     `  capbus config rollback weather config 2`,
		Args:        cobra.ExactArgs(3),
		Annotations: map[string]string{dashOperand: "VERSION"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAgentName(args[0]); err != nil {
				return err
			}
			version, err := strconv.ParseUint(args[2], 10, 64)
			if err != nil || version == 0 {
				return &usageError{fmt.Sprintf("VERSION %q: want a version number from capbus config history", args[2])}
			}
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				e, err := a.ConfigStore(args[0]).Rollback(ctx, args[1], version)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "rolled %s %q back to version %d: now version %d\n", args[0], args[1], version, e.Version)
				return nil
			})
		},
	}
}

func newConfigEditCommand(g *globals, cf *clientFlags) *cobra.Command {
	var kf kindFlags
	cmd := &cobra.Command{
		Use:   "edit AGENT NAME",
		Short: "Edit the entry NAME of AGENT in $VISUAL or $EDITOR, and store it if valid",
		Long: `edit writes the entry's data to a temporary file, opens it in $VISUAL, else $EDITOR,
else vi, and when the editor exits checks the result and stores it as a new version. An
entry that does not exist yet starts empty (JSON unless --csv or --raw); left empty, it is
not created. If the edited text is invalid, or the entry was changed by someone else while
the editor was open, nothing is stored: the error says why (an invalid text's line and
column), and the temporary file is kept (its name is in the message) so that the edit is
not lost.`,
		Example: `  capbus config edit weather config
  EDITOR=nano capbus config edit platform.driver devices/boiler --csv`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			identity, name := args[0], args[1]
			if err := checkAgentName(identity); err != nil {
				return err
			}
			if err := kf.check(); err != nil {
				return err
			}
			editor := os.Getenv("VISUAL")
			if editor == "" {
				editor = os.Getenv("EDITOR")
			}
			if editor == "" {
				editor = "vi"
			}
			a, stop, err := cf.connect(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer stop()
			store := a.ConfigStore(identity)
			ctx, cancel := context.WithTimeout(cmd.Context(), cf.timeout)
			cur, err := store.Get(ctx, name)
			cancel()
			exists := err == nil
			if err != nil && !errors.Is(err, configstore.ErrNotFound) {
				return err
			}
			kind := cur.Kind
			if !exists || kf.set() {
				kind, _ = kf.kind("")
			}
			ext := map[configstore.Kind]string{configstore.KindJSON: ".json", configstore.KindCSV: ".csv"}[kind]
			if ext == "" {
				ext = ".txt"
			}
			tmp, err := os.CreateTemp("", "capbus-config-*"+ext)
			if err != nil {
				return err
			}
			path := tmp.Name()
			_, err = tmp.Write(cur.Data)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(path)
				return err
			}
			words := strings.Fields(editor)
			ed := exec.CommandContext(cmd.Context(), words[0], append(words[1:], path)...)
			ed.Stdin, ed.Stdout, ed.Stderr = g.stdin, g.stdout, g.stderr
			if err := ed.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) { // the editor did not start: nothing was edited
					os.Remove(path)
					return fmt.Errorf("editor %q: %w (set $VISUAL or $EDITOR); the entry is unchanged", editor, err)
				}
				return fmt.Errorf("editor %q: %w; the entry is unchanged, the text is kept in %s", editor, err, path)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("reading the edited file: %w", err)
			}
			if exists && kind == cur.Kind && bytes.Equal(data, cur.Data) {
				os.Remove(path)
				fmt.Fprintf(g.stdout, "%s %q unchanged\n", identity, name)
				return nil
			}
			if !exists && len(bytes.TrimSpace(data)) == 0 {
				os.Remove(path)
				fmt.Fprintf(g.stdout, "%s %q not created: the file was left empty\n", identity, name)
				return nil
			}
			if err := configstore.Validate(kind, path, data); err != nil {
				return fmt.Errorf("%w\nthe entry is unchanged; the edited text is kept in %s", err, path)
			}
			ctx, cancel = context.WithTimeout(cmd.Context(), cf.timeout)
			defer cancel()
			// Another change while the editor was open would be lost
			// under this one: refuse it, keeping the edit.
			now, err := store.Get(ctx, name)
			if err != nil && !errors.Is(err, configstore.ErrNotFound) {
				return fmt.Errorf("%w\nthe edited text is kept in %s", err, path)
			}
			if existsNow := err == nil; existsNow != exists || exists && now.Version != cur.Version {
				return fmt.Errorf("%s %q changed while it was being edited (now %s); nothing is stored: your text is kept in %s (capbus config get shows the entry, capbus config store stores a file)",
					identity, name, describeVersion(now, err), path)
			}
			e, err := store.Put(ctx, name, kind, data)
			if err != nil {
				return fmt.Errorf("%w\nthe edited text is kept in %s", err, path)
			}
			os.Remove(path)
			fmt.Fprintf(g.stdout, "stored %s %q version %d (%s, %d bytes)\n", identity, name, e.Version, kind, len(data))
			return nil
		},
	}
	kf.register(cmd, "the entry")
	return cmd
}

// describeVersion says what an entry is now, for the error of an edit
// that another change overtook.
func describeVersion(e configstore.Entry, err error) string {
	if err != nil {
		return "deleted"
	}
	return fmt.Sprintf("version %d by %s at %s", e.Version, e.User, e.Time.Local().Format(time.DateTime))
}
