package curve_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/auth/curve"
)

// A platform listens as a CURVE ROUTER and admits one agent key; the agent
// dials as a DEALER. Both sides run zmq4's ZMTP over the CURVE conns with
// the NULL mechanism: the conns do the encryption.
func ExampleListen() {
	platform, _ := auth.GenerateKeyPair()
	agent, _ := auth.GenerateKeyPair()

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
	go func() { // the platform side: one ROUTER conn that answers once
		defer close(done)
		c, err := l.AcceptConn()
		if err != nil {
			log.Print(err)
			return
		}
		defer c.Close()
		zc, err := zmq4.Open(c, null.Security(), zmq4.Router, nil, true, nil)
		if err != nil {
			log.Print(err)
			return
		}
		msg, err := zc.RecvMsg()
		if err != nil {
			log.Print(err)
			return
		}
		peer, _ := l.Lookup(c.Peer().RoutingID)
		fmt.Printf("platform: %q from user %s\n", msg.Frames, peer.UserID)
		zc.SendMsg(zmq4.NewMsgFrom([]byte("pong"), msg.Frames[1]))
	}()

	c, err := curve.Dial(context.Background(), l.Addr().String(), agent, platform.Public, curve.WithIdentity("weather"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	zc, err := zmq4.Open(c, null.Security(), zmq4.Dealer, nil, false, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := zc.SendMsg(zmq4.NewMsgFrom([]byte("ping"), []byte("42"))); err != nil {
		log.Fatal(err)
	}
	reply, err := zc.RecvMsg()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("agent: %q\n", reply.Frames)
	<-done
	// Output:
	// platform: ["ping" "42"] from user weather-user
	// agent: ["pong" "42"]
}

// Dial refuses to talk to a server that does not hold the expected key, and
// reports a server's refusal as ErrRefused.
func ExampleDial() {
	server, _ := auth.GenerateKeyPair()
	client, _ := auth.GenerateKeyPair()
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
