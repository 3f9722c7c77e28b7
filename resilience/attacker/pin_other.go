//go:build !linux

package main

import "fmt"

// pinSelf is not supported here: the suite runs on Linux.
func pinSelf(cpu int) error {
	return fmt.Errorf("%w: running on CPU %d needs Linux", errUsage, cpu)
}
