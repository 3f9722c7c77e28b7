// Command busbench is capbus's cross-stack benchmark: RPC round trips of a
// 200-byte payload, caller -> broker -> callee and back, with caller, broker
// and callee as three separate processes on 127.0.0.1, for
//
//   - capbus: the platform (CURVE on, auth.json policy on) with a callee agent
//     exporting "echo" behind rpc.Allow("can_echo") and a caller agent
//     granted can_echo;
//   - zmq4: a raw go-zeromq/zmq4 ROUTER relay with NULL security, DEALER
//     callee and caller, frames [recipient, payload] like VIP;
//   - nats: nats-server embedded in the broker process, callee replying from
//     nc.Subscribe, caller using nc.Request.
//
// Each stack is measured with one call outstanding and with 64 in flight
// (64 goroutines, each with one outstanding call). It reports calls/s, p50
// and p99 latency, CPU time per call of each process (getrusage of the
// process over the measurement window), allocations per call, and for capbus
// the memory per idle connected agent, the routing rate with 10 and 1,000
// connected agents and the share of the platform's CPU spent in the policy
// check (from a CPU profile of the platform process).
//
// Usage, from the bench module (the bench directory of the repository):
//
//	go run ./cmd/busbench                 # full run (about 2 minutes)
//	go run ./cmd/busbench -quick          # smoke run (a few seconds per cell)
//	go run ./cmd/busbench -runs 3         # medians of 3 runs of every cell
//
// The command re-executes itself for each process: "busbench role=broker
// ...", "role=callee", "role=caller", "role=idle". The processes synchronise
// through lines on their standard input and output, never by sleeping.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "role=") {
		role := strings.TrimPrefix(os.Args[1], "role=")
		if err := runRole(role, os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "busbench %s: %v\n", role, err)
			os.Exit(1)
		}
		return
	}
	run := orchestrate
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "pubsub":
			run, args = orchestratePubsub, args[1:]
		case "scale":
			run, args = orchestrateScale, args[1:]
		}
	}
	if err := run(args); err != nil {
		fmt.Fprintln(os.Stderr, "busbench:", err)
		os.Exit(1)
	}
}
