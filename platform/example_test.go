package platform_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/capbus/capbus/platform"
)

// Example starts a platform on a free port of 127.0.0.1 with an auth.json
// and a keystore, waits until it listens, and stops it.
func Example() {
	dir, err := os.MkdirTemp("", "capbus-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	authFile := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(authFile, []byte(`{"allow": []}`), 0o600); err != nil {
		log.Fatal(err)
	}

	p, err := platform.New(
		platform.WithAddress("tcp://127.0.0.1:0"),
		platform.WithKeystore(filepath.Join(dir, "keystore.json")),
		platform.WithAuthFile(authFile),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	<-p.Ready()
	fmt.Println("listening:", p.Addr() != "", "server key:", len(p.ServerKey().Z85()), "chars")

	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// listening: true server key: 40 chars
	// stopped: <nil>
}
