package platform

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/internal/atomicfile"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// startConfigPlatform runs the test platform with a configuration store,
// Bobby holding edit_config_store restricted as VOLTTRON's documentation
// restricts it, and the gateway holding read_config_store. The policy is in
// force when it returns.
func startConfigPlatform(t *testing.T) *testPlatform {
	t.Helper()
	tp := startPlatform(t, WithConfigStore(filepath.Join(t.TempDir(), "config.db")))
	require.NoError(t, atomicfile.Write(tp.authFile, tp.cast.policyWith(policyVars{WithBobby: true,
		BobbyCaps: `[{"edit_config_store": {"identity": "/platform\\..*/"}}]`,
		GWCaps:    `["read_config_store"]`}), 0o600))
	gen := tp.policy().Generation()
	require.NoError(t, tp.store.Reload())
	require.Greater(t, tp.policy().Generation(), gen, "the new policy is in force")
	return tp
}

// configReq sends ["config", args...] and returns the answer.
func (c *client) configReq(args ...string) [][]byte {
	c.t.Helper()
	id := c.nextID()
	c.sendStrings(append([]string{"", "VIP1", "", id, "config"}, args...)...)
	return c.expect(byMsgID(id))
}

// entriesOf decodes the ENTRY frames of a config answer from frame from on.
func entriesOf(t *testing.T, f [][]byte, from int) []vip.ConfigEntry {
	t.Helper()
	var out []vip.ConfigEntry
	for _, b := range f[from:] {
		var e vip.ConfigEntry
		require.NoError(t, codec.Unmarshal(b, &e))
		out = append(out, e)
	}
	return out
}

// answerOp returns the subsystem and operation of a reply, "error/13" for
// an error.
func answerOp(t *testing.T, f [][]byte) string {
	t.Helper()
	if string(f[vip.FrameSubsystem]) == vip.SubError {
		return "error/" + string(f[vip.FrameArgs])
	}
	return string(f[vip.FrameSubsystem]) + "/" + string(f[vip.FrameArgs])
}

func TestConfig_WithoutAStoreTheSubsystemAnswersNotFound(t *testing.T) {
	tp := startPlatform(t)
	w := tp.dial(t, tp.cast.weather)
	w.mustHello("weather")
	code, text := errnoOf(t, w.configReq("watch", "0"))
	assert.Equal(t, rpc.CodeNotFound, code)
	assert.Equal(t, "no configuration store on this platform", text)
}

// The authorization matrix: an agent reads its own store with no
// capability; another's store needs read_config_store or
// edit_config_store; every change needs edit_config_store, the agent's own
// store included; a restriction on "identity" admits the identities it
// matches and no other. Refusals say what is missing, or which restriction
// failed.
func TestConfig_AuthorizationMatrix(t *testing.T) {
	tp := startConfigPlatform(t)
	ctx := context.Background()
	_, err := tp.config.store.Put(ctx, "weather", "config", configstore.KindJSON, []byte(`{"units": "C"}`), "operator")
	require.NoError(t, err)

	weather := tp.dial(t, tp.cast.weather)
	weather.mustHello("weather")
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	gateway := tp.dial(t, tp.cast.gw)
	gateway.mustHello("gateway")
	free := tp.dial(t, tp.cast.free1)
	free.mustHello("free1")

	const (
		missingEdit = `config store of "weather": put requires capabilities [edit_config_store], but capabilities [] were provided; missing [edit_config_store]`
		restricted  = `denied: capability edit_config_store is granted only with parameter "identity" matching /platform\..*/, but identity="weather"`
	)
	cases := []struct {
		name    string
		who     *client
		args    []string
		want    string // answer op, or error/errno
		text    string // the refusal's text, exactly
		missing []string
	}{
		{"own store: get", weather, []string{"get", "weather", "config"}, "config/entry", "", nil},
		{"own store: list", weather, []string{"list", "weather"}, "config/entries", "", nil},
		{"own store: history", weather, []string{"history", "weather", "config"}, "config/entries", "", nil},
		{"own store: a missing entry is not found, not refused", weather, []string{"get", "weather", "nothing"}, "error/2", "", nil},
		{"own store: put needs edit_config_store", weather, []string{"put", "weather", "config", "json", "{}"}, "error/13", missingEdit, []string{"edit_config_store"}},
		{"own store: delete needs edit_config_store", weather, []string{"delete", "weather", "config"}, "error/13",
			`config store of "weather": delete requires capabilities [edit_config_store], but capabilities [] were provided; missing [edit_config_store]`, []string{"edit_config_store"}},
		{"another's store without a capability", free, []string{"get", "weather", "config"}, "error/13",
			`config store of "weather": get requires capabilities [read_config_store] or [edit_config_store], but capabilities [] were provided; missing [read_config_store]`, []string{"read_config_store"}},
		{"another's store with read_config_store: get", gateway, []string{"get", "weather", "config"}, "config/entry", "", nil},
		{"another's store with read_config_store: list", gateway, []string{"list", "weather"}, "config/entries", "", nil},
		{"read_config_store does not change", gateway, []string{"put", "weather", "config", "json", "{}"}, "error/13",
			`config store of "weather": put requires capabilities [edit_config_store], but capabilities [] were provided; missing [edit_config_store]`, []string{"edit_config_store"}},
		{"restriction matches: put", bobby, []string{"put", "platform.driver", "config", "json", `{"interval": 60}`}, "config/entry", "", nil},
		{"restriction matches: get", bobby, []string{"get", "platform.driver", "config"}, "config/entry", "", nil},
		{"restriction matches: rollback", bobby, []string{"rollback", "platform.driver", "config", "1"}, "config/entry", "", nil},
		{"restriction matches: delete", bobby, []string{"delete", "platform.driver", "config"}, "config/entry", "", nil},
		{"restriction does not match: put", bobby, []string{"put", "weather", "config", "json", "{}"}, "error/13",
			`config store of "weather": put ` + restricted, []string{}},
		{"restriction does not match: get", bobby, []string{"get", "weather", "config"}, "error/13",
			`config store of "weather": get ` + restricted, []string{}},
		{"restriction does not match: delete_store", bobby, []string{"delete_store", "weather"}, "error/13",
			`config store of "weather": delete_store ` + restricted, []string{}},
		{"restriction does not match the prefix alone", bobby, []string{"put", "xplatform.driver", "config", "json", "{}"}, "error/13",
			`config store of "xplatform.driver": put denied: capability edit_config_store is granted only with parameter "identity" matching /platform\..*/, but identity="xplatform.driver"`, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.who.configReq(tc.args...)
			require.Equal(t, tc.want, answerOp(t, f), "%q", f)
			if tc.text == "" {
				return
			}
			_, text := errnoOf(t, f)
			assert.Equal(t, tc.text, text)
			data := errorData(t, f)
			assert.Equal(t, tc.args[1], data["identity"])
			assert.Equal(t, tc.args[0], data["operation"])
			assert.Equal(t, tc.missing, nonNil(strs(data["missing"])))
		})
	}

	// Every refusal and every change is audited with the user who asked.
	audit := tp.audit.String()
	assert.Contains(t, audit, `"action":"config","decision":"deny","user_id":"weather","identity":"weather"`)
	assert.Contains(t, audit, `"action":"config","decision":"allow","user_id":"bobby","identity":"bobby"`)
	assert.Contains(t, audit, `"peer":"platform.driver","method":"put","topic":"config","reason":"version 1, revision 1"`)
	assert.Contains(t, audit, `"peer":"platform.driver","method":"rollback","topic":"config","reason":"version 2, revision 2"`)
	assert.Contains(t, audit, `"missing":["edit_config_store"]`)

	// The store recorded Bobby as the author of his changes.
	hist, err := tp.config.store.History(ctx, "platform.driver", "config")
	require.NoError(t, err)
	require.Len(t, hist, 3)
	for _, e := range hist {
		assert.Equal(t, "bobby", e.User)
	}
}

// The owner watching its store gets, in its answer, the entries changed
// after the revision it gave (tombstones included), and then every change
// pushed in revision order, exactly once.
func TestConfig_WatchAnswersChangesSinceThenPushesEachChangeInOrder(t *testing.T) {
	tp := startConfigPlatform(t)
	ctx := context.Background()
	st := tp.config.store
	for _, name := range []string{"a", "b", "c"} {
		_, err := st.Put(ctx, "platform.driver", name, configstore.KindRaw, []byte(name+"1"), "operator")
		require.NoError(t, err)
	}
	_, err := st.Delete(ctx, "platform.driver", "b", "operator") // revision 4
	require.NoError(t, err)

	// The driver's key is Bobby's (his entry allows /bobby\..*/ only), so
	// the driver here is an agent of free2, whose entry names no identity.
	driver := tp.dial(t, tp.cast.free2)
	driver.mustHello("platform.driver")
	f := driver.configReq("watch", "0")
	require.Equal(t, "config/watching", answerOp(t, f), "%q", f)
	assert.Equal(t, "4", string(f[vip.FrameArgs+1]), "the store's revision")
	got := entriesOf(t, f, vip.FrameArgs+2)
	require.Len(t, got, 3)
	assert.Equal(t, []string{"a", "c", "b"}, []string{got[0].Name, got[1].Name, got[2].Name}, "revision order")
	assert.True(t, got[2].Deleted, "a tombstone")
	assert.Equal(t, "a1", got[0].Data)
	assert.Equal(t, "raw", got[0].Kind)

	// Bobby changes the driver's store; each change is pushed in order.
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	require.Equal(t, "config/entry", answerOp(t, bobby.configReq("put", "platform.driver", "a", "json", `{"v": 2}`)))
	require.Equal(t, "config/entry", answerOp(t, bobby.configReq("delete", "platform.driver", "c")))
	require.Equal(t, "config/entry", answerOp(t, bobby.configReq("rollback", "platform.driver", "b", "1")))
	require.Equal(t, "config/entries", answerOp(t, bobby.configReq("delete_store", "platform.driver")))
	want := []struct {
		name    string
		rev     uint64
		deleted bool
		data    string
	}{{"a", 5, false, `{"v": 2}`}, {"c", 6, true, ""}, {"b", 7, false, "b1"}, {"a", 8, true, ""}, {"b", 9, true, ""}}
	for _, w := range want {
		f := driver.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == vip.SubConfig })
		require.Equal(t, "config/changed", answerOp(t, f))
		assert.Empty(t, f[vip.FrameMsgID], "a push has no msg-id")
		e := entriesOf(t, f, vip.FrameArgs+1)[0]
		assert.Equal(t, w.name, e.Name)
		assert.Equal(t, w.rev, e.Revision)
		assert.Equal(t, w.deleted, e.Deleted)
		assert.Equal(t, w.data, e.Data)
		assert.Equal(t, "bobby", e.User)
		_, err := time.Parse(time.RFC3339Nano, e.Time)
		assert.NoError(t, err)
	}

	// A watch from revision 7 gets what changed after it.
	f = driver.configReq("watch", "7")
	require.Equal(t, "config/watching", answerOp(t, f))
	assert.Equal(t, "9", string(f[vip.FrameArgs+1]))
	got = entriesOf(t, f, vip.FrameArgs+2)
	require.Len(t, got, 2)
	assert.Equal(t, uint64(8), got[0].Revision)
	assert.Equal(t, uint64(9), got[1].Revision)

	// A watch from beyond the store's revision (the store was replaced)
	// gets every entry.
	f = driver.configReq("watch", "1000")
	require.Equal(t, "config/watching", answerOp(t, f))
	assert.Equal(t, "9", string(f[vip.FrameArgs+1]))
	assert.Len(t, entriesOf(t, f, vip.FrameArgs+2), 3)
}

// Only the owner's connection, and only once it watches, gets pushes.
func TestConfig_ChangesArePushedOnlyToTheWatchingOwner(t *testing.T) {
	tp := startConfigPlatform(t)
	gateway := tp.dial(t, tp.cast.gw)
	gateway.mustHello("gateway")
	driver := tp.dial(t, tp.cast.free2)
	driver.mustHello("platform.driver")
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")

	require.Equal(t, "config/entry", answerOp(t, bobby.configReq("put", "platform.driver", "before", "raw", "1")))
	require.Equal(t, "config/watching", answerOp(t, driver.configReq("watch", "1")))
	require.Equal(t, "config/entry", answerOp(t, bobby.configReq("put", "platform.driver", "after", "raw", "2")))
	f := driver.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) == vip.SubConfig })
	assert.Equal(t, "after", entriesOf(t, f, vip.FrameArgs+1)[0].Name, "the change before the watch was not pushed")

	// The gateway, which may read the driver's store but does not own it,
	// got nothing: the answer to a ping it sends now is the next message
	// it receives (besides peerlist notices).
	gateway.sendStrings("", "VIP1", "", "p1", "ping")
	f = gateway.expect(func(f [][]byte) bool { return string(f[vip.FrameSubsystem]) != vip.SubPeerlist })
	assert.Equal(t, "pong", string(f[vip.FrameSubsystem]), "%q", f)
}

// Bad requests are refused, naming the frame or the line and column, and
// change nothing.
func TestConfig_BadRequestsAreRefusedNamingTheProblem(t *testing.T) {
	tp := startConfigPlatform(t)
	bobby := tp.dial(t, tp.cast.bobby)
	bobby.mustHello("bobby")
	require.Equal(t, "config/entry", answerOp(t, bobby.configReq("put", "platform.driver", "config", "json", `{"a": 1}`)))

	cases := []struct {
		name string
		args []string
		code rpc.Code
		text string
	}{
		{"invalid JSON", []string{"put", "platform.driver", "config", "json", "{\n  \"a\": 1,\n}"}, rpc.CodeInvalidArgs,
			"config:3:1: invalid JSON: invalid character '}' looking for beginning of object key string"},
		{"JSON that is not an object or array", []string{"put", "platform.driver", "config", "json", "42"}, rpc.CodeInvalidArgs,
			"config:1:1: invalid JSON: a configuration must be an object or an array, not a number"},
		{"CSV with a short row", []string{"put", "platform.driver", "config", "csv", "a,b\n1\n"}, rpc.CodeInvalidArgs,
			"config:2:1: invalid CSV: row has 1 fields, the header has 2"},
		{"unknown kind", []string{"put", "platform.driver", "config", "yaml", "a: 1"}, rpc.CodeInvalidArgs,
			`config: unknown kind "yaml" (want json, csv or raw)`},
		{"name with a control character", []string{"put", "platform.driver", "con\x01fig", "raw", "x"}, rpc.CodeInvalidArgs,
			`name "con\x01fig" is not a valid entry name: has the control character U+0001 at byte 3`},
		{"identity that is not one", []string{"put", "platform.\x07", "config", "raw", "x"}, rpc.CodeInvalidArgs,
			`config store of "platform.\a": identity must not contain control characters`},
		{"rollback to a version that is not a number", []string{"rollback", "platform.driver", "config", "two"}, rpc.CodeInvalidArgs,
			`config rollback: version "two" is not a decimal number`},
		{"rollback to a version never stored", []string{"rollback", "platform.driver", "config", "9"}, rpc.CodeNotFound,
			`entry "config" of "platform.driver" has no version 9 (its latest is 1): not found`},
		{"watch from a revision that is not a number", []string{"watch", "-1"}, rpc.CodeInvalidArgs,
			`config watch: since "-1" is not a decimal number`},
		{"unknown operation", []string{"set", "platform.driver"}, rpc.CodeProtocol, `unknown config operation "set"`},
		{"missing frames", []string{"put", "platform.driver", "config"}, rpc.CodeProtocol, "config put needs 4 argument frame(s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, text := errnoOf(t, bobby.configReq(tc.args...))
			assert.Equal(t, tc.code, code)
			assert.Equal(t, tc.text, text)
		})
	}
	e, err := tp.config.store.Get(context.Background(), "platform.driver", "config")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), e.Version, "nothing changed")
	assert.JSONEq(t, `{"a": 1}`, string(e.Data))
}

// The ENTRY map has exactly the keys PROTOCOL.md lists.
func TestConfig_EntryMapHasTheDocumentedKeys(t *testing.T) {
	b, err := codec.Marshal(vip.ConfigEntryOf(configstore.Entry{Identity: "weather", Name: "config", Kind: configstore.KindJSON,
		Data: []byte(`{}`), Version: 1, Revision: 1, User: "admin", Time: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, codec.Unmarshal(b, &m))
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, strings.Fields("identity name kind data version revision user time deleted"), keys)
	assert.Equal(t, "2025-01-02T03:04:05.000000006Z", m["time"])
	j, _ := json.Marshal(m)
	t.Logf("ENTRY: %s", j)
}
