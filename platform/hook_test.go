package platform

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAdmissionHook_RefusesOnlyFLDemoJob2WithItsReason(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []Admission
	)
	hook := AdmissionHookFunc(func(_ context.Context, a *Admission) error {
		mu.Lock()
		seen = append(seen, *a)
		mu.Unlock()
		if a.Principal.Identity == "FL-Demo-Job2" {
			return errors.New("job FL-Demo-Job2 uses the unsafe component custom_trainer")
		}
		return nil
	})
	tp := startPlatform(t, WithAdmissionHook(hook))

	job1 := tp.dial(t, tp.cast.fl)
	job1.mustHello("FL-Demo-Job1", rpc.NewExport("train"))

	job2 := tp.dial(t, tp.cast.fl)
	reply := job2.hello("FL-Demo-Job2", rpc.NewExport("train"))
	code, text := errnoOf(t, reply)
	assert.Equal(t, rpc.CodePermission, code)
	assert.Contains(t, text, "unsafe component custom_trainer")
	assert.True(t, job2.waitClosed(testTimeout))

	job3 := tp.dial(t, tp.cast.fl)
	job3.mustHello("FL-Demo-Job3")

	// Job1 is still served.
	id := job1.nextID()
	job1.sendStrings("", "VIP1", "", id, "peerlist", "list")
	listing := job1.expect(byMsgID(id))
	assert.Equal(t, []string{"FL-Demo-Job1", "FL-Demo-Job3"}, framesToStrings(listing[6:]))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 3)
	assert.Equal(t, "flare", seen[1].Principal.UserID)
	assert.Equal(t, tp.cast.fl.Public, seen[1].Principal.Key)
	assert.Equal(t, "train", seen[1].Exports[0].Name)
	assert.Equal(t, "test", seen[1].Meta["version"])
	assert.Contains(t, tp.audit.String(), `"action":"refuse","decision":"deny","user_id":"flare","identity":"FL-Demo-Job2"`)
}

func TestCallHook_PanicRefusesTheCallAndThePlatformLivesOn(t *testing.T) {
	hook := CallHookFunc(func(_ context.Context, c *Call) error {
		if c.Caller.Identity == "alice" {
			panic("job-level handler bug")
		}
		if c.Method == "temperature" && c.Caller.UserID == "gateway" {
			return errors.New("the gateway may not read temperatures during maintenance")
		}
		return nil
	})
	tp := startPlatform(t, WithCallHook(hook))
	w := tp.startWeather(t)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")

	code, text := errnoOf(t, alice.call("weather", "temperature"))
	assert.Equal(t, rpc.CodeUnauthorized, code)
	assert.Contains(t, text, "hook panicked")
	assert.EqualValues(t, 0, w.calls.Load(), "the callee never sees a call the hook refused")

	// The platform lives on: another caller still gets through, and the
	// hook's own refusal reaches the caller.
	alice2 := tp.dial(t, tp.cast.alice)
	alice2.mustHello("alice.2")
	reply := alice2.call("weather", "temperature")
	require.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)

	gw := tp.dial(t, tp.cast.gw)
	gw.mustHello("gateway")
	code, text = errnoOf(t, gw.call("weather", "temperature"))
	assert.Equal(t, rpc.CodeUnauthorized, code)
	assert.Contains(t, text, "during maintenance")
	assert.EqualValues(t, 1, w.calls.Load())
	assert.Contains(t, tp.audit.String(), "hook panicked")
}

func framesToStrings(f [][]byte) []string {
	out := make([]string, len(f))
	for i, b := range f {
		out[i] = string(b)
	}
	return out
}
