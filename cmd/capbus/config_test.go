package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/configstore/configdb"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/platform"
)

// configSetup is an embedded platform with a configuration store, the
// weather agent (which records its configuration events) and two CLI
// keys: "me" holds edit_config_store, "nobody" holds nothing.
type configSetup struct {
	home    string
	flags   []string // --address, --server-key, --key of "me"
	nobody  []string // the same with nobody's key
	db      string
	events  chan agent.ConfigEvent
	weather *agent.Agent
}

func newConfigSetup(t *testing.T) *configSetup {
	t.Helper()
	home := t.TempDir()
	server, err := keys.Generate()
	require.NoError(t, err)
	weatherKP, err := keys.Generate()
	require.NoError(t, err)
	key := func(name string) (string, string) {
		path := filepath.Join(home, name+".json")
		r := capbus(t, home, "keygen", "--out", path)
		require.Equal(t, 0, r.code, r.stderr)
		return path, strings.TrimSpace(r.stdout)
	}
	meKey, mePub := key("me")
	nobodyKey, nobodyPub := key("nobody")
	doc, err := json.Marshal(map[string]any{"allow": []map[string]any{
		{"user_id": "weather", "identity": "weather", "credentials": weatherKP.Public.Base64URL()},
		{"user_id": "me", "credentials": mePub, "capabilities": []string{"edit_config_store"}},
		{"user_id": "nobody", "credentials": nobodyPub},
	}})
	require.NoError(t, err)
	authFile := filepath.Join(home, "auth.json")
	require.NoError(t, os.WriteFile(authFile, doc, 0o600))

	db := filepath.Join(home, "config.db")
	quiet := slog.New(slog.DiscardHandler)
	p, err := platform.New(platform.WithAddress("tcp://127.0.0.1:0"), platform.WithKeyPair(server),
		platform.WithAuthFile(authFile), platform.WithConfigStore(db), platform.WithLogger(quiet))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(ctx) }()
	<-p.Ready()
	require.NotEmpty(t, p.Addr())

	w, err := agent.New("weather", agent.WithKeyPair(weatherKP), agent.WithPlatform(p.Addr(), p.ServerKey()), agent.WithLogger(quiet))
	require.NoError(t, err)
	events := make(chan agent.ConfigEvent, 64)
	require.NoError(t, w.Config().OnChange("*", func(_ context.Context, ev agent.ConfigEvent) { events <- ev }))
	adone := make(chan error, 1)
	go func() { adone <- w.Run(ctx) }()
	require.NoError(t, w.WaitConnected(ctx))
	t.Cleanup(func() {
		cancel()
		<-adone
		<-pdone
	})
	base := []string{"--address", p.Addr(), "--server-key", p.ServerKey().Z85()}
	return &configSetup{home: home, db: db, events: events, weather: w,
		flags:  append(append([]string{}, base...), "--key", meKey),
		nobody: append(append([]string{}, base...), "--key", nobodyKey)}
}

// config runs "capbus config ARGS..." as "me".
func (cs *configSetup) config(t *testing.T, args ...string) result {
	t.Helper()
	return capbus(t, cs.home, append(append([]string{"config"}, args...), cs.flags...)...)
}

func (cs *configSetup) file(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(cs.home, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// event waits for the weather agent's next configuration event.
func (cs *configSetup) event(t *testing.T) agent.ConfigEvent {
	t.Helper()
	select {
	case ev := <-cs.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("the weather agent got no configuration event")
		return agent.ConfigEvent{}
	}
}

func TestConfigCommands_StoreGetListHistoryRollbackDelete(t *testing.T) {
	cs := newConfigSetup(t)
	v1 := "{\n  \"units\": \"C\",\n  \"cities\": {\"paris\": 21.5}\n}\n"
	r := cs.config(t, "store", "weather", "config", cs.file(t, "weather.json", v1))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "stored weather \"config\" version 1 (json, 48 bytes)\n", r.stdout)
	ev := cs.event(t)
	assert.Equal(t, agent.ConfigCreate, ev.Action, "the running agent got the entry at once")
	assert.Equal(t, v1, string(ev.Entry.Data))

	r = cs.config(t, "get", "weather", "config")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, v1, r.stdout, "get gives the file back, byte for byte")
	r = cs.config(t, "get", "weather", "config", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var meta map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &meta))
	assert.Equal(t, "me", meta["user"], "the change is recorded with the user who made it")
	assert.EqualValues(t, 1, meta["version"])
	assert.Equal(t, "json", meta["kind"])

	r = cs.config(t, "store", "weather", "config", cs.file(t, "f.json", `{"units": "F"}`))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, agent.ConfigUpdate, cs.event(t).Action)
	r = cs.config(t, "store", "weather", "stations", cs.file(t, "stations.csv", "city,station\nparis,LFPG\n"))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "(csv, 24 bytes)", "a .csv file is CSV")
	cs.event(t)
	r = capbus(t, cs.home, append([]string{"config", "store", "weather", "notes", "-", "--raw"}, cs.flags...)...)
	require.Equal(t, 0, r.code, r.stderr) // empty standard input: an empty raw entry
	cs.event(t)

	r = cs.config(t, "list", "weather")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "config\nnotes\nstations\n", r.stdout)
	r = cs.config(t, "list", "weather", "--long")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "NAME")
	assert.Regexp(t, `config\s+json\s+2\s+14\s+\S+\s+me`, r.stdout)

	r = cs.config(t, "history", "weather", "config")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	assert.Regexp(t, `^2\s+\S+\s+me\s+json, 14 bytes$`, lines[1])
	assert.Regexp(t, `^1\s+\S+\s+me\s+json, 48 bytes$`, lines[2])

	r = cs.config(t, "rollback", "weather", "config", "1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "rolled weather \"config\" back to version 1: now version 3\n", r.stdout)
	ev = cs.event(t)
	assert.Equal(t, agent.ConfigUpdate, ev.Action)
	assert.Equal(t, v1, string(ev.Entry.Data))

	r = cs.config(t, "delete", "weather", "config")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, agent.ConfigDelete, cs.event(t).Action)
	r = cs.config(t, "get", "weather", "config")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	assert.Contains(t, r.stderr, `no entry "config" for identity "weather"`)
	r = cs.config(t, "history", "weather", "config")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "deleted")

	r = cs.config(t, "delete", "weather", "--all")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted 2 entries of weather\n", r.stdout)
	r = cs.config(t, "list", "weather")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout)
	r = cs.config(t, "delete", "weather")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "give either NAME or --all")
}

// Bad input is refused before anything is sent, naming the file, line and
// reason; the stored entry is unchanged.
func TestConfigCommands_BadInputIsRefusedAndTheEntryIsUnchanged(t *testing.T) {
	cs := newConfigSetup(t)
	good := `{"units": "C"}`
	r := cs.config(t, "store", "weather", "config", cs.file(t, "good.json", good))
	require.Equal(t, 0, r.code, r.stderr)
	cs.event(t)

	bad := cs.file(t, "bad.json", "{\n  \"units\": \"F\",\n}\n")
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"invalid JSON", []string{"store", "weather", "config", bad}, exitError,
			bad + ":3:1: invalid JSON: invalid character '}' looking for beginning of object key string"},
		{"JSON by default for an unknown extension", []string{"store", "weather", "config", cs.file(t, "notes.txt", "units: F\n")}, exitError,
			"notes.txt:1:1: invalid JSON: invalid character 'u' looking for beginning of value (stored as JSON by default: give --raw or --csv for other text)"},
		{"CSV row too short", []string{"store", "weather", "config", cs.file(t, "rows.csv", "a,b\n1,2\n3\n")}, exitError,
			"rows.csv:3:1: invalid CSV: row has 1 fields, the header has 2"},
		{"invalid UTF-8 as raw text", []string{"store", "weather", "config", cs.file(t, "latin1.txt", "caf\xe9\n"), "--raw"}, exitError,
			"latin1.txt:1:4: invalid UTF-8: byte 0xe9 at offset 3"},
		{"unreadable file", []string{"store", "weather", "config", filepath.Join(cs.home, "missing.json")}, exitError,
			"missing.json: no such file or directory"},
		{"agent name that is not an identity", []string{"store", "bad\x01agent", "config", bad}, exitUsage,
			`AGENT "bad\x01agent" is not a valid agent identity: contains the control character U+0001 at byte 3`},
		{"agent name too long", []string{"get", strings.Repeat("a", 129), "config"}, exitUsage,
			"is not a valid agent identity: must be 1 to 128 bytes, not 129"},
		{"entry name the store refuses", []string{"store", "weather", "/config", cs.file(t, "x.json", "{}")}, exitError,
			`name "/config" is not a valid entry name: must not begin or end with '/' or a space`},
		{"two kinds", []string{"store", "weather", "config", bad, "--json", "--raw"}, exitUsage, "give one of --json, --csv and --raw, not 2"},
		{"rollback to no version", []string{"rollback", "weather", "config", "latest"}, exitUsage, `VERSION "latest"`},
		{"rollback to a version never stored", []string{"rollback", "weather", "config", "7"}, exitNotFound, "has no version 7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := cs.config(t, tc.args...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.msg)
			r = cs.config(t, "get", "weather", "config", "--json")
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stdout, `"version":1`, "the entry is unchanged")
		})
	}
	select {
	case ev := <-cs.events:
		t.Fatalf("a refused input reached the agent: %+v", ev)
	default:
	}
}

// Without edit_config_store the platform refuses, naming what is missing.
func TestConfigCommands_RefusedWithoutTheCapability(t *testing.T) {
	cs := newConfigSetup(t)
	r := capbus(t, cs.home, append([]string{"config", "store", "weather", "config", cs.file(t, "w.json", "{}")}, cs.nobody...)...)
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, `config store of "weather": put requires capabilities [edit_config_store], but capabilities [] were provided; missing [edit_config_store]`)
	r = capbus(t, cs.home, append([]string{"config", "list", "weather"}, cs.nobody...)...)
	assert.Equal(t, exitRefused, r.code, r.stderr)
	assert.Contains(t, r.stderr, "missing [read_config_store]")
}

// edit opens $EDITOR on the entry, stores a valid result, and refuses an
// invalid one naming the line, keeping the edited text.
func TestConfigCommands_EditValidatesBeforeStoring(t *testing.T) {
	cs := newConfigSetup(t)
	r := cs.config(t, "store", "weather", "config", cs.file(t, "w.json", `{"units": "C"}`))
	require.Equal(t, 0, r.code, r.stderr)
	cs.event(t)

	// The "editor" replaces the file with the contents of $EDIT_WITH and
	// records what it was given.
	script := cs.file(t, "editor.sh", "#!/bin/sh\ncp \"$1\" \"$EDIT_SAW\"\ncat \"$EDIT_WITH\" > \"$1\"\n")
	saw := filepath.Join(cs.home, "saw")
	t.Setenv("VISUAL", "")
	t.Setenv("EDITOR", "sh "+script)
	t.Setenv("EDIT_SAW", saw)

	t.Setenv("EDIT_WITH", cs.file(t, "edit1", "{\"units\": \"F\"}\n"))
	r = cs.config(t, "edit", "weather", "config")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "stored weather \"config\" version 2 (json, 15 bytes)\n", r.stdout)
	given, err := os.ReadFile(saw)
	require.NoError(t, err)
	assert.Equal(t, `{"units": "C"}`, string(given), "the editor was given the current data")
	assert.Equal(t, "{\"units\": \"F\"}\n", string(cs.event(t).Entry.Data))

	t.Setenv("EDIT_WITH", cs.file(t, "edit2", "{\"units\": \"F\"}\n"))
	r = cs.config(t, "edit", "weather", "config")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "weather \"config\" unchanged\n", r.stdout)

	t.Setenv("EDIT_WITH", cs.file(t, "edit3", "{\n  \"units\": F\n}\n"))
	r = cs.config(t, "edit", "weather", "config")
	assert.Equal(t, exitError, r.code)
	assert.Regexp(t, `capbus-config-\d+\.json:2:12: invalid JSON: invalid character 'F' looking for beginning of value`, r.stderr)
	i := strings.Index(r.stderr, "the edited text is kept in ")
	require.GreaterOrEqual(t, i, 0, r.stderr)
	kept := strings.TrimSpace(r.stderr[i+len("the edited text is kept in "):])
	t.Cleanup(func() { os.Remove(kept) })
	data, err := os.ReadFile(kept)
	require.NoError(t, err)
	assert.Equal(t, "{\n  \"units\": F\n}\n", string(data), "the edit is not lost")
	r = cs.config(t, "get", "weather", "config")
	assert.Equal(t, "{\"units\": \"F\"}\n", r.stdout, "the entry is unchanged")

	// A new entry starts empty, as the kind asked for.
	t.Setenv("EDIT_WITH", cs.file(t, "edit4", "city,station\nparis,LFPG\n"))
	r = cs.config(t, "edit", "weather", "stations", "--csv")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "version 1 (csv")

	s, err := configdb.Open(cs.db, configdb.WithLockTimeout(10*time.Millisecond))
	if err == nil {
		s.Close()
	}
	require.Error(t, err, "the running platform holds the store's lock")
	assert.ErrorIs(t, err, configdb.ErrLocked)
}

// TestConfigCommands_EditStoresNothingThatWouldLoseAChange: a change made
// while the editor was open is not overwritten (the edit is kept in its
// file), a new entry left empty is not created, and an editor that does
// not start leaves no file behind to look for.
func TestConfigCommands_EditStoresNothingThatWouldLoseAChange(t *testing.T) {
	cs := newConfigSetup(t)
	r := cs.config(t, "store", "weather", "config", cs.file(t, "w.json", `{"units": "C"}`))
	require.Equal(t, 0, r.code, r.stderr)
	t.Setenv("VISUAL", "")

	// The "editor" has another operator store version 2, then writes its own.
	exe, err := os.Executable()
	require.NoError(t, err)
	other := cs.file(t, "other.json", `{"units": "K"}`)
	line := []string{"CAPBUS_RUN_MAIN=1", "'" + exe + "'", "--home", "'" + cs.home + "'", "config", "store", "weather", "config", "'" + other + "'"}
	for _, f := range cs.flags {
		line = append(line, "'"+f+"'")
	}
	script := cs.file(t, "editor.sh", "#!/bin/sh\n"+strings.Join(line, " ")+" >&2 || exit 1\necho '{\"units\": \"F\"}' > \"$1\"\n")
	t.Setenv("EDITOR", "sh "+script)
	r = cs.config(t, "edit", "weather", "config")
	assert.Equal(t, exitError, r.code, r.stderr)
	assert.Contains(t, r.stderr, `weather "config" changed while it was being edited (now version 2 by me at `)
	i := strings.Index(r.stderr, "your text is kept in ")
	require.GreaterOrEqual(t, i, 0, r.stderr)
	kept := strings.Fields(r.stderr[i+len("your text is kept in "):])[0]
	t.Cleanup(func() { os.Remove(kept) })
	data, err := os.ReadFile(kept)
	require.NoError(t, err)
	assert.Equal(t, "{\"units\": \"F\"}\n", string(data), "the edit is not lost")
	r = cs.config(t, "get", "weather", "config")
	assert.Equal(t, `{"units": "K"}`, r.stdout, "the other change is not lost either")

	t.Setenv("EDITOR", "true")
	r = cs.config(t, "edit", "weather", "brandnew")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "weather \"brandnew\" not created: the file was left empty\n", r.stdout)
	r = cs.config(t, "get", "weather", "brandnew")
	assert.Equal(t, exitNotFound, r.code, r.stderr)

	t.Setenv("EDITOR", "no-such-editor-here")
	r = cs.config(t, "edit", "weather", "config")
	assert.Equal(t, exitError, r.code)
	assert.Contains(t, r.stderr, `editor "no-such-editor-here"`)
	assert.NotContains(t, r.stderr, "kept in")
}
