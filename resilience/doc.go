// Package resilience holds capbus's resilience suite: a real platform
// process (capbus platform run) under hostile inputs and faults while
// legitimate agents keep calling each other, with the platform's memory,
// goroutines and open files measured before, during and after each
// scenario. It has no API; run it with
//
//	go test ./resilience -run TestResilience -v          # quick mode, a few minutes
//	go test ./resilience -run TestResilience -v -long    # the attack sizes of issue 13
//
// docs/RESILIENCE.md describes every scenario, what is measured against
// what, and the figures of a quick and a long run.
package resilience
