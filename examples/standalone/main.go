// Command standalone runs the VOLTTRON "VIP Authorization" scenario end to
// end in one process, with no setup:
//
//   - an embedded platform in a temporary home, with generated keys;
//   - an auth.json with Alice (granted can_read_temp) and Bobby (no
//     capabilities);
//   - the weather agent, whose temperature method requires can_read_temp;
//   - Alice's and Bobby's agents, each calling weather.temperature;
//   - an operator, granted edit_config_store for the weather agent only,
//     who stores the weather agent's configuration entry.
//
// Alice gets the temperature; the platform refuses Bobby's call and says
// which capability he is missing. The weather agent never sees Bobby's call.
// Then the operator switches the weather agent to Fahrenheit through the
// configuration store, and Alice's next reading is in °F: the agent picked
// the change up live.
//
// With --address, --server-key, --alice-key and --bobby-key it runs the two
// callers (and, with --weather-key, the weather agent; with --operator-key
// too, the configuration change) against an existing platform instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/examples/weather/station"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "standalone:", err)
		os.Exit(1)
	}
}

// config is where the callers connect and with which keys.
type config struct {
	address   string
	serverKey keys.Key
	alice     keys.Pair
	bobby     keys.Pair
	weather   *keys.Pair // nil: an existing weather agent is used
	operator  *keys.Pair // nil: no configuration change
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("standalone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	address := fs.String("address", "", "connect to this existing platform instead of starting one")
	serverKey := fs.String("server-key", "", "the existing platform's public key")
	aliceKey := fs.String("alice-key", "", "keystore of Alice's key (existing platform)")
	bobbyKey := fs.String("bobby-key", "", "keystore of Bobby's key (existing platform)")
	weatherKey := fs.String("weather-key", "", "keystore of the weather agent's key: also run the weather agent (existing platform)")
	operatorKey := fs.String("operator-key", "", "keystore of a key holding edit_config_store for weather: also change its configuration (existing platform, with --weather-key)")
	verbose := fs.Bool("v", false, "log the platform and agents to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}

	var cfg config
	if *address == "" {
		stop, c, err := startEmbedded(ctx, log, stdout)
		if err != nil {
			return err
		}
		defer stop()
		cfg = c
	} else {
		c, err := existing(*address, *serverKey, *aliceKey, *bobbyKey, *weatherKey, *operatorKey)
		if err != nil {
			return err
		}
		cfg = c
	}
	return scenario(ctx, cfg, log, stdout)
}

// startEmbedded writes keys and auth.json to a temporary home and runs a
// platform on a free port of 127.0.0.1.
func startEmbedded(ctx context.Context, log *slog.Logger, stdout io.Writer) (func(), config, error) {
	var cfg config
	home, err := os.MkdirTemp("", "capbus-standalone-")
	if err != nil {
		return nil, cfg, err
	}
	pairs := map[string]keys.Pair{}
	for _, name := range []string{"platform", "weather", "alice", "bobby", "operator"} {
		kp, err := keys.Generate()
		if err != nil {
			return nil, cfg, err
		}
		if err := keys.Save(filepath.Join(home, name+".json"), kp); err != nil {
			return nil, cfg, err
		}
		pairs[name] = kp
	}
	authJSON := fmt.Sprintf(`// Written by examples/standalone: the seed's Alice and Bobby.
{
  "allow": [
    {"user_id": "weather", "identity": "weather", "credentials": %q,
     "comments": "the weather agent"},
    {"user_id": "alice", "identity": "alice", "credentials": %q,
     "capabilities": ["can_read_temp"], "comments": "may read the temperature"},
    {"user_id": "bobby", "identity": "bobby", "credentials": %q,
     "capabilities": [], "comments": "holds no capability"},
    {"user_id": "operator", "identity": "operator", "credentials": %q,
     "capabilities": [{"edit_config_store": {"identity": "weather"}}],
     "comments": "may change the weather agent's configuration, and no other agent's"}
  ]
}
`, pairs["weather"].Public.Base64URL(), pairs["alice"].Public.Base64URL(), pairs["bobby"].Public.Base64URL(),
		pairs["operator"].Public.Base64URL())
	authFile := filepath.Join(home, "auth.json")
	if err := os.WriteFile(authFile, []byte(authJSON), 0o600); err != nil {
		return nil, cfg, err
	}
	p, err := platform.New(platform.WithAddress("tcp://127.0.0.1:0"), platform.WithKeyPair(pairs["platform"]),
		platform.WithAuthFile(authFile), platform.WithConfigStore(filepath.Join(home, "config.db")), platform.WithLogger(log))
	if err != nil {
		return nil, cfg, err
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	select {
	case <-p.Ready():
	case err := <-done:
		cancel()
		return nil, cfg, fmt.Errorf("platform: %w", err)
	}
	fmt.Fprintf(stdout, "Started a platform on %s (home %s) with auth.json:\n  alice: can_read_temp\n  bobby: no capabilities\n  operator: edit_config_store for identity weather\n", p.Addr(), home)
	w, op := pairs["weather"], pairs["operator"]
	cfg = config{address: p.Addr(), serverKey: p.ServerKey(), alice: pairs["alice"], bobby: pairs["bobby"], weather: &w, operator: &op}
	stop := func() {
		cancel()
		<-done
		os.RemoveAll(home)
	}
	return stop, cfg, nil
}

func existing(address, serverKey, aliceKey, bobbyKey, weatherKey, operatorKey string) (config, error) {
	cfg := config{address: address}
	if serverKey == "" || aliceKey == "" || bobbyKey == "" {
		return cfg, errors.New("with --address, also give --server-key, --alice-key and --bobby-key")
	}
	var err error
	if cfg.serverKey, err = keys.Parse(serverKey); err != nil {
		return cfg, fmt.Errorf("--server-key: %w", err)
	}
	if cfg.alice, err = keys.Load(aliceKey); err != nil {
		return cfg, err
	}
	if cfg.bobby, err = keys.Load(bobbyKey); err != nil {
		return cfg, err
	}
	if weatherKey != "" {
		kp, err := keys.Load(weatherKey)
		if err != nil {
			return cfg, err
		}
		cfg.weather = &kp
	}
	if operatorKey != "" {
		kp, err := keys.Load(operatorKey)
		if err != nil {
			return cfg, err
		}
		cfg.operator = &kp
	}
	return cfg, nil
}

// start runs a until ctx ends and waits for its welcome.
func start(ctx context.Context, a *agent.Agent) (stop func(), err error) {
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	select {
	case <-a.Ready():
		return func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("agent %s: %w", a.Identity(), err)
	case <-ctx.Done():
		cancel()
		<-done
		return nil, fmt.Errorf("agent %s: not welcomed: %w", a.Identity(), ctx.Err())
	}
}

// scenario runs the weather agent (if it is ours) and both callers.
func scenario(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer) error {
	newAgent := func(id string, kp keys.Pair) (*agent.Agent, error) {
		return agent.New(id, agent.WithKeyPair(kp), agent.WithPlatform(cfg.address, cfg.serverKey), agent.WithLogger(log))
	}
	var st *station.Station
	if cfg.weather != nil {
		w, err := newAgent(station.Identity, *cfg.weather)
		if err != nil {
			return err
		}
		st = station.New(log)
		if err := st.Register(w); err != nil {
			return err
		}
		stop, err := start(ctx, w)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintln(stdout, "The weather agent is connected; temperature requires can_read_temp.")
	}

	alice, err := newAgent("alice", cfg.alice)
	if err != nil {
		return err
	}
	stopAlice, err := start(ctx, alice)
	if err != nil {
		return err
	}
	defer stopAlice()
	bobby, err := newAgent("bobby", cfg.bobby)
	if err != nil {
		return err
	}
	stopBobby, err := start(ctx, bobby)
	if err != nil {
		return err
	}
	defer stopBobby()

	reading, err := agent.CallAs[station.Reading](ctx, alice, station.Identity, "temperature", station.TemperatureArgs{City: "paris"})
	if err != nil {
		return fmt.Errorf("alice's call failed: %w", err)
	}
	fmt.Fprintf(stdout, "Alice called weather.temperature: %s.\n", reading)

	_, err = agent.CallAs[station.Reading](ctx, bobby, station.Identity, "temperature", station.TemperatureArgs{City: "paris"})
	var rerr *rpc.Error
	switch {
	case err == nil:
		return errors.New("bobby's call was allowed, but he holds no can_read_temp")
	case !errors.Is(err, rpc.ErrUnauthorized) || !errors.As(err, &rerr):
		return fmt.Errorf("bobby's call failed for another reason: %w", err)
	}
	fmt.Fprintf(stdout, "Bobby called weather.temperature and the platform refused: %s\n", rerr.Message())
	fmt.Fprintf(stdout, "Bobby is missing: %v\n", rerr.Missing())
	if st != nil {
		fmt.Fprintf(stdout, "The weather agent served %d call(s): Bobby's never reached it.\n", st.Served("temperature"))
	}
	if st == nil || cfg.operator == nil {
		return nil
	}
	return configChange(ctx, cfg, newAgent, alice, st, stdout)
}

// configChange has the operator store the weather agent's configuration
// entry, as "capbus config store weather config f.json" would, and shows
// the weather agent following it.
func configChange(ctx context.Context, cfg config, newAgent func(string, keys.Pair) (*agent.Agent, error),
	alice *agent.Agent, st *station.Station, stdout io.Writer) error {
	op, err := newAgent("operator", *cfg.operator)
	if err != nil {
		return err
	}
	stop, err := start(ctx, op)
	if err != nil {
		return err
	}
	defer stop()
	settings := []byte(`{"units": "F"}`)
	e, err := op.ConfigStore(station.Identity).Put(ctx, station.ConfigName, configstore.KindJSON, settings)
	if err != nil {
		return fmt.Errorf("the operator's configuration change failed: %w", err)
	}
	fmt.Fprintf(stdout, "The operator stored the weather agent's %q entry (version %d): %s\n", e.Name, e.Version, settings)
	if err := st.WaitApplied(ctx, e.Revision); err != nil {
		return err
	}
	reading, err := agent.CallAs[station.Reading](ctx, alice, station.Identity, "temperature", station.TemperatureArgs{City: "paris"})
	if err != nil {
		return fmt.Errorf("alice's second call failed: %w", err)
	}
	fmt.Fprintf(stdout, "Alice called weather.temperature: %s.\n", reading)
	if reading.Units != "F" {
		return fmt.Errorf("the weather agent still reports in °%s after the configuration change", reading.Units)
	}
	fmt.Fprintln(stdout, "The weather agent now reports in °F after a config change.")
	return nil
}
