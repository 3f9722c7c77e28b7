package curve

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
)

func TestConn_QueueMsgHoldsUntilTryFlushAndKeepsTheOrder(t *testing.T) {
	client := newKeyPair(t)
	s := startMsgEchoServer(t, WithAuthenticator(allowKeys(map[auth.Key]string{client.Public: "u"})))
	c, _ := dealer(t, s.endpoint(), client, s.kp.Public)

	require.NoError(t, c.QueueMsg([][]byte{[]byte("1")}))
	require.NoError(t, c.QueueMsg([][]byte{[]byte("2"), []byte("two")}))
	held := c.Held()
	assert.Equal(t, 3*(2+messageOverhead)+1+1+3, held, "both messages sealed and held")
	done, err := c.TryFlush()
	require.NoError(t, err)
	assert.True(t, done)
	assert.Zero(t, c.Held())

	// A held message goes out before a later WriteMsg.
	require.NoError(t, c.QueueMsg([][]byte{[]byte("3")}))
	require.NoError(t, c.WriteMsg([][]byte{[]byte("4")}))
	for _, want := range []string{"1", "2", "3", "4"} {
		got, err := c.ReadMsg()
		require.NoError(t, err)
		assert.Equal(t, want, string(got[0]))
	}
}

// TestConn_TryFlushNeverWaitsForAPeerThatStoppedReading fills the socket
// towards a peer that reads nothing: TryFlush keeps returning (false once
// the socket is full) and the rest stays held; when the peer reads again,
// Uncork delivers every message in order.
func TestConn_TryFlushNeverWaitsForAPeerThatStoppedReading(t *testing.T) {
	client := newKeyPair(t)
	release := make(chan struct{})
	got := make(chan int, 1)
	s := startServer(t, func(c *Conn, _ chan<- zmq4.Msg) {
		defer c.Close()
		if _, err := zmq4.Open(c, null.Security(), zmq4.Router, nil, true, nil); err != nil {
			return
		}
		<-release
		for i := 0; ; i++ {
			frames, err := c.ReadMsg()
			if err != nil || string(frames[0]) == "end" {
				got <- i
				return
			}
			if string(frames[0]) != fmt.Sprint(i) {
				got <- -i
				return
			}
		}
	}, WithAuthenticator(allowKeys(map[auth.Key]string{client.Public: "u"})))
	c, _ := dealer(t, s.endpoint(), client, s.kp.Public)

	payload := bytes.Repeat([]byte("x"), 64<<10)
	sent := 0
	deadline := time.Now().Add(testTimeout)
	for {
		require.NoError(t, c.QueueMsg([][]byte{[]byte(fmt.Sprint(sent)), payload}))
		sent++
		done, err := c.TryFlush()
		require.NoError(t, err)
		if !done {
			break
		}
		require.True(t, time.Now().Before(deadline), "the socket never filled up")
	}
	assert.Positive(t, c.Held(), "the rest is held")
	close(release)
	require.NoError(t, c.WriteMsg([][]byte{[]byte("end")}))
	select {
	case n := <-got:
		assert.Equal(t, sent, n, "messages received in order before the end")
	case <-time.After(testTimeout):
		t.Fatal("the peer did not get everything")
	}
}

func TestConn_TryFlushOnAConnWithoutNonBlockingWritesLeavesItToUncork(t *testing.T) {
	client := newKeyPair(t)
	var writes atomic.Int64
	s := startMsgEchoServer(t, WithAuthenticator(allowKeys(map[auth.Key]string{client.Public: "u"})))
	c, _ := dealer(t, s.endpoint(), client, s.kp.Public, withCounters(new(atomic.Int64), &writes))
	before := writes.Load()
	require.NoError(t, c.QueueMsg([][]byte{[]byte("1")}))
	done, err := c.TryFlush()
	require.NoError(t, err)
	assert.False(t, done, "the counting wrapper offers no non-blocking write")
	assert.Equal(t, before, writes.Load())
	require.NoError(t, c.Uncork())
	assert.Equal(t, before+1, writes.Load())
	got, err := c.ReadMsg()
	require.NoError(t, err)
	assert.Equal(t, "1", string(got[0]))
}

func TestConn_OnReadWaitRunsOnlyWhenEverythingReceivedWasRead(t *testing.T) {
	client := newKeyPair(t)
	s := startMsgEchoServer(t, WithAuthenticator(allowKeys(map[auth.Key]string{client.Public: "u"})))
	c, _ := dealer(t, s.endpoint(), client, s.kp.Public)
	var waits []int
	read := 0
	c.OnReadWait(func() { waits = append(waits, read) })

	// Three messages in one write; the echo answers each, and the three
	// answers may arrive in one or more reads.
	c.Cork()
	for i := range 3 {
		require.NoError(t, c.WriteMsg([][]byte{[]byte(fmt.Sprint(i))}))
	}
	require.NoError(t, c.Uncork())
	for range 3 {
		_, err := c.ReadMsg()
		require.NoError(t, err)
		read++
	}
	require.NotEmpty(t, waits)
	assert.Equal(t, 0, waits[0], "called before the first read waited")
	for i := 1; i < len(waits); i++ {
		assert.Greater(t, waits[i], waits[i-1], "called at most once between two messages")
	}
}
