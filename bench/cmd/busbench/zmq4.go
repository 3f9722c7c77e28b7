package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/go-zeromq/zmq4"
)

// The zmq4 contender: a raw ROUTER relay with NULL security, the shape of the
// capbus platform without CURVE, policy or VIP. A DEALER sends
// [recipient, payload]; the ROUTER receives [sender, recipient, payload] and
// sends [recipient, sender, payload], which the recipient receives as
// [sender, payload]. An empty recipient asks the relay to answer "ok": peers
// use it to know that the relay has registered them (a zmq4 ROUTER silently
// drops what it cannot route).

var okFrame = []byte("ok")

// zmqBroker is the relay process.
type zmqBroker struct {
	sck  zmq4.Socket
	done chan struct{}
}

func startZmqBroker(ctx context.Context) (server, error) {
	sck := zmq4.NewRouter(ctx)
	if err := sck.Listen("tcp://127.0.0.1:0"); err != nil {
		return nil, err
	}
	b := &zmqBroker{sck: sck, done: make(chan struct{})}
	go b.relay()
	return b, nil
}

func (b *zmqBroker) relay() {
	defer close(b.done)
	for {
		msg, err := b.sck.Recv()
		if err != nil {
			return
		}
		if len(msg.Frames) != 3 {
			continue
		}
		from, to, payload := msg.Frames[0], msg.Frames[1], msg.Frames[2]
		if len(to) == 0 {
			_ = b.sck.Send(zmq4.NewMsgFrom(from, nil, okFrame))
			continue
		}
		if err := b.sck.Send(zmq4.NewMsgFrom(to, from, payload)); err != nil {
			return
		}
	}
}

func (b *zmqBroker) readyLine() string { return "addr=tcp://" + b.sck.Addr().String() }

func (b *zmqBroker) close() { _ = b.sck.Close(); <-b.done }

// dialZmqDealer connects a DEALER with the given identity and waits until
// the relay answers it.
func dialZmqDealer(ctx context.Context, addr, identity string) (zmq4.Socket, error) {
	sck := zmq4.NewDealer(ctx, zmq4.WithID(zmq4.SocketIdentity(identity)), zmq4.WithDialerMaxRetries(50), zmq4.WithDialerRetry(20*time.Millisecond))
	if err := sck.Dial(addr); err != nil {
		return nil, err
	}
	if err := sck.Send(zmq4.NewMsgFrom(nil, nil)); err != nil {
		_ = sck.Close()
		return nil, err
	}
	msg, err := sck.Recv()
	if err != nil {
		_ = sck.Close()
		return nil, err
	}
	if len(msg.Frames) != 2 || !bytes.Equal(msg.Frames[1], okFrame) {
		_ = sck.Close()
		return nil, fmt.Errorf("relay answered %q", msg.Frames)
	}
	return sck, nil
}

// zmqCallee echoes every request back to its sender.
type zmqCallee struct {
	sck  zmq4.Socket
	done chan struct{}
}

func startZmqCallee(ctx context.Context, cfg *roleConfig) (server, error) {
	sck, err := dialZmqDealer(ctx, cfg.addr, calleeID)
	if err != nil {
		return nil, err
	}
	c := &zmqCallee{sck: sck, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			msg, err := sck.Recv()
			if err != nil {
				return
			}
			if err := sck.Send(msg); err != nil { // [sender, payload] back to sender
				return
			}
		}
	}()
	return c, nil
}

func (c *zmqCallee) readyLine() string { return "" }

func (c *zmqCallee) close() { _ = c.sck.Close(); <-c.done }

// zmqClient is the caller DEALER. Calls of all slots share the socket; a
// reader goroutine hands each reply to the slot named in its first two
// bytes.
type zmqClient struct {
	sck     zmq4.Socket
	replies []chan []byte
	done    chan struct{}
	callee  []byte
}

func dialZmq4(ctx context.Context, cfg *roleConfig, slots int) (client, error) {
	sck, err := dialZmqDealer(ctx, cfg.addr, callerID)
	if err != nil {
		return nil, err
	}
	c := &zmqClient{sck: sck, replies: make([]chan []byte, slots), done: make(chan struct{}), callee: []byte(calleeID)}
	for i := range c.replies {
		c.replies[i] = make(chan []byte, 1)
	}
	go func() {
		defer close(c.done)
		for {
			msg, err := sck.Recv()
			if err != nil {
				return
			}
			if len(msg.Frames) != 2 || len(msg.Frames[1]) < 2 {
				continue
			}
			slot := int(binary.BigEndian.Uint16(msg.Frames[1]))
			if slot < len(c.replies) {
				c.replies[slot] <- msg.Frames[1]
			}
		}
	}()
	// Check once that the echo comes back intact.
	p := make([]byte, payloadSize)
	p[7] = 42
	if err := c.send(p); err != nil {
		c.close()
		return nil, err
	}
	select {
	case got := <-c.replies[0]:
		if !bytes.Equal(got, p) {
			c.close()
			return nil, errors.New("first call: echo differs from the request")
		}
	case <-time.After(callTimeout):
		c.close()
		return nil, errors.New("first call: no reply")
	}
	return c, nil
}

func (c *zmqClient) send(payload []byte) error {
	return c.sck.Send(zmq4.NewMsgFrom(c.callee, payload))
}

func (c *zmqClient) call(ctx context.Context, slot int, payload []byte) error {
	if err := c.send(payload); err != nil {
		return err
	}
	t := time.NewTimer(callTimeout)
	defer t.Stop()
	select {
	case <-c.replies[slot]:
		return nil
	case <-c.done:
		return errors.New("connection closed")
	case <-t.C:
		return errors.New("no reply (the relay drops what it cannot route)")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *zmqClient) close() { _ = c.sck.Close(); <-c.done }
