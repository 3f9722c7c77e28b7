package platform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/pendingkeys"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// query sends ["query", what, args...] and returns the reply.
func (c *client) query(what string, args ...string) [][]byte {
	c.t.Helper()
	id := c.nextID()
	frames := [][]byte{{}, []byte("VIP1"), {}, []byte(id), []byte("query"), []byte(what)}
	for _, a := range args {
		frames = append(frames, []byte(a))
	}
	c.send(frames...)
	return c.expect(byMsgID(id))
}

func decodeValue[T any](t *testing.T, reply [][]byte) T {
	t.Helper()
	require.Equal(t, "query", string(reply[vip.FrameSubsystem]), "%q", reply)
	require.Len(t, reply, vip.FrameArgs+2)
	var v T
	require.NoError(t, codec.Unmarshal(reply[vip.FrameArgs+1], &v))
	return v
}

func TestDescribe_ListsEachMethodsRequirementAndWhetherTheAskerMayCallIt(t *testing.T) {
	tp := startPlatform(t)
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather", append(weatherExports, rpc.NewExport("reset", rpc.AllowRoles("admin")))...)
	alice := tp.dial(t, tp.cast.alice)
	alice.mustHello("alice")
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	d := decodeValue[vip.Description](t, alice.query("describe", "weather"))
	assert.Equal(t, "weather", d.Identity)
	assert.Equal(t, "weather", d.UserID)
	names := []string{}
	byName := map[string]vip.MethodDescription{}
	for _, m := range d.Methods {
		names = append(names, m.Name)
		byName[m.Name] = m
	}
	assert.Equal(t, []string{"hello", "reset", "set_units", "temperature"}, names, "sorted by name")
	assert.True(t, byName["temperature"].Allowed)
	assert.Equal(t, []string{"can_read_temp"}, byName["temperature"].Capabilities)
	assert.Equal(t, []string{"units"}, byName["set_units"].Params)
	assert.False(t, byName["set_units"].Allowed)
	assert.Equal(t, []string{"can_configure"}, byName["set_units"].Missing)
	assert.Contains(t, byName["set_units"].Reason, "can_configure")
	assert.Equal(t, []string{"admin"}, byName["reset"].Roles)
	require.Len(t, byName["reset"].Warnings, 1)
	assert.Contains(t, byName["reset"].Warnings[0], `role "admin" (required by weather.reset) grants no capability in auth.json`)

	d = decodeValue[vip.Description](t, bobby.query("describe", "weather"))
	for _, m := range d.Methods {
		if m.Name == "temperature" {
			assert.False(t, m.Allowed, "bobby holds nothing")
			assert.Equal(t, []string{"can_read_temp"}, m.Missing)
		}
	}

	code, text := errnoOf(t, alice.query("describe", "nobody"))
	assert.Equal(t, rpc.CodeNoRoute, code)
	assert.Contains(t, text, `"nobody"`)
	code, _ = errnoOf(t, alice.query("describe"))
	assert.Equal(t, rpc.CodeInvalidArgs, code)

	early := tp.dial(t, tp.cast.free1)
	code, _ = errnoOf(t, early.query("describe", "weather"))
	assert.Equal(t, rpc.CodePermission, code, "describe needs hello first")
}

func TestWhoami_SaysWhenTheFileOnDiskWasRejectedAndAnOlderPolicyIsInForce(t *testing.T) {
	tp := startPlatform(t)
	alice := tp.dial(t, tp.cast.alice)
	who := decodeValue[vip.Principal](t, alice.query("whoami"))
	assert.Nil(t, who.Rejected)
	assert.Empty(t, who.PolicyNote)

	broken := strings.Replace(string(tp.cast.policy(true, `[]`)), `"topics"`, `"topcis"`, 1)
	require.NoError(t, atomicfile.Write(tp.authFile, []byte(broken), 0o600))
	require.Eventually(t, func() bool {
		return decodeValue[vip.Principal](t, alice.query("whoami")).Rejected != nil
	}, testTimeout, 20*time.Millisecond)
	who = decodeValue[vip.Principal](t, alice.query("whoami"))
	assert.Equal(t, tp.authFile, who.Rejected.File)
	assert.Greater(t, who.Rejected.Line, 0)
	assert.Contains(t, who.Rejected.Message, `did you mean "topics"`)
	assert.Contains(t, who.PolicyNote, "an older policy (generation 1) is in force")
	assert.Equal(t, uint64(1), who.Generation)
}

func TestPendingKeys_UnknownKeysAreRecordedKnownOnesNot(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pending_keys.json")
	tp := startPlatform(t, WithPendingKeysFile(file))
	stranger, err := keys.Generate()
	require.NoError(t, err)
	for range 3 {
		_, err = tp.tryDial(t, stranger)
		require.Error(t, err)
	}
	tp.dial(t, tp.cast.alice)
	require.Eventually(t, func() bool {
		l, _ := pendingkeys.Read(file)
		return len(l) == 1 && l[0].Count == 3
	}, testTimeout, 20*time.Millisecond)
	l, err := pendingkeys.Read(file)
	require.NoError(t, err)
	assert.Equal(t, stranger.Public.Z85(), l[0].Key)
	assert.Contains(t, l[0].Address, "127.0.0.1:")
	st, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}
