package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/capbus/capbus/platform"
)

// limitFlags registers a flag for every field of platform.Limits on fs,
// each defaulting to platform.DefaultLimits, and returns the Limits they
// fill in.
func limitFlags(fs *pflag.FlagSet) *platform.Limits {
	l := platform.DefaultLimits()
	size := func(p *int64, name, usage string) {
		fs.Var((*byteSize)(p), name, usage+" (bytes; KiB, MiB, GiB accepted)")
	}
	sizeInt := func(p *int, name, usage string) {
		fs.Var((*byteSizeInt)(p), name, usage+" (bytes; KiB, MiB, GiB accepted)")
	}
	size(&l.MaxFrameSize, "max-frame-size", "largest frame, and message, a peer may send; beyond it the connection is closed")
	fs.IntVar(&l.MaxFrames, "max-frames", l.MaxFrames, "most frames in one message a peer sends; beyond it the connection is closed")
	fs.IntVar(&l.QueueMessages, "queue-messages", l.QueueMessages, "messages queued towards one connection; beyond it calls get errno 105 and deliveries are dropped")
	size(&l.QueueBytes, "queue-bytes", "bytes queued towards one connection; beyond it calls get errno 105 and deliveries are dropped")
	size(&l.UserQueueBytes, "user-queue-bytes", "bytes queued towards all the connections of one user")
	size(&l.TotalQueueBytes, "total-queue-bytes", "bytes queued towards all connections of the platform")
	fs.DurationVar(&l.SlowConsumer, "slow-consumer", l.SlowConsumer, "how long a connection may leave its queue full, or take to accept a write, before it is closed")
	fs.IntVar(&l.MaxConnections, "max-connections", l.MaxConnections, "connections of the platform; beyond it handshakes are refused (try again later)")
	fs.IntVar(&l.MaxConnectionsPerKey, "max-connections-per-key", l.MaxConnectionsPerKey, "connections of one CURVE key")
	fs.IntVar(&l.MaxPreHello, "max-pre-hello", l.MaxPreHello, "connections that have not said hello yet")
	fs.DurationVar(&l.HelloTimeout, "hello-timeout", l.HelloTimeout, "how long a connection may take to say hello before it is closed")
	fs.DurationVar(&l.HandshakeTimeout, "handshake-timeout", l.HandshakeTimeout, "longest CURVE handshake")
	fs.IntVar(&l.MaxPendingHandshakes, "max-pending-handshakes", l.MaxPendingHandshakes, "CURVE handshakes in progress at once; beyond it new TCP connections are closed at once")
	fs.IntVar(&l.HandshakeFailures, "handshake-failures", l.HandshakeFailures, "failed handshakes from one host within a minute before its handshakes are answered \"busy\" for a backoff (1 s doubling to 1 min)")
	fs.IntVar(&l.MaxCallsInFlight, "max-calls-in-flight", l.MaxCallsInFlight, "calls of one connection awaiting replies; beyond it calls get errno 105")
	fs.DurationVar(&l.MaxCallTime, "max-call-time", l.MaxCallTime, "longest time the platform keeps a call awaiting its reply (errno 110 after it)")
	fs.IntVar(&l.MaxSubscriptions, "max-subscriptions", l.MaxSubscriptions, "subscriptions of one connection; beyond it subscribe gets errno 105")
	fs.IntVar(&l.MaxUserSubscriptions, "max-user-subscriptions", l.MaxUserSubscriptions, "subscriptions of all the connections of one user")
	sizeInt(&l.MaxPing, "max-ping", "arguments of one ping after hello")
	sizeInt(&l.MaxPingBeforeHello, "max-ping-before-hello", "arguments of one ping before hello")
	return &l
}

// byteSize is a pflag.Value for a size in bytes written with an optional
// unit: 4096, 64KiB, 2MiB, 1GiB (KB, MB, GB are read as their binary
// counterparts too).
type byteSize int64

func (b *byteSize) String() string { return formatSize(int64(*b)) }

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) Type() string { return "size" }

// byteSizeInt is byteSize for an int field.
type byteSizeInt int

func (b *byteSizeInt) String() string { return formatSize(int64(*b)) }

func (b *byteSizeInt) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	if int64(int(n)) != n {
		return fmt.Errorf("%s is too large", s)
	}
	*b = byteSizeInt(n)
	return nil
}

func (b *byteSizeInt) Type() string { return "size" }

var sizeUnits = []struct {
	suffix string
	shift  uint
}{
	{"KiB", 10}, {"MiB", 20}, {"GiB", 30},
	{"KB", 10}, {"MB", 20}, {"GB", 30},
	{"K", 10}, {"M", 20}, {"G", 30},
	{"B", 0},
}

// parseSize reads a positive size in bytes with an optional unit.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	shift := uint(0)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, shift = strings.TrimSpace(rest), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size: want a positive number of bytes, optionally with KiB, MiB or GiB (2MiB)", s)
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n << shift, nil
}

// formatSize writes n with the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
