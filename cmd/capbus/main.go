// Command capbus operates a capbus platform: it runs the platform, makes
// keys, edits and explains auth.json, and pokes the bus as a small agent of
// its own (peers, ping, call, publish, subscribe).
//
// Run "capbus --help" for the commands, and "capbus COMMAND --help" for each
// one's flags and examples.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
