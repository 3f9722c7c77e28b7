package keys

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/capbus/capbus/internal/atomicfile"
)

// ErrNoKnownHost is returned (wrapped) by LookupKnownHost when the file has
// no line for the address.
var ErrNoKnownHost = errors.New("no known_hosts entry")

// LookupKnownHost finds the platform key of address in a known_hosts file:
// a text file of "address key" lines (keys in any form Parse accepts);
// blank lines and lines starting with # are ignored. Addresses match with
// or without their "tcp://" prefix. A malformed line is skipped with a
// warning on log (nil: slog.Default) naming the file and the line, so one
// bad line never locks every agent out. The last line for the address
// wins, as AddKnownHost replaces lines in place.
func LookupKnownHost(path, address string, log *slog.Logger) (Key, error) {
	if log == nil {
		log = slog.Default()
	}
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("known_hosts: %w", err)
	}
	defer f.Close()
	want := trimScheme(address)
	var found Key
	ok := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			log.Warn("known_hosts: skipping a malformed line", "file", path, "line", n,
				"reason", fmt.Sprintf("want \"address key\", got %d fields", len(fields)))
			continue
		}
		if trimScheme(fields[0]) != want {
			continue
		}
		k, err := Parse(fields[1])
		if err != nil {
			log.Warn("known_hosts: skipping a malformed line", "file", path, "line", n, "reason", err.Error())
			continue
		}
		found, ok = k, true
	}
	if err := sc.Err(); err != nil {
		return Key{}, fmt.Errorf("known_hosts %s: %w", path, err)
	}
	if !ok {
		return Key{}, fmt.Errorf("%s: %w for %s", path, ErrNoKnownHost, address)
	}
	return found, nil
}

// AddKnownHost records "address key" in the known_hosts file at path,
// replacing the line of the same address, atomically (mode 0644: the file
// holds only public keys). An empty address is refused: a line without an
// address would be useless to every reader.
func AddKnownHost(path, address string, k Key) error {
	if strings.TrimSpace(trimScheme(address)) == "" || strings.ContainsAny(address, " \t\n") {
		return fmt.Errorf("known_hosts %s: refusing to record the address %q", path, address)
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	want := trimScheme(address)
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		f := strings.Fields(line)
		if line == "" || (len(f) == 2 && trimScheme(f[0]) == want) {
			continue
		}
		out = append(out, line)
	}
	out = append(out, address+" "+k.Z85())
	return atomicfile.Write(path, []byte(strings.Join(out, "\n")+"\n"), 0o644)
}

func trimScheme(addr string) string { return strings.TrimPrefix(addr, "tcp://") }
