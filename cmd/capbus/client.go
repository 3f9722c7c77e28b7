package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// clientFlags configure the small agent the CLI runs to talk to the bus.
type clientFlags struct {
	key       string
	serverKey string
	identity  string
	timeout   time.Duration
}

func (cf *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&cf.key, "key", "", "keystore of the CLI's own key pair (default: cli-keystore.json in --home, created on first use)")
	fl.StringVar(&cf.serverKey, "server-key", "", "the platform's public key (default: from known_hosts or the platform keystore in --home)")
	fl.StringVar(&cf.identity, "identity", "", "agent identity to claim (default: capbus-cli-RANDOM)")
	fl.DurationVar(&cf.timeout, "timeout", 10*time.Second, "how long to wait for the platform and for replies (a refused connection fails at once)")
}

// keyPair loads the CLI key, creating the default one on first use.
func (cf *clientFlags) keyPair(g *globals) (keys.Pair, error) {
	if cf.key != "" {
		return keys.Load(cf.key)
	}
	kp, created, err := keys.LoadOrCreate(g.cliKeystore())
	if err != nil {
		return kp, err
	}
	if created {
		fmt.Fprintf(g.stderr, "created the CLI key %s (public key %s)\nadmit it with: capbus auth add USER --credentials %s\n",
			g.cliKeystore(), quoteKey(kp.Public), quoteKey(kp.Public))
	}
	return kp, nil
}

// platformKey finds the platform's public key: the flag, then known_hosts,
// then the platform keystore of this home.
func (cf *clientFlags) platformKey(g *globals) (keys.Key, error) {
	if cf.serverKey != "" {
		k, err := keys.Parse(cf.serverKey)
		if err != nil {
			return k, &usageError{fmt.Sprintf("--server-key: %v", err)}
		}
		return k, nil
	}
	if k, ok := knownHost(g, g.address); ok {
		return k, nil
	}
	kp, err := keys.Load(g.serverKeystore())
	if err == nil {
		return kp.Public, nil
	}
	return keys.Key{}, &usageError{fmt.Sprintf("no server key for %s: pass --server-key (capbus serverkey on the platform prints it), or add \"%s KEY\" to %s", g.address, g.address, g.knownHosts())}
}

// connect starts the CLI agent and waits until the platform welcomed it,
// for at most --timeout. It makes one connection attempt, so that a
// refusal is reported at once with its diagnosis: nothing listening
// (exit 5), a key the platform does not admit (exit 3, with the command
// that admits it), a wrong server key (exit 5).
func (cf *clientFlags) connect(ctx context.Context, g *globals) (*agent.Agent, func(), error) {
	if cf.timeout <= 0 {
		return nil, nil, &usageError{fmt.Sprintf("--timeout %v: want a positive duration, e.g. 10s", cf.timeout)}
	}
	kp, err := cf.keyPair(g)
	if err != nil {
		return nil, nil, err
	}
	sk, err := cf.platformKey(g)
	if err != nil {
		return nil, nil, err
	}
	return cf.dial(ctx, g, kp, sk)
}

func (cf *clientFlags) dial(ctx context.Context, g *globals, kp keys.Pair, sk keys.Key) (*agent.Agent, func(), error) {
	id := cf.identity
	if id == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id = "capbus-cli-" + hex.EncodeToString(b[:])
	}
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	if g.logLevel == "info" {
		// Connection chatter is noise for a one-shot command: the
		// command reports what went wrong itself.
		log = slog.New(slog.DiscardHandler)
	}
	a, err := agent.New(id, agent.WithKeyPair(kp), agent.WithPlatform(g.address, sk),
		agent.WithConnectTimeout(cf.timeout), agent.WithCallTimeout(cf.timeout), agent.WithLogger(log),
		agent.WithConnectAttempts(1))
	if err != nil {
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- a.Run(runCtx) }()
	stop := func() { cancel(); <-errc }
	wctx, wcancel := context.WithTimeout(ctx, cf.timeout)
	defer wcancel()
	if err := a.WaitConnected(wctx); err != nil {
		stop()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, connectError(err, g, kp, sk, cf.timeout)
	}
	return a, stop, nil
}

// connectError turns the diagnosis of a failed connection into what the
// operator should do, with the exit code that says what happened.
func connectError(err error, g *globals, kp keys.Pair, sk keys.Key, timeout time.Duration) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return withCode(exitUnreachable, fmt.Errorf("nothing is listening at %s (connection refused): is the platform running (capbus platform run)? Check --address or $CAPBUS_ADDRESS", g.address))
	case errors.Is(err, curve.ErrBusy):
		return withCode(exitUnreachable, fmt.Errorf("the platform at %s takes no connection from this CLI for now (a connection limit, or too many failed handshakes from this host); try again later", g.address))
	case errors.Is(err, curve.ErrRefused):
		return withCode(exitRefused, fmt.Errorf("the platform at %s refused this CLI's key %s: it is not in auth.json, or disabled or denied; admit it with:\n  capbus auth add USER --credentials %s\n(or, if the platform records refused keys: capbus auth pending, capbus auth approve)",
			g.address, quoteKey(kp.Public), quoteKey(kp.Public)))
	case errors.Is(err, curve.ErrServerKey):
		return withCode(exitUnreachable, fmt.Errorf("the platform at %s does not hold the server key %s (wrong or stale: was the platform's keystore replaced?); check %s or pass --server-key (capbus serverkey on the platform's host prints it)",
			g.address, quoteKey(sk), g.knownHosts()))
	case errors.Is(err, rpc.ErrPermission), errors.Is(err, rpc.ErrIdentityInUse):
		return withCode(exitRefused, fmt.Errorf("the platform at %s refused the CLI's hello: %w", g.address, errors.Unwrap(err)))
	case errors.Is(err, context.DeadlineExceeded):
		return withCode(exitUnreachable, fmt.Errorf("no answer from the platform at %s within %s: %w", g.address, timeout, err))
	}
	return withCode(exitUnreachable, fmt.Errorf("could not connect to the platform at %s: %w", g.address, err))
}

// probe connects to the platform for a command that can do without it
// (auth check, auth explain): it never creates the CLI key, waits at most
// probeTimeout, and returns a note saying why not instead of an error.
func probe(ctx context.Context, g *globals) (a *agent.Agent, stop func(), note string) {
	kp, err := keys.Load(g.cliKeystore())
	if err != nil {
		return nil, nil, fmt.Sprintf("no CLI key (%s) to ask the platform with", g.cliKeystore())
	}
	cf := &clientFlags{timeout: probeTimeout}
	sk, err := cf.platformKey(g)
	if err != nil {
		return nil, nil, fmt.Sprintf("no server key for %s", g.address)
	}
	a, stop, err = cf.dial(ctx, g, kp, sk)
	if err != nil {
		return nil, nil, err.Error()
	}
	return a, stop, ""
}

// probeTimeout bounds how long auth check and auth explain wait for the
// platform.
const probeTimeout = 3 * time.Second

// quoteKey writes a key in Z85, single-quoted so that it pastes into a
// shell as one word (the Z85 alphabet has no quote or backslash).
func quoteKey(k keys.Key) string { return "'" + k.Z85() + "'" }

// do connects, runs fn with a context bounded by --timeout, and
// disconnects.
func (cf *clientFlags) do(cmd *cobra.Command, g *globals, fn func(ctx context.Context, a *agent.Agent) error) error {
	a, stop, err := cf.connect(cmd.Context(), g)
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(cmd.Context(), cf.timeout)
	defer cancel()
	return fn(ctx, a)
}

// knownHost finds addr in a known_hosts file; malformed lines are
// skipped with a warning on stderr.
func knownHost(g *globals, addr string) (keys.Key, bool) {
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	k, err := keys.LookupKnownHost(g.knownHosts(), addr, log)
	return k, err == nil
}

// rememberHost records "addr key" in known_hosts, replacing a line for the
// same address.
func rememberHost(path, addr string, k keys.Key) error { return keys.AddKnownHost(path, addr, k) }

func newClientCommands(g *globals) []*cobra.Command {
	cf := &clientFlags{}
	var kwargs string
	call := &cobra.Command{
		Use:   "call IDENTITY METHOD [ARG...]",
		Short: "Call a method of a connected agent and print the result as JSON",
		Long: `call calls IDENTITY.METHOD through the platform, as a small agent with the CLI's own key
(which must be in auth.json). Each ARG is one positional argument written as JSON
(quote strings: '"Paris"'; a negative number is an ARG, not a flag: -5); --kwargs gives
keyword arguments as a JSON object.

Exit codes: 0 ok, 3 refused (unauthorized; the message names what was missing),
4 not found (no such method, or no agent with that identity), 5 unreachable, 6 timeout.`,
		Example: `  capbus call weather temperature
  capbus call weather forecast '"Paris"' 3
  capbus call weather forecast --kwargs '{"city": "Paris", "days": 3}'`,
		Args:        cobra.MinimumNArgs(2),
		Annotations: map[string]string{dashOperand: "ARG"},
		RunE: func(cmd *cobra.Command, args []string) error {
			params := make([]any, 0, len(args)-2)
			for i, a := range args[2:] {
				v, err := parseJSON(a)
				if err != nil {
					return &usageError{fmt.Sprintf("argument %d (%s): not JSON: %v (quote strings, e.g. '\"Paris\"')", i+1, a, err)}
				}
				params = append(params, v)
			}
			if kwargs != "" {
				v, err := parseJSON(kwargs)
				m, ok := v.(map[string]any)
				if err != nil || !ok {
					return &usageError{fmt.Sprintf("--kwargs: want a JSON object, got %s", kwargs)}
				}
				params = append(params, rpcKwargs(m))
			}
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				raw, err := a.Call(ctx, args[0], args[1], params...)
				if err != nil {
					return err
				}
				v, err := decodeAny(raw)
				if err != nil {
					return fmt.Errorf("decoding the result: %w", err)
				}
				return printJSON(g.stdout, v)
			})
		},
	}
	call.Flags().StringVar(&kwargs, "kwargs", "", "keyword arguments as a JSON object")

	peers := &cobra.Command{
		Use:     "peers",
		Short:   "List the identities of the connected agents",
		Example: "  capbus peers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				list, err := a.Peers(ctx)
				if err != nil {
					return err
				}
				for _, p := range list {
					if p != a.Identity() {
						fmt.Fprintln(g.stdout, p)
					}
				}
				return nil
			})
		},
	}

	ping := &cobra.Command{
		Use:     "ping",
		Short:   "Check that the platform answers, and who it says you are",
		Example: "  capbus ping --address tcp://127.0.0.1:22916",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				t0 := time.Now()
				if err := a.Ping(ctx); err != nil {
					return err
				}
				rtt := time.Since(t0)
				me, err := a.WhoAmI(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "pong from %s in %s (connect %s); you are user %q as identity %q, policy generation %d\n",
					g.address, rtt.Round(time.Microsecond), t0.Sub(start).Round(time.Millisecond), me.UserID, me.Identity, me.Generation)
				if me.PolicyNote != "" {
					fmt.Fprintf(g.stdout, "policy: %s\n", me.PolicyNote)
				}
				return nil
			})
		},
	}

	publish := &cobra.Command{
		Use:   "publish TOPIC VALUE",
		Short: "Publish a JSON value on a topic",
		Example: `  capbus publish weather/paris/alert '"storm"'
  capbus publish devices/boiler/setpoint 21.5
  capbus publish devices/freezer/setpoint -18`,
		Args:        cobra.ExactArgs(2),
		Annotations: map[string]string{dashOperand: "VALUE"},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := parseJSON(args[1])
			if err != nil {
				return &usageError{fmt.Sprintf("VALUE: not JSON: %v", err)}
			}
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				if err := a.Publish(ctx, args[0], v); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "published to %s\n", args[0])
				return nil
			})
		},
	}

	var count int
	subscribe := &cobra.Command{
		Use:   "subscribe PATTERN",
		Short: "Print messages published to matching topics until interrupted",
		Long: `subscribe prints one line per message: the topic, the publisher and the value as JSON.
Patterns match per segment: "+" is one segment, "#" (last) any number, so
"weather/#" matches "weather/paris/temperature" but never "weatherX".`,
		Example: `  capbus subscribe 'weather/#'
  capbus subscribe 'devices/+/temperature' --count 1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return &usageError{fmt.Sprintf("--count %d: want 0 (until interrupted) or more", count)}
			}
			a, stop, err := cf.connect(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer stop()
			msgs := make(chan *agent.Message, 64)
			ctx, cancel := context.WithTimeout(cmd.Context(), cf.timeout)
			_, err = a.Subscribe(ctx, args[0], func(_ context.Context, m *agent.Message) {
				select {
				case msgs <- m:
				default: // a slow terminal drops rather than blocks the agent
				}
			})
			cancel()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "subscribed to %s\n", args[0])
			for n := 0; count == 0 || n < count; n++ {
				select {
				case <-cmd.Context().Done():
					return nil
				case m := <-msgs:
					v, err := decodeAny(m.Value)
					if err != nil {
						v = fmt.Sprintf("<undecodable: %v>", err)
					}
					b, err := json.Marshal(jsonable(v))
					if err != nil {
						b = []byte(strconv.Quote(fmt.Sprintf("<unprintable: %v>", err)))
					}
					fmt.Fprintf(g.stdout, "%s %s@%s %s\n", m.Topic, m.Sender, m.UserID, b)
				}
			}
			return nil
		},
	}
	subscribe.Flags().IntVar(&count, "count", 0, "exit after this many messages (0: until interrupted)")

	whoami := &cobra.Command{
		Use:   "whoami",
		Short: "Show your user, identity and what you may call, and whether auth.json on disk is in force",
		Long: `whoami asks the platform who the CLI's key is, what it may do and which methods of the
connected agents it may call. When the platform rejected the auth.json on disk and an
older policy is in force, it says so and where the file is wrong.`,
		Example: "  capbus whoami",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cf.do(cmd, g, func(ctx context.Context, a *agent.Agent) error {
				me, err := a.WhoAmI(ctx)
				if err != nil {
					return err
				}
				perms, err := a.Permissions(ctx)
				if err != nil {
					return err
				}
				methods, err := a.Callable(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "user %s, identity %s, key %s, policy generation %d\n", me.UserID, me.Identity, quoteKey(me.Key), me.Generation)
				if me.PolicyNote != "" {
					fmt.Fprintf(g.stdout, "policy: %s\n", me.PolicyNote)
				}
				fmt.Fprintf(g.stdout, "capabilities: %s\nroles: %s\n", dash(strings.Join(perms.Capabilities, ", ")), dash(strings.Join(perms.Roles, ", ")))
				fmt.Fprintln(g.stdout, "callable now:")
				for _, m := range methods {
					fmt.Fprintf(g.stdout, "  %s.%s\n", m.Peer, m.Method)
				}
				return nil
			})
		},
	}

	cmds := []*cobra.Command{call, peers, ping, publish, subscribe, whoami, newDescribeCommand(g, cf)}
	for _, c := range cmds {
		cf.register(c)
	}
	return cmds
}
