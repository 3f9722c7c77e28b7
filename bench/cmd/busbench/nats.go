package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The NATS contender: nats-server embedded in the broker process, a callee
// replying from a subscription, a caller using nc.Request (one shared reply
// subscription, a fresh reply subject per request).
//
// The nats-tls contender is the same with TLS between every client and the
// server (TLS 1.3, the Go defaults, an ECDSA P-256 certificate made by the
// broker for 127.0.0.1 and passed to the clients, which verify it), so that
// an encrypted bus is also compared with an encrypted bus.

const natsSubject = "echo"

type natsBroker struct {
	s    *natsserver.Server
	cert []byte // DER of the server certificate (nats-tls), or nil
}

func startNATSBroker(withTLS bool) (server, error) {
	opts := &natsserver.Options{
		Host:   "127.0.0.1",
		Port:   natsserver.RANDOM_PORT,
		NoLog:  true,
		NoSigs: true,
	}
	var der []byte
	if withTLS {
		cert, err := selfSignedCert()
		if err != nil {
			return nil, err
		}
		der = cert.Certificate[0]
		opts.TLS = true
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats-server not ready within 10s")
	}
	return &natsBroker{s: s, cert: der}, nil
}

func (b *natsBroker) readyLine() string {
	if b.cert == nil {
		return "addr=" + b.s.ClientURL()
	}
	addr := b.s.Addr().(*net.TCPAddr)
	return fmt.Sprintf("addr=tls://%s key=%s", addr, base64.StdEncoding.EncodeToString(b.cert))
}

// selfSignedCert makes the nats-tls broker's certificate, valid for
// 127.0.0.1 for a day.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "busbench nats-tls"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// natsConnect connects to the broker at cfg.addr; with a certificate in
// cfg.serverKey (nats-tls), over TLS verified against it. nats.Connect
// returns after the server answered a PING, so the connection is open and
// registered at the server.
func natsConnect(cfg *roleConfig, opts ...nats.Option) (*nats.Conn, error) {
	if cfg.serverKey == "" {
		return nats.Connect(cfg.addr, opts...)
	}
	der, err := base64.StdEncoding.DecodeString(cfg.serverKey)
	if err != nil {
		return nil, fmt.Errorf("-key: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("-key: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return nats.Connect(cfg.addr, append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))...)
}

func (b *natsBroker) close() { b.s.Shutdown(); b.s.WaitForShutdown() }

type natsCallee struct{ nc *nats.Conn }

func startNATSCallee(cfg *roleConfig) (server, error) {
	nc, err := natsConnect(cfg)
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
	nc, err := natsConnect(cfg)
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
