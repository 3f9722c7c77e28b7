// Command weather runs the capbus example weather agent against a platform.
//
// It exports temperature (needs can_read_temp), forecast (needs
// can_read_temp and can_read_weather_data) and set_units (needs role admin),
// and publishes readings on "weather/<city>/temperature". Its cities and
// units come from its configuration entry "config", which it follows live:
//
//	capbus auth add weather --identity weather --credentials "$(capbus keygen --out ~/.capbus/keys/weather.json)"
//	go run ./examples/weather
//	capbus config store weather config examples/weather/config.json
//
// It finds the platform the way agent.FromEnv does ($CAPBUS_HOME,
// $CAPBUS_ADDRESS, known_hosts, keys/weather.json); --home, --address,
// --key and --server-key override.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/examples/weather/station"
	"github.com/capbus/capbus/keys"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "weather:", err)
		os.Exit(1)
	}
}

func run() error {
	home := flag.String("home", "", "capbus home of a local platform, for its known_hosts and keys/ (default $CAPBUS_HOME or ~/.capbus)")
	address := flag.String("address", "", "platform address (default $CAPBUS_ADDRESS or "+agent.DefaultAddress+")")
	key := flag.String("key", "", "keystore file with this agent's key pair (default $CAPBUS_KEYSTORE or <home>/keys/<identity>.json)")
	serverKey := flag.String("server-key", "", "the platform's public key (default: from known_hosts in the home)")
	identity := flag.String("identity", station.Identity, "agent identity to claim")
	interval := flag.Duration("publish-interval", 5*time.Second, "how often to publish readings")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// FromEnv finds the address, the platform's key and this agent's key
	// pair; each flag given overrides what it found.
	opts := []agent.Option{agent.WithLogger(log)}
	if *home != "" {
		if err := os.Setenv(agent.EnvHome, *home); err != nil {
			return err
		}
	}
	if *address != "" {
		opts = append(opts, agent.WithAddress(*address))
	}
	if *key != "" {
		opts = append(opts, agent.WithKeystore(*key))
	}
	if *serverKey != "" {
		k, err := keys.Parse(*serverKey)
		if err != nil {
			return fmt.Errorf("--server-key: %w", err)
		}
		opts = append(opts, agent.WithServerKey(k))
	}
	a, err := agent.FromEnv(*identity, opts...)
	if err != nil {
		return err
	}
	st := station.New(log)
	if err := st.Register(a); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		select {
		case <-a.Ready():
			w, _ := a.Welcome()
			fmt.Printf("weather agent connected as %q (user %s)\n", w.Identity, w.UserID)
		case <-ctx.Done():
		}
	}()
	go st.Publish(ctx, a, *interval)
	return a.Run(ctx)
}
