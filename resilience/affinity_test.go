//go:build linux

package resilience

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// cpus splits the machine's CPUs between the attacker (the last one) and
// everything else: the platform and the legitimate traffic. So an
// attacker's own work, which would run on another machine in a real
// attack, does not take the CPU the suite measures the platform on; what
// the platform spends on an attack does. With one CPU there is no split.
type cpus struct {
	legit    unix.CPUSet
	attacker int // -1: no split
}

func splitCPUs() cpus {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil || all.Count() < 2 {
		return cpus{attacker: -1}
	}
	c := cpus{legit: all, attacker: -1}
	for cpu := runtime.NumCPU() * 8; cpu >= 0; cpu-- {
		if all.IsSet(cpu) {
			c.attacker = cpu
			c.legit.Clear(cpu)
			break
		}
	}
	return c
}

// pin sets the affinity of every thread of process pid (0: this process)
// to set. Threads made later inherit it from the thread that makes them.
func pin(pid int, set *unix.CPUSet) error {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may exit meanwhile: ESRCH is not an error.
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d of %s: %w", tid, dir, err)
		}
	}
	return nil
}
