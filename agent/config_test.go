package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/platform"
	"github.com/capbus/capbus/rpc"
)

const waitFor = 10 * time.Second

// configUsers are the users of the configuration tests: the weather agent,
// an operator holding edit_config_store, a user holding it only for
// identities matching /platform\..*/ (VOLTTRON's example), a reader and
// the driver agent.
func configUsers() []user {
	return []user{
		{ID: "weatherman", Identity: "weather"},
		{ID: "operator", Identity: "operator", Capabilities: []string{"edit_config_store"}},
		{ID: "limited", Identity: "limited", Capabilities: []any{
			map[string]any{"edit_config_store": map[string]any{"identity": `/platform\..*/`}}}},
		{ID: "reader", Identity: "reader", Capabilities: []string{"read_config_store"}},
		{ID: "driver", Identity: "platform.driver"},
	}
}

// newConfigBus is newBus with a configuration store at the returned path.
func newConfigBus(t *testing.T) (*bus, string) {
	t.Helper()
	b := newBus(t, configUsers(), nil)
	b.stop()
	db := filepath.Join(t.TempDir(), "config.db")
	b.startConfig(db)
	return b, db
}

// startConfig runs the bus's platform, on its address, with the
// configuration store at db.
func (b *bus) startConfig(db string) {
	b.t.Helper()
	p, err := platform.New(platform.WithAddress(b.addr), platform.WithKeyPair(b.server),
		platform.WithAuthFile(b.authFile), platform.WithConfigStore(db), platform.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(b.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	if p.Addr() == "" {
		cancel()
		b.t.Fatalf("platform did not start: %v", <-done)
	}
	b.addr = p.Addr()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			b.t.Errorf("platform Run: %v", err)
		}
	}
}

// events collects the configuration events of an agent.
type events chan ConfigEvent

func collect(t *testing.T, a *Agent, pattern string) events {
	t.Helper()
	ch := make(events, 256)
	require.NoError(t, a.Config().OnChange(pattern, func(_ context.Context, ev ConfigEvent) { ch <- ev }))
	return ch
}

// next returns the next event, failing the test after waitFor.
func (ch events) next(t *testing.T) ConfigEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(waitFor):
		t.Fatal("no configuration event")
		return ConfigEvent{}
	}
}

// expect checks the next event's action, name and data ("" for a delete).
func (ch events) expect(t *testing.T, action ConfigAction, name, data string) ConfigEvent {
	t.Helper()
	ev := ch.next(t)
	require.Equal(t, action, ev.Action, "event %+v", ev)
	require.Equal(t, name, ev.Entry.Name)
	assert.Equal(t, data, string(ev.Entry.Data))
	return ev
}

func put(t *testing.T, cs *ConfigStore, name string, kind configstore.Kind, data string) configstore.Entry {
	t.Helper()
	e, err := cs.Put(context.Background(), name, kind, []byte(data))
	require.NoError(t, err)
	return e
}

// The agent has its entries when Ready closes; its handler is called for
// each (as a create), then for every create, update and delete, in order,
// with the previous entry and the decoded value.
func TestConfig_EntriesArriveAtConnectAndEveryChangeIsDeliveredInOrder(t *testing.T) {
	b, _ := newConfigBus(t)
	op := b.agent("operator", "operator", nil)
	store := op.ConfigStore("weather")
	put(t, store, "config", configstore.KindJSON, `{"units": "C", "cities": {"paris": 21.5}}`)
	put(t, store, "stations.csv", configstore.KindCSV, "city,station\nparis,LFPG\n")

	var evs events
	w := b.agent("weatherman", "weather", func(a *Agent) { evs = collect(t, a, "*") })
	// Ready has closed: the entries are there.
	e, ok := w.Config().Get("config")
	require.True(t, ok)
	assert.Equal(t, uint64(1), e.Version)
	assert.Equal(t, "operator", e.User)
	assert.Equal(t, uint64(2), w.Config().Revision())
	type settings struct {
		Units  string             `json:"units"`
		Cities map[string]float64 `json:"cities"`
	}
	s, err := ConfigAs[settings](w, "config")
	require.NoError(t, err)
	assert.Equal(t, settings{Units: "C", Cities: map[string]float64{"paris": 21.5}}, s)
	var rows []map[string]string
	require.NoError(t, w.Config().Decode("stations.csv", &rows))
	assert.Equal(t, []map[string]string{{"city": "paris", "station": "LFPG"}}, rows)
	_, err = ConfigAs[settings](w, "nothing")
	assert.ErrorIs(t, err, configstore.ErrNotFound)

	evs.expect(t, ConfigCreate, "config", `{"units": "C", "cities": {"paris": 21.5}}`)
	evs.expect(t, ConfigCreate, "stations.csv", "city,station\nparis,LFPG\n")

	put(t, store, "config", configstore.KindJSON, `{"units": "F"}`)
	put(t, store, "devices/boiler", configstore.KindRaw, "on")
	_, err = store.Delete(context.Background(), "stations.csv")
	require.NoError(t, err)
	_, err = store.Rollback(context.Background(), "config", 1)
	require.NoError(t, err)

	ev := evs.expect(t, ConfigUpdate, "config", `{"units": "F"}`)
	require.NotNil(t, ev.Previous)
	assert.Equal(t, uint64(1), ev.Previous.Version)
	var now settings
	require.NoError(t, ev.Decode(&now))
	assert.Equal(t, "F", now.Units)
	evs.expect(t, ConfigCreate, "devices/boiler", "on")
	ev = evs.expect(t, ConfigDelete, "stations.csv", "")
	assert.True(t, ev.Entry.Deleted)
	assert.Equal(t, "city,station\nparis,LFPG\n", string(ev.Previous.Data))
	ev = evs.expect(t, ConfigUpdate, "config", `{"units": "C", "cities": {"paris": 21.5}}`)
	assert.Equal(t, uint64(3), ev.Entry.Version, "a rollback is a new version")

	assert.Equal(t, []string{"config", "devices/boiler"}, names(w.Config().Entries()))
	assert.Equal(t, uint64(6), w.Config().Revision())
}

func names(es []configstore.Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

// A handler registered after the entries arrived is called for each
// matching entry first; patterns match as VOLTTRON's fnmatch does.
func TestConfig_OnChangeAfterConnectSeesTheCurrentEntriesThenChanges(t *testing.T) {
	b, _ := newConfigBus(t)
	op := b.agent("operator", "operator", nil)
	store := op.ConfigStore("weather")
	put(t, store, "devices/boiler", configstore.KindRaw, "1")
	put(t, store, "devices/pump", configstore.KindRaw, "2")
	put(t, store, "config", configstore.KindJSON, `{}`)
	w := b.agent("weatherman", "weather", nil)

	devices := collect(t, w, "devices/*")
	devices.expect(t, ConfigCreate, "devices/boiler", "1")
	devices.expect(t, ConfigCreate, "devices/pump", "2")
	put(t, store, "config", configstore.KindJSON, `{"a": 1}`) // not matched
	put(t, store, "devices/pump", configstore.KindRaw, "3")
	devices.expect(t, ConfigUpdate, "devices/pump", "3")

	assert.ErrorContains(t, w.Config().OnChange("[z-a]", func(context.Context, ConfigEvent) {}), `OnChange("[z-a]")`)
}

func TestCompileGlob_MatchesAsFnmatch(t *testing.T) {
	cases := []struct {
		pattern, name string
		match         bool
	}{
		{"*", "devices/boiler", true},
		{"devices/*", "devices/a/b", true},
		{"devices/*", "devicesX", false},
		{"config", "config", true},
		{"config", "config2", false},
		{"dev?ce", "device", true},
		{"[bc]oiler", "boiler", true},
		{"[!bc]oiler", "boiler", false},
		{"[!bc]oiler", "toiler", true},
		{"a.b", "axb", false},
		{"a[", "a[", true},
		{"a+b", "a+b", true},
	}
	for _, tc := range cases {
		re, err := compileGlob(tc.pattern)
		require.NoError(t, err, tc.pattern)
		assert.Equal(t, tc.match, re.MatchString(tc.name), "%q ~ %q", tc.pattern, tc.name)
	}
}

// The agent's connection is cut (its platform stays up) while the
// operator changes its store; on reconnecting it is given what changed
// while it was away, once, with the latest contents, and nothing it had
// already seen.
func TestConfig_AfterAReconnectWhatChangedWhileAwayIsDeliveredOnce(t *testing.T) {
	b, _ := newConfigBus(t)
	op := b.agent("operator", "operator", nil)
	store := op.ConfigStore("weather")
	r := newRelay(t, b.addr)
	lost := make(chan error, 4)
	var evs events
	w := b.agent("weatherman", "weather", func(a *Agent) { evs = collect(t, a, "*") },
		WithPlatform(r.addr(), b.server.Public), WithHeartbeat(50*time.Millisecond),
		WithOnDisconnect(func(err error) { lost <- err }))

	put(t, store, "a", configstore.KindRaw, "a1")
	put(t, store, "b", configstore.KindRaw, "b1")
	evs.expect(t, ConfigCreate, "a", "a1")
	evs.expect(t, ConfigCreate, "b", "b1")

	r.setMuted(true)
	select {
	case <-lost:
	case <-time.After(waitFor):
		t.Fatal("the agent did not notice the silent connection")
	}
	put(t, store, "a", configstore.KindRaw, "a2")
	put(t, store, "a", configstore.KindRaw, "a3")
	_, err := store.Delete(context.Background(), "b")
	require.NoError(t, err)
	put(t, store, "c", configstore.KindRaw, "c1")
	r.setMuted(false)
	require.NoError(t, w.WaitConnected(context.Background()))

	ev := evs.expect(t, ConfigUpdate, "a", "a3")
	assert.Equal(t, "a1", string(ev.Previous.Data), "a2 was never seen: a is delivered once, at its latest")
	evs.expect(t, ConfigDelete, "b", "")
	evs.expect(t, ConfigCreate, "c", "c1")
	put(t, store, "d", configstore.KindRaw, "d1")
	evs.expect(t, ConfigCreate, "d", "d1") // and nothing in between: no change twice
	assert.Equal(t, uint64(7), w.Config().Revision())
}

// The platform comes back with another (here: empty) store: the agent's
// copy follows it, deleting what the new store lacks.
func TestConfig_AStoreReplacedBehindTheAgentReplacesItsCopy(t *testing.T) {
	b, _ := newConfigBus(t)
	op := b.agent("operator", "operator", nil)
	put(t, op.ConfigStore("weather"), "a", configstore.KindRaw, "a1")
	put(t, op.ConfigStore("weather"), "b", configstore.KindRaw, "b1")
	var evs events
	w := b.agent("weatherman", "weather", func(a *Agent) { evs = collect(t, a, "*") })
	evs.expect(t, ConfigCreate, "a", "a1")
	evs.expect(t, ConfigCreate, "b", "b1")

	b.stop()
	other := filepath.Join(t.TempDir(), "other.db")
	s, err := configdb.Open(other)
	require.NoError(t, err)
	_, err = s.Put(context.Background(), "weather", "b", configstore.KindRaw, []byte("b1"), "restorer") // same contents: no event
	require.NoError(t, err)
	require.NoError(t, s.Close())
	b.startConfig(other)
	evs.expect(t, ConfigDelete, "a", "")
	require.NoError(t, op.WaitConnected(context.Background()))
	put(t, op.ConfigStore("weather"), "c", configstore.KindRaw, "c1")
	evs.expect(t, ConfigCreate, "c", "c1")
	assert.Equal(t, []string{"b", "c"}, names(w.Config().Entries()))
	assert.Equal(t, uint64(2), w.Config().Revision())
}

// Reading and changing another agent's store follows the policy: the
// operator may do everything, the reader only read, the limited user only
// for identities matching its restriction. Errors match the sentinels.
func TestConfigStore_RemoteAccessFollowsThePolicy(t *testing.T) {
	b, _ := newConfigBus(t)
	ctx := context.Background()
	op := b.agent("operator", "operator", nil)
	reader := b.agent("reader", "reader", nil)
	limited := b.agent("limited", "limited", nil)
	w := b.agent("weatherman", "weather", nil)

	store := op.ConfigStore("weather")
	put(t, store, "config", configstore.KindJSON, `{"v": 1}`)
	put(t, store, "config", configstore.KindJSON, `{"v": 2}`)
	hist, err := store.History(ctx, "config")
	require.NoError(t, err)
	require.Len(t, hist, 2)
	assert.Equal(t, []uint64{2, 1}, []uint64{hist[0].Version, hist[1].Version})
	e, err := store.Rollback(ctx, "config", 1)
	require.NoError(t, err)
	assert.Equal(t, `{"v": 1}`, string(e.Data))
	list, err := reader.ConfigStore("weather").List(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"config"}, names(list))
	own, err := w.ConfigStore("weather").Get(ctx, "config")
	require.NoError(t, err, "an agent reads its own store")
	assert.Equal(t, uint64(3), own.Version)

	_, err = reader.ConfigStore("weather").Put(ctx, "config", configstore.KindJSON, []byte(`{}`))
	var rerr *rpc.Error
	require.ErrorAs(t, err, &rerr)
	assert.ErrorIs(t, err, rpc.ErrUnauthorized)
	assert.Equal(t, []string{"edit_config_store"}, rerr.Missing())
	_, err = w.ConfigStore("weather").Put(ctx, "config", configstore.KindJSON, []byte(`{}`))
	assert.ErrorIs(t, err, rpc.ErrUnauthorized, "configuration is the operator's: the agent's own store too")

	_, err = limited.ConfigStore("weather").Get(ctx, "config")
	require.ErrorIs(t, err, rpc.ErrUnauthorized)
	assert.ErrorContains(t, err, `matching /platform\..*/, but identity="weather"`)
	_, err = limited.ConfigStore("platform.driver").Put(ctx, "config", configstore.KindJSON, []byte(`{"interval": 5}`))
	require.NoError(t, err)

	_, err = store.Get(ctx, "nothing")
	assert.ErrorIs(t, err, rpc.ErrNotFound)
	assert.ErrorIs(t, err, configstore.ErrNotFound)
	_, err = store.Rollback(ctx, "config", 99)
	assert.ErrorIs(t, err, configstore.ErrNotFound)

	// Bad input is refused before it is sent, naming the line and column.
	_, err = store.Put(ctx, "config", configstore.KindJSON, []byte("{\n  \"v\": ,\n}"))
	var ie *configstore.InputError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "config:2:8: invalid JSON: invalid character ',' looking for beginning of value", ie.Error())
	assert.Equal(t, ie.Error(), err.Error())
	assert.ErrorIs(t, err, configstore.ErrInvalid)
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs, "as the platform's refusal of it would")
	_, err = op.ConfigStore("bad\x00identity").List(ctx)
	assert.ErrorIs(t, err, configstore.ErrInvalid)
	_, err = store.Put(ctx, "/config", configstore.KindRaw, []byte("x"))
	assert.ErrorIs(t, err, configstore.ErrInvalid, "the platform refuses a name the store refuses")
	assert.ErrorIs(t, err, rpc.ErrInvalidArgs)

	tombs, err := store.DeleteAll(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"config"}, names(tombs))
	assert.True(t, tombs[0].Deleted)
}

// fakeTransport is a platform played by the test, frame by frame.
type fakeTransport struct {
	in   chan [][]byte // to the agent
	out  chan [][]byte // from the agent
	done chan struct{}
	once sync.Once
	// beforeRead runs, on the agent's reader, when no message waits.
	beforeRead func()
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{in: make(chan [][]byte, 16), out: make(chan [][]byte, 16), done: make(chan struct{})}
}

func (f *fakeTransport) ReadMsg() ([][]byte, error) {
	if len(f.in) == 0 && f.beforeRead != nil {
		f.beforeRead()
	}
	select {
	case m := <-f.in:
		return m, nil
	case <-f.done:
		return nil, net.ErrClosed
	}
}

func (f *fakeTransport) WriteMsgs(msgs [][][]byte) error {
	for _, m := range msgs {
		cp := make([][]byte, len(m))
		for i, fr := range m {
			cp[i] = append([]byte(nil), fr...)
		}
		select {
		case f.out <- cp:
		case <-f.done:
			return net.ErrClosed
		}
	}
	return nil
}

func (f *fakeTransport) BeforeRead(fn func()) { f.beforeRead = fn }

func (f *fakeTransport) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

// recv returns the next message the agent sent.
func (f *fakeTransport) recv(t *testing.T) [][]byte {
	t.Helper()
	select {
	case m := <-f.out:
		return m
	case <-time.After(waitFor):
		t.Fatal("the agent sent nothing")
		return nil
	}
}

func frames(parts ...string) [][]byte {
	out := make([][]byte, len(parts))
	for i, p := range parts {
		out[i] = []byte(p)
	}
	return out
}

func entryFrame(t *testing.T, e configstore.Entry) []byte {
	t.Helper()
	b, err := codec.Marshal(vip.ConfigEntryOf(e))
	require.NoError(t, err)
	return b
}

// runFake runs an agent of identity "weather" on a fake transport, and
// plays the platform's hello and welcome. It returns the watch the agent
// sent.
func runFake(t *testing.T, setup func(*Agent)) (*Agent, *fakeTransport, [][]byte) {
	t.Helper()
	tr := newFakeTransport()
	dialed := false
	a, err := New("weather", WithLogger(slog.New(slog.DiscardHandler)), WithHeartbeat(0),
		optionFunc(func(c *config) error {
			c.dial = func(context.Context) (transport, error) {
				if dialed {
					return nil, errors.New("the fake platform accepts one connection")
				}
				dialed = true
				return tr, nil
			}
			return nil
		}))
	require.NoError(t, err)
	if setup != nil {
		setup(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	hello := tr.recv(t)
	require.Equal(t, vip.SubHello, string(hello[vip.FrameSubsystem]))
	w, err := codec.Marshal(vip.Welcome{Identity: "weather", UserID: "weatherman"})
	require.NoError(t, err)
	tr.in <- [][]byte{nil, []byte("VIP1"), []byte("weatherman"), hello[vip.FrameMsgID], []byte("welcome"), w}
	watch := tr.recv(t)
	require.Equal(t, []string{"config", "watch", "0"}, []string{string(watch[vip.FrameSubsystem]),
		string(watch[vip.FrameArgs]), string(watch[vip.FrameArgs+1])})
	return a, tr, watch
}

// A call that arrives between the welcome and the answer to the agent's
// watch waits for the answer: its handler sees the entries, and Ready
// closes only then.
func TestConfig_CallsWaitForTheEntriesAtConnect(t *testing.T) {
	a, tr, watch := runFake(t, func(a *Agent) {
		require.NoError(t, a.Export("units", rpc.Func(func(ctx context.Context, _ struct{}) (string, error) {
			e, ok := a.Config().Get("config")
			if !ok {
				return "none", nil
			}
			return string(e.Data), nil
		})))
	})
	args, err := codec.EncodeCall(nil, nil)
	require.NoError(t, err)
	tr.in <- [][]byte{[]byte("alice"), []byte("VIP1"), []byte("alice"), []byte("c1"), []byte("RPC"), []byte("call"), []byte("units"), args}
	// The agent answers a ping on the goroutine that received the call:
	// once the pong is back, the call was handled, and it is held.
	tr.in <- [][]byte{nil, []byte("VIP1"), nil, []byte("p1"), []byte("ping")}
	pong := tr.recv(t)
	require.Equal(t, "pong", string(pong[vip.FrameSubsystem]), "the call was served before the configuration arrived: %q", pong)
	a.config.mu.Lock()
	held := len(a.config.held)
	a.config.mu.Unlock()
	assert.Equal(t, 1, held, "the call waits")
	select {
	case <-a.Ready():
		t.Fatal("Ready closed before the configuration arrived")
	default:
	}

	e := configstore.Entry{Identity: "weather", Name: "config", Kind: configstore.KindJSON, Data: []byte(`{"units":"F"}`),
		Version: 1, Revision: 1, User: "operator", Time: time.Now()}
	tr.in <- [][]byte{nil, []byte("VIP1"), nil, watch[vip.FrameMsgID], []byte("config"), []byte("watching"), []byte("1"), entryFrame(t, e)}
	reply := tr.recv(t)
	require.Equal(t, "result", string(reply[vip.FrameArgs]), "%q", reply)
	var got string
	require.NoError(t, codec.Unmarshal(reply[vip.FrameArgs+2], &got))
	assert.Equal(t, `{"units":"F"}`, got)
	select {
	case <-a.Ready():
	case <-time.After(waitFor):
		t.Fatal("not ready after the configuration")
	}
}

// A pushed change whose revision skips one (the platform's queue towards
// the agent was full) makes the agent ask for what it missed; changes it
// already has are not delivered again.
func TestConfig_AGapInRevisionsIsFilledByAskingAgain(t *testing.T) {
	var evs events
	_, tr, watch := runFake(t, func(a *Agent) { evs = collect(t, a, "*") })
	entry := func(name, data string, rev uint64) configstore.Entry {
		return configstore.Entry{Identity: "weather", Name: name, Kind: configstore.KindRaw, Data: []byte(data),
			Version: rev, Revision: rev, User: "operator", Time: time.Now()}
	}
	tr.in <- [][]byte{nil, []byte("VIP1"), nil, watch[vip.FrameMsgID], []byte("config"), []byte("watching"), []byte("1"),
		entryFrame(t, entry("a", "1", 1))}
	evs.expect(t, ConfigCreate, "a", "1")

	push := func(e configstore.Entry) {
		tr.in <- [][]byte{nil, []byte("VIP1"), nil, nil, []byte("config"), []byte("changed"), entryFrame(t, e)}
	}
	push(entry("a", "1", 1)) // already seen: dropped
	push(entry("c", "3", 3)) // revision 2 is missing
	again := tr.recv(t)
	require.Equal(t, []string{"config", "watch", "1"}, []string{string(again[vip.FrameSubsystem]),
		string(again[vip.FrameArgs]), string(again[vip.FrameArgs+1])})
	push(entry("d", "4", 4)) // before the answer: covered by it
	tr.in <- [][]byte{nil, []byte("VIP1"), nil, again[vip.FrameMsgID], []byte("config"), []byte("watching"), []byte("4"),
		entryFrame(t, entry("b", "2", 2)), entryFrame(t, entry("c", "3", 3)), entryFrame(t, entry("d", "4", 4))}
	evs.expect(t, ConfigCreate, "b", "2")
	evs.expect(t, ConfigCreate, "c", "3")
	evs.expect(t, ConfigCreate, "d", "4")
	push(entry("e", "5", 5))
	evs.expect(t, ConfigCreate, "e", "5")
}

// Without a configuration store on the platform the agent connects, with
// no entries.
func TestConfig_APlatformWithoutAStoreGivesNoEntries(t *testing.T) {
	b := newBus(t, configUsers(), nil)
	w := b.agent("weatherman", "weather", nil)
	select {
	case <-w.Config().Loaded():
	default:
		t.Fatal("Loaded is not closed after Ready")
	}
	assert.Empty(t, w.Config().Entries())
	_, err := w.ConfigStore("weather").List(context.Background())
	assert.ErrorIs(t, err, rpc.ErrNotFound)
	assert.ErrorContains(t, err, "no configuration store on this platform")
}
