package curve

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/capbus/capbus/keys"
)

// Dial connects to a CURVE server at addr ("tcp://host:port" or
// "host:port"), proves the client key pair and checks that the server holds
// the secret key of serverKey. The returned conn is ready for
// zmq4.Open(conn, null.Security(), zmq4.Dealer, ...). If the server refuses
// the client, the error matches ErrRefused and is a *RefusedError with the
// server's reason. Dial takes the options WithSocketType (default
// "DEALER"), WithIdentity, WithHandshakeTimeout, WithMaxFrameSize and
// WithLogger.
func Dial(ctx context.Context, addr string, client keys.Pair, serverKey keys.Key, opts ...Option) (*Conn, error) {
	o := newOptions("DEALER", opts)
	hostport, err := tcpAddress(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.handshakeTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("curve: dial %s: %w", hostport, err)
	}
	if o.wrapConn != nil {
		raw = o.wrapConn(raw)
	}
	wr := &waitReader{r: raw}
	br := bufio.NewReaderSize(wr, readBufferSize)
	s, err := withDeadline(ctx, raw, func() (session, error) {
		return clientHandshake(raw, br, client, serverKey, &o)
	})
	if err != nil {
		raw.Close()
		o.logger.Warn("curve: handshake with server failed", "remote", hostport, "server_key", serverKey.Z85(), "reason", err)
		return nil, fmt.Errorf("%w: with %s: %w", ErrHandshake, hostport, err)
	}
	s.peer.RemoteAddr = raw.RemoteAddr().String()
	c := newConn(raw, br, s, &o, false)
	c.wr = wr
	return c, nil
}

// longAgo is a deadline in the past, to interrupt blocked I/O.
var longAgo = time.Unix(1, 0)

// withDeadline runs the handshake fn on raw with the context's deadline as
// I/O deadline; cancelling ctx interrupts it. The deadline is cleared when
// fn succeeds.
func withDeadline(ctx context.Context, raw net.Conn, fn func() (session, error)) (session, error) {
	if d, ok := ctx.Deadline(); ok {
		raw.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(longAgo) })
	s, err := func() (s session, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = errPanic(p)
			}
		}()
		return fn()
	}()
	stopped := stop()
	if cerr := ctx.Err(); cerr != nil || !stopped || (err != nil && isTimeout(err)) {
		if cerr == nil {
			cerr = context.DeadlineExceeded
		}
		if err == nil {
			err = cerr
		} else {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
	}
	if err != nil {
		return s, err
	}
	return s, raw.SetDeadline(time.Time{})
}
