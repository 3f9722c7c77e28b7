package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The NATS contender: nats-server embedded in the broker process, a callee
// replying from a subscription, a caller using nc.Request (one shared reply
// subscription, a fresh reply subject per request).

const natsSubject = "echo"

type natsBroker struct{ s *natsserver.Server }

func startNATSBroker() (server, error) {
	s, err := natsserver.NewServer(&natsserver.Options{
		Host:   "127.0.0.1",
		Port:   natsserver.RANDOM_PORT,
		NoLog:  true,
		NoSigs: true,
	})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats-server not ready within 10s")
	}
	return &natsBroker{s: s}, nil
}

func (b *natsBroker) readyLine() string { return "addr=" + b.s.ClientURL() }

func (b *natsBroker) close() { b.s.Shutdown(); b.s.WaitForShutdown() }

type natsCallee struct{ nc *nats.Conn }

func startNATSCallee(cfg *roleConfig) (server, error) {
	nc, err := nats.Connect(cfg.addr)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Subscribe(natsSubject, func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		nc.Close()
		return nil, err
	}
	if err := nc.Flush(); err != nil { // the server has the subscription
		nc.Close()
		return nil, err
	}
	return &natsCallee{nc: nc}, nil
}

func (c *natsCallee) readyLine() string { return "" }

func (c *natsCallee) close() { _ = c.nc.Drain(); c.nc.Close() }

type natsClient struct{ nc *nats.Conn }

func dialNATS(cfg *roleConfig) (client, error) {
	nc, err := nats.Connect(cfg.addr)
	if err != nil {
		return nil, err
	}
	p := make([]byte, payloadSize)
	p[7] = 42
	m, err := nc.Request(natsSubject, p, callTimeout)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("first call: %w", err)
	}
	if !bytes.Equal(m.Data, p) {
		nc.Close()
		return nil, errors.New("first call: echo differs from the request")
	}
	return &natsClient{nc: nc}, nil
}

func (c *natsClient) call(_ context.Context, _ int, payload []byte) error {
	_, err := c.nc.Request(natsSubject, payload, callTimeout)
	return err
}

func (c *natsClient) close() { c.nc.Close() }
