package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/platform"
)

// closedAuthJSON is the auth.json written on first run: valid, and admitting
// nobody until the operator adds entries.
const closedAuthJSON = `// capbus auth.json: who may connect, and what each peer may do.
// Nobody is admitted until you add an entry, for example:
//   capbus auth add alice --credentials "$(capbus keygen --out alice.json)" --grant can_read_temp
// See docs/AUTH.md for every key.
{
  "allow": []
}
`

func newPlatformCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "platform",
		Short:   "Run the platform",
		Example: "  capbus platform run --address tcp://127.0.0.1:22916",
	}
	var (
		audit        string
		auditMaxMB   int
		auditBackups int
		auditAllowed bool
		adminAddress string
		limits       *platform.Limits
	)
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the platform in the foreground until interrupted",
		Long: `run starts the platform: it binds --address, authenticates every connection by its
CURVE key against auth.json, and authorizes every call, publish and subscribe.

On first run it creates the home directory (mode 0700) with keystore.json (the platform's
key pair, mode 0600) and an auth.json that admits nobody. Edits of auth.json
(capbus auth ..., or any editor) take effect within a second, without a restart;
a broken edit keeps the last good policy and is logged (capbus whoami says so). The
audit log (JSON lines) is appended to audit.log in the home directory and rotated by
size. Keys refused because auth.json does not know them are remembered in
pending_keys.json (the 100 most recent; capbus auth pending lists them, capbus auth
approve admits one). The agents' configuration store (capbus config) is config.db in
the home directory.

SIGHUP reloads auth.json and reopens the audit log (after logrotate moved it); SIGINT
and SIGTERM stop the platform. A failed start (the address in use, say) exits with
status 1 and the reason, and writes nothing (no keystore, no auth.json, no known_hosts
line, no audit record).

The admin endpoint (--admin-address, loopback by default) serves Prometheus metrics at
/metrics, /healthz and /readyz, and a web console (peers, exports, who may call what,
recent denials, grant and revoke) whose access token is admin.token in the home
directory (mode 0600).

Every resource one peer, one user or all of them can take is bounded; the flags below
set each bound (docs/PROTOCOL.md, "Limits", says what happens beyond it).`,
		Example: `  capbus platform run
  capbus platform run --address tcp://0.0.0.0:22916 --log-format json
  CAPBUS_HOME=/srv/capbus capbus platform run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			// The home directory must exist to be watched; its files are
			// written only once the platform listens.
			if err := os.MkdirAll(g.home, 0o700); err != nil {
				return err
			}
			if audit == "" {
				audit = g.auditLog()
			}
			p, err := platform.New(
				platform.WithAddress(g.address),
				platform.WithKeystore(g.serverKeystore()),
				platform.WithAuthFile(g.authFile()),
				platform.WithAuditFile(audit),
				platform.WithAuditRotation(auditMaxMB, auditBackups),
				platform.WithAuditAllowed(auditAllowed),
				platform.WithPendingKeysFile(g.pendingKeys()),
				platform.WithConfigStore(g.configDB()),
				platform.WithLimits(*limits),
				adminOption(adminAddress, cmd.Flags().Changed("admin-address"), g.adminToken(), log),
				platform.WithLogger(log),
			)
			if err != nil {
				return err
			}
			// SIGHUP: reload auth.json and reopen the audit log. Caught from
			// before the start line is printed, so that a SIGHUP sent as
			// soon as it is seen never kills the platform.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			errc := make(chan error, 1)
			go func() { errc <- p.Run(cmd.Context()) }()
			<-p.Ready()
			if p.Addr() == "" { // Run failed to start: it wrote nothing
				return <-errc
			}
			if err := ensureAuthFile(g.authFile()); err != nil {
				log.Warn("could not write the initial auth.json", "file", g.authFile(), "err", err)
			}
			if err := rememberHost(g.knownHosts(), p.Addr(), p.ServerKey()); err != nil {
				log.Warn("could not record the server key in known_hosts", "file", g.knownHosts(), "err", err)
			}
			fmt.Fprintf(g.stdout, "capbus platform listening on %s\nserver key: %s\nauth file: %s\n", p.Addr(), quoteKey(p.ServerKey()), g.authFile())
			if a := p.AdminAddr(); a != "" {
				fmt.Fprintf(g.stdout, "admin console: http://%s/ (token in %s; metrics at /metrics)\n", a, g.adminToken())
			}

			for {
				select {
				case <-hup:
					if err := p.Reload(); err != nil {
						log.Error("reload on SIGHUP", "err", err)
					} else {
						log.Info("reloaded on SIGHUP: auth.json read, audit log reopened")
					}
					continue
				case err = <-errc:
				}
				break
			}
			if errors.Is(err, cmd.Context().Err()) {
				return nil
			}
			return err
		},
	}
	limits = limitFlags(run.Flags())
	run.Flags().StringVar(&adminAddress, "admin-address", defaultAdminAddress, `admin endpoint (metrics, health, web console) host:port; "off" disables it`)
	run.Flags().StringVar(&audit, "audit", "", "audit log file (default: audit.log in --home)")
	run.Flags().IntVar(&auditMaxMB, "audit-max-size", platform.DefaultAuditMaxMB, "rotate the audit log when it reaches this many MB")
	run.Flags().IntVar(&auditBackups, "audit-keep", platform.DefaultAuditBackups, "rotated audit logs to keep")
	run.Flags().BoolVar(&auditAllowed, "audit-allowed", false, "also record allowed calls, publishes and subscribes")
	cmd.AddCommand(run)
	return cmd
}

// ensureAuthFile creates a closed auth.json if none exists. An existing file
// is never touched.
func ensureAuthFile(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return atomicfile.Write(path, []byte(closedAuthJSON), 0o600)
	}
	if err != nil {
		return err
	}
	_ = bytes.TrimSpace(data)
	return nil
}

// defaultAdminAddress is where the admin endpoint listens unless told
// otherwise: loopback only, the port after the platform's.
const defaultAdminAddress = "127.0.0.1:22917"

// adminOption turns --admin-address into a platform option: "off" (or "")
// disables the endpoint. An address given explicitly must be free, else
// the platform does not start; the default one, when taken (another
// platform on this host, say), only disables the endpoint, with a warning.
func adminOption(address string, explicit bool, tokenFile string, log *slog.Logger) platform.Option {
	if address == "" || address == "off" {
		return platform.WithAdmin("", "")
	}
	if !explicit {
		ln, err := net.Listen("tcp", address)
		if err != nil {
			log.Warn("admin endpoint disabled: its default address is taken; give --admin-address to choose another", "address", address, "err", err)
			return platform.WithAdmin("", "")
		}
		ln.Close()
	}
	return platform.WithAdmin(address, tokenFile)
}
