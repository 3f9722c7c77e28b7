package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// DefaultAddress is where the platform listens unless told otherwise (the
// port VOLTTRON users know).
const DefaultAddress = "tcp://127.0.0.1:22916"

// globals are the flags every command shares.
type globals struct {
	home      string
	address   string
	logLevel  string
	logFormat string
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
}

// Paths of the files in a capbus home directory.
func (g *globals) serverKeystore() string { return filepath.Join(g.home, "keystore.json") }
func (g *globals) authFile() string       { return filepath.Join(g.home, "auth.json") }
func (g *globals) knownHosts() string     { return filepath.Join(g.home, "known_hosts") }
func (g *globals) auditLog() string       { return filepath.Join(g.home, "audit.log") }
func (g *globals) cliKeystore() string    { return filepath.Join(g.home, "cli-keystore.json") }
func (g *globals) pendingKeys() string    { return filepath.Join(g.home, "pending_keys.json") }
func (g *globals) adminToken() string     { return filepath.Join(g.home, "admin.token") }

func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, &usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", g.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, &usageError{fmt.Sprintf("--log-format %q: want text or json", g.logFormat)}
}

func defaultHome() string {
	if h := os.Getenv("CAPBUS_HOME"); h != "" {
		return h
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".capbus")
	}
	return ".capbus"
}

func defaultAddress() string {
	if a := os.Getenv("CAPBUS_ADDRESS"); a != "" {
		return a
	}
	return DefaultAddress
}

// run executes one capbus command line and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCommand(g)
	root.SetArgs(dashOperands(root, args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "capbus") {
			msg = "capbus: " + msg
		}
		fmt.Fprintln(stderr, msg)
		if isCobraUsage(err) {
			return exitUsage
		}
	}
	return exitCode(err)
}

// isCobraUsage recognises the errors cobra returns for bad flags or
// arguments, which it does not type.
func isCobraUsage(err error) bool {
	m := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.Contains(m, p) {
			return true
		}
	}
	return false
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "capbus",
		Short: "Operate a capbus platform: run it, manage keys and auth.json, call agents",
		Long: `capbus operates a capbus platform.

A platform is the process every agent connects to. Each connection is authenticated
by a CURVE key listed in auth.json, and every call is authorized by the capabilities
and roles auth.json grants. The platform's files live in a home directory
(default ~/.capbus, or $CAPBUS_HOME, or --home): keystore.json (the platform's keys),
auth.json, known_hosts, audit.log and pending_keys.json. --address (or $CAPBUS_ADDRESS)
is the platform's address for every command.

Keys are printed in Z85 (libzmq's form); where a key is meant to be pasted it is
single-quoted, since Z85 holds characters such as ( & < that a shell would read.

Exit codes: 0 ok, 1 error, 2 usage, 3 refused (the platform or policy said no: a key
not in auth.json, an identity or call refused), 4 not found, 5 unreachable (nothing
listening, no answer, or the platform does not hold the expected server key),
6 timeout.`,
		Example: `  capbus platform run
  capbus keygen --out alice.json
  capbus auth add alice --credentials "$(capbus keygen --out alice.json)" --capabilities can_read_temp
  capbus describe weather
  capbus call weather temperature`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.home, "home", defaultHome(), "capbus home directory (env CAPBUS_HOME)")
	pf.StringVar(&g.address, "address", defaultAddress(), "platform address (env CAPBUS_ADDRESS)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newPlatformCommand(g),
		newKeygenCommand(g),
		newServerKeyCommand(g),
		newAuthCommand(g),
		newConfigCommand(g),
	)
	root.AddCommand(newClientCommands(g)...)
	for _, c := range root.Commands() {
		refuseUnknownSubcommands(c)
	}
	return root
}

// refuseUnknownSubcommands makes cmd and the groups below it that only
// hold subcommands (auth, auth role, config, platform) refuse an unknown
// subcommand with a usage error, as the root does: by itself cobra prints
// such a group's help and exits 0, so "capbus platform rn" in a script
// would seem to succeed. Without arguments a group prints its help.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		refuseUnknownSubcommands(c)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.SuggestionsMinimumDistance = 2 // what cobra uses for the root
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return &usageError{msg}
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}
