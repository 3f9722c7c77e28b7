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
// Two more suites, for the platform's scale:
//
//   - busbench pubsub: publish latency (one publish at a time) with 10 and
//     with 32,000 subscriptions on the platform, one of them matching
//     (capbus against itself, same platform); fan-out from one publisher to
//     100 subscribers, delivered messages/s, capbus against NATS and NATS
//     with TLS.
//   - busbench scale: new connections per second (connect, hello, one round
//     trip, close), capbus against NATS with TLS and NATS; the platform's
//     memory per idle agent and the routing rate with 10 and with 10,000
//     agents connected (same platform: 10, 10,000, 10 again); a SIGKILL and
//     restart of the platform under 1,000 connected agents, timed until
//     every agent is back and serving.
//
// Usage, from the bench module (the bench directory of the repository):
//
//	go run ./cmd/busbench                 # full run (about 2 minutes)
//	go run ./cmd/busbench -quick          # smoke run (a few seconds per cell)
//	go run ./cmd/busbench -runs 3         # medians of 3 runs of every cell
//	go run ./cmd/busbench pubsub -runs 5  # the pub/sub figures
//	go run ./cmd/busbench scale -runs 3   # the scale figures (10,000 agents take minutes to connect)
//	go run ./cmd/busbench scale -cells conns,restart -runs 5
//
// Every agent of the benchmark has its own key and auth.json entry,
// derived from a seed the orchestrator passes to its children (keyring.go).
//
// The command re-executes itself for each process: "busbench role=broker
// ...", "role=callee", "role=caller" (also the publisher and the dialer),
// "role=idle", "role=subs", "role=fleet". The processes synchronise through
// lines on their standard input and output, never by sleeping.
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
