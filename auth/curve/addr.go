package curve

import (
	"fmt"
	"net"
	"strings"
)

// tcpAddress turns "tcp://host:port" or "host:port" into "host:port"; a
// host of "*" means every interface, as in ZeroMQ endpoints.
func tcpAddress(addr string) (string, error) {
	if i := strings.Index(addr, "://"); i >= 0 {
		if scheme := addr[:i]; scheme != "tcp" {
			return "", fmt.Errorf("curve: unsupported transport %q in %q (want tcp)", scheme, addr)
		}
		addr = addr[i+3:]
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("curve: bad address %q: %w", addr, err)
	}
	if host == "*" {
		host = ""
	}
	return net.JoinHostPort(host, port), nil
}
