package curve_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/keys"
)

// A platform listens as a CURVE ROUTER and admits one agent key; the agent
// dials as a DEALER. Both sides read and write whole multipart messages;
// the conns do the encryption.
func ExampleListen() {
	platform, _ := keys.Generate()
	agent, _ := keys.Generate()

	admit := curve.AuthenticatorFunc(func(ctx context.Context, req curve.AuthRequest) (string, error) {
		if req.PublicKey == agent.Public {
			return "weather-user", nil
		}
		return "", fmt.Errorf("unknown key")
	})
	l, err := curve.Listen(context.Background(), "tcp://127.0.0.1:0", platform, curve.WithAuthenticator(admit))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	done := make(chan struct{})
	go func() { // the platform side: one conn that answers once
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			log.Print(err)
			return
		}
		defer c.Close()
		frames, err := c.ReadMsg()
		if err != nil {
			log.Print(err)
			return
		}
		fmt.Printf("platform: %q from user %s\n", frames, c.Peer().UserID)
		_ = c.WriteMsg([][]byte{[]byte("pong"), frames[1]})
	}()

	c, err := curve.Dial(context.Background(), l.Addr().String(), agent, platform.Public, curve.WithIdentity("weather"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMsg([][]byte{[]byte("ping"), []byte("42")}); err != nil {
		log.Fatal(err)
	}
	reply, err := c.ReadMsg()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("agent: %q\n", reply)
	<-done
	// Output:
	// platform: ["ping" "42"] from user weather-user
	// agent: ["pong" "42"]
}

// A zmq4 program runs zmq4's ZMTP session over a CURVE conn through the
// adapter.
func ExampleNewZMQ4Conn() {
	server, _ := keys.Generate()
	client, _ := keys.Generate()
	admit := curve.AuthenticatorFunc(func(ctx context.Context, req curve.AuthRequest) (string, error) {
		return "any", nil
	})
	l, err := curve.Listen(context.Background(), "127.0.0.1:0", server, curve.WithAuthenticator(admit))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		zc, err := zmq4.Open(curve.NewZMQ4Conn(c), null.Security(), zmq4.Router, nil, true, nil)
		if err != nil {
			return
		}
		if m, err := zc.RecvMsg(); err == nil {
			_ = zc.SendMsg(m) // echo
		}
	}()

	c, err := curve.Dial(context.Background(), l.Addr().String(), client, server.Public)
	if err != nil {
		log.Fatal(err)
	}
	zc, err := zmq4.Open(curve.NewZMQ4Conn(c), null.Security(), zmq4.Dealer, nil, false, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer zc.Close()
	_ = zc.SendMsg(zmq4.NewMsgString("hello over CURVE"))
	m, err := zc.RecvMsg()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(m.Frames[0]))
	// Output: hello over CURVE
}

// Dial refuses to talk to a server that does not hold the expected key, and
// reports a server's refusal as ErrRefused.
func ExampleDial() {
	server, _ := keys.Generate()
	client, _ := keys.Generate()
	refuseAll := curve.AuthenticatorFunc(func(context.Context, curve.AuthRequest) (string, error) {
		return "", fmt.Errorf("not on the list")
	})
	l, err := curve.Listen(context.Background(), "127.0.0.1:0", server, curve.WithAuthenticator(refuseAll))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	_, err = curve.Dial(context.Background(), l.Addr().String(), client, server.Public)
	var refused *curve.RefusedError
	if errors.As(err, &refused) {
		fmt.Println("refused with reason", refused.Reason)
	}
	// Output:
	// refused with reason 400
}
