// Command weather runs the capbus example weather agent against a platform.
//
// It exports temperature (needs can_read_temp), forecast (needs
// can_read_temp and can_read_weather_data) and set_units (needs role admin),
// and publishes readings on "weather/<city>/temperature". Its cities and
// units come from its configuration entry "config", which it follows live:
//
//	capbus auth add weather --credentials "$(capbus keygen --out weather.json)" --identity weather
//	go run ./examples/weather --key weather.json
//	capbus config store weather config examples/weather/config.json
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
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
	home := os.Getenv("CAPBUS_HOME")
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = filepath.Join(h, ".capbus")
		}
	}
	address := os.Getenv("CAPBUS_ADDRESS")
	if address == "" {
		address = "tcp://127.0.0.1:22916"
	}
	flag.StringVar(&home, "home", home, "capbus home of a local platform, for its known_hosts (env CAPBUS_HOME)")
	flag.StringVar(&address, "address", address, "platform address (env CAPBUS_ADDRESS)")
	key := flag.String("key", "weather.json", "keystore file with this agent's key pair (capbus keygen --out)")
	serverKey := flag.String("server-key", "", "the platform's public key (default: from known_hosts in --home)")
	identity := flag.String("identity", station.Identity, "agent identity to claim")
	interval := flag.Duration("publish-interval", 5*time.Second, "how often to publish readings")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	opts := []agent.Option{agent.WithKeystore(*key), agent.WithAddress(address), agent.WithLogger(log)}
	if *serverKey != "" {
		k, err := keys.Parse(*serverKey)
		if err != nil {
			return fmt.Errorf("--server-key: %w", err)
		}
		opts = append(opts, agent.WithServerKey(k))
	} else {
		opts = append(opts, agent.WithKnownHosts(filepath.Join(home, "known_hosts")))
	}
	a, err := agent.New(*identity, opts...)
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
			fmt.Printf("weather agent connected to %s as %q\n", address, *identity)
		case <-ctx.Done():
		}
	}()
	go st.Publish(ctx, a, *interval)
	return a.Run(ctx)
}
