package agent

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/capbus/capbus/auth"
)

// lookupKnownHost finds the server key of addr in a known-hosts file.
func lookupKnownHost(path, addr string) (auth.Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return auth.Key{}, fmt.Errorf("agent: known hosts: %w", err)
	}
	defer f.Close()
	want := trimScheme(addr)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return auth.Key{}, fmt.Errorf("agent: %s:%d: want \"address serverkey\", got %d fields", path, n, len(fields))
		}
		if trimScheme(fields[0]) != want {
			continue
		}
		k, err := auth.ParseKey(fields[1])
		if err != nil {
			return auth.Key{}, fmt.Errorf("agent: %s:%d: %w", path, n, err)
		}
		return k, nil
	}
	if err := sc.Err(); err != nil {
		return auth.Key{}, fmt.Errorf("agent: known hosts: %w", err)
	}
	return auth.Key{}, fmt.Errorf("agent: %s: no entry for %s", path, addr)
}

func trimScheme(addr string) string { return strings.TrimPrefix(addr, "tcp://") }
