package agent

import (
	"context"
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// ConfigAction says what a change did to a configuration entry.
type ConfigAction string

// The actions of ConfigEvent, VOLTTRON's NEW, UPDATE and DELETE.
const (
	// ConfigCreate: the entry did not exist for the agent (it is new, or
	// the agent sees it for the first time: at its first connection, or
	// when the handler is registered).
	ConfigCreate ConfigAction = "create"
	// ConfigUpdate: the entry has new contents (a put or a rollback).
	ConfigUpdate ConfigAction = "update"
	// ConfigDelete: the entry was deleted.
	ConfigDelete ConfigAction = "delete"
)

// ConfigEvent is one change of one of the agent's configuration entries.
type ConfigEvent struct {
	// Action is what the change did.
	Action ConfigAction
	// Entry is the entry as it is now; for a delete, the tombstone
	// (Deleted set, no data).
	Entry configstore.Entry
	// Previous is the entry before the change; nil for a create.
	Previous *configstore.Entry
}

// Decode decodes the entry's data into v (see configstore.Entry.Decode):
// JSON into a struct, map or slice; CSV into a slice of structs or
// []map[string]string; raw text into a string. A delete's tombstone has no
// data: its Decode fails with an error matching configstore.ErrNotFound.
func (ev ConfigEvent) Decode(v any) error { return ev.Entry.Decode(v) }

// ConfigHandler handles changes of configuration entries.
type ConfigHandler func(ctx context.Context, ev ConfigEvent)

// Config is the agent's configuration store, as the platform's operator
// keeps it (capbus config store AGENT NAME FILE): named entries of JSON,
// CSV or raw text, which the platform gives the agent when it connects and
// pushes to it whenever one changes. Get one with Agent.Config.
//
// # Order
//
// At every connection the agent asks for the entries changed since the
// last revision it saw, before anything else is served: the calls that
// arrive meanwhile wait, so that when Ready closes, and when any handler
// runs, Get and Decode see the entries the platform had at connection
// time. The handlers registered with OnChange are then called for what
// changed: every entry at the first connection (as creates); after a
// reconnection, only the entries changed while the agent was away, each
// once, with their latest contents; then every change as it happens.
//
// Handlers run on one goroutine per agent, one event at a time, in
// revision order (the order of the changes in the store); each event goes
// to the matching handlers in the order they were registered. A slow
// handler delays the events behind it, never the agent's calls. A
// handler's context is that of the connection the change arrived on: it
// ends when that connection does. A handler's panic is logged and
// recovered.
//
// The copy lives in memory, for the life of the Agent: a new process gets
// every entry again, as creates.
//
// A platform without a configuration store gives no entries; nothing is
// pushed. Only the agent's own entries are kept and pushed; an agent that
// holds the capabilities reads and changes others' with ConfigStore.
type Config struct {
	a *Agent

	// open is the session whose calls are served: its watch was answered.
	open atomic.Pointer[session]

	mu      sync.Mutex
	entries map[string]configstore.Entry
	rev     uint64        // the store's revision the entries are at
	loaded  chan struct{} // closed after the first answer
	regs    []*configReg

	// The handlers' queue and its goroutine.
	queue   []configDelivery
	running bool

	// The current session: calls it received before its watch was
	// answered wait in held.
	sess    *session
	watchID string        // msg-id of the watch awaiting its answer, "" if none
	ready   chan struct{} // closed when sess's first watch is answered
	held    []message
}

// configReg is one OnChange registration.
type configReg struct {
	pattern string
	re      *regexp.Regexp
	fn      ConfigHandler
}

// configDelivery is an event for some handlers.
type configDelivery struct {
	ctx  context.Context
	ev   ConfigEvent
	regs []*configReg
}

func newConfig(a *Agent) *Config {
	return &Config{a: a, entries: map[string]configstore.Entry{}, loaded: make(chan struct{})}
}

// Config returns the agent's configuration store, kept up to date by the
// platform. It is the same value on every call.
func (a *Agent) Config() *Config { return a.config }

// Get returns the current entry name, and false if the agent has no such
// entry. It reads the agent's copy: it never waits for the platform.
func (c *Config) Get(name string) (configstore.Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[name]
	return e, ok
}

// Entries returns the current entries, sorted by name.
func (c *Config) Entries() []configstore.Entry {
	c.mu.Lock()
	out := make([]configstore.Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(x, y configstore.Entry) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Revision returns the revision of the agent's store that its copy is at:
// the number of changes made to the store, 0 before the first connection.
func (c *Config) Revision() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// Loaded returns a channel closed once the agent has had its entries from
// the platform for the first time (or has learnt that the platform keeps
// none). Ready closes after it.
func (c *Config) Loaded() <-chan struct{} { return c.loaded }

// Decode decodes the entry name into v (see configstore.Entry.Decode):
// JSON into a struct, map or slice; CSV into a slice of structs or
// []map[string]string; raw text into a string. A missing entry is an error
// matching configstore.ErrNotFound; data that does not fit v, an
// *configstore.InputError naming the line and column.
func (c *Config) Decode(name string, v any) error {
	e, ok := c.Get(name)
	if !ok {
		return fmt.Errorf("agent: configuration entry %q of %q: %w", name, c.a.identity, configstore.ErrNotFound)
	}
	return e.Decode(v)
}

// ConfigAs decodes the agent's configuration entry name into a T, as
// Config.Decode does:
//
//	type settings struct{ Units string; Cities map[string]float64 }
//	s, err := agent.ConfigAs[settings](a, "config")
func ConfigAs[T any](a *Agent, name string) (T, error) {
	var v T
	err := a.config.Decode(name, &v)
	return v, err
}

// OnChange calls fn for every create, update and delete of an entry whose
// name matches pattern, as VOLTTRON's config.subscribe does: pattern is a
// name or a shell pattern, matched as Python's fnmatch does ("*" matches
// any text, "/" included; "?" one character; "[abc]" and "[!abc]" sets),
// so "*" is every entry and "devices/*" every entry under devices/.
//
// fn is first called, as creates, for the matching entries the agent
// already has; then for each change. See Config for the order. It returns
// an error only for a malformed pattern.
func (c *Config) OnChange(pattern string, fn ConfigHandler) error {
	if fn == nil {
		return fmt.Errorf("agent: OnChange(%q): nil handler", pattern)
	}
	re, err := compileGlob(pattern)
	if err != nil {
		return fmt.Errorf("agent: OnChange(%q): %w", pattern, err)
	}
	reg := &configReg{pattern: pattern, re: re, fn: fn}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.regs = append(c.regs, reg)
	ctx := context.Background()
	if s := c.open.Load(); s != nil {
		ctx = s.ctx
	}
	names := make([]string, 0, len(c.entries))
	for name := range c.entries {
		if re.MatchString(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		c.post(ctx, ConfigEvent{Action: ConfigCreate, Entry: c.entries[name]}, []*configReg{reg})
	}
	return nil
}

// arm makes s the current session: its calls wait until its watch is
// answered. Run's connect calls it before saying hello.
func (c *Config) arm(s *session) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess, c.watchID, c.held = s, "", nil
	c.ready = make(chan struct{})
	return c.ready
}

// watch asks the platform, on s, for the entries changed since the
// revision the agent is at, and for every later change:
// ["config", "watch", since].
func (c *Config) watch(ctx context.Context, s *session) error {
	id := string(c.a.appendID(nil, c.a.nextID.Add(1)))
	c.mu.Lock()
	if c.sess != s {
		c.mu.Unlock()
		return nil
	}
	c.watchID = id
	since := strconv.FormatUint(c.rev, 10)
	c.mu.Unlock()
	return s.send(ctx, &message{ID: []byte(id), Subsys: vip.SubConfig,
		Args: [][]byte{[]byte(vip.OpConfigWatch), []byte(since)}})
}

// holds reports whether the call m waits for s's watch answer, and keeps
// it if so. Only s's reader calls it.
func (c *Config) holds(s *session, m message) bool {
	if c.open.Load() == s {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != s || c.open.Load() == s {
		return false
	}
	c.held = append(c.held, m)
	return true
}

// dispatch handles a config message received on s: the answer to a
// watch, or a change pushed. Only s's reader calls it.
func (c *Config) dispatch(s *session, m message) {
	switch m.arg(0) {
	case vip.OpConfigWatching:
		c.answered(s, m)
	case vip.OpConfigChanged:
		c.changed(s, m)
	default:
		if !s.reply(m) {
			c.a.log.Debug("capbus agent: unexpected config message", "op", m.arg(0), "id", string(m.ID))
		}
	}
}

// refused handles an error answering a watch: the platform keeps no store
// (errno 2) or could not answer. The calls held go on, with no entries.
// It reports whether m was such an answer.
func (c *Config) refused(s *session, m message) bool {
	c.mu.Lock()
	if c.sess != s || c.watchID == "" || string(m.ID) != c.watchID {
		c.mu.Unlock()
		return false
	}
	c.watchID = ""
	e := m.errorOf()
	if e.Code() == rpc.CodeNotFound {
		c.a.log.Debug("capbus agent: the platform keeps no configuration store", "message", e.Message())
	} else {
		c.a.log.Warn("capbus agent: configuration not received", "code", e.Code(), "message", e.Message())
	}
	held := c.openUp(s)
	c.mu.Unlock()
	c.serveHeld(s, held)
	return true
}

// answered applies the answer to a watch, ["watching", revision,
// ENTRY...], and lets the calls held go on.
func (c *Config) answered(s *session, m message) {
	rev, err := strconv.ParseUint(m.arg(1), 10, 64)
	var got []configstore.Entry
	for i := 2; err == nil && i < len(m.Args); i++ {
		var e configstore.Entry
		if e, err = decodeEntry(m.Args[i]); err == nil {
			got = append(got, e)
		}
	}
	c.mu.Lock()
	if c.sess != s || c.watchID == "" || string(m.ID) != c.watchID {
		c.mu.Unlock()
		return
	}
	c.watchID = ""
	if err != nil {
		c.a.log.Error("capbus agent: malformed configuration from the platform", "err", err)
	} else {
		full := rev < c.rev // the store was replaced: the answer has every entry
		if full {
			c.a.log.Warn("capbus agent: the platform's configuration store is behind this agent's copy; replacing the copy",
				"agent_revision", c.rev, "store_revision", rev)
			c.replace(s.ctx, got)
		} else {
			for _, e := range got {
				c.apply(s.ctx, e)
			}
		}
		c.rev = rev
	}
	held := c.openUp(s)
	c.mu.Unlock()
	c.serveHeld(s, held)
}

// openUp lets s's calls be served and returns the calls that waited.
// c.mu must be held.
func (c *Config) openUp(s *session) []message {
	held := c.held
	c.held = nil
	if c.open.Load() != s {
		c.open.Store(s)
		// Loaded first: ready lets Run close the agent's Ready, after
		// which Loaded must already be closed.
		select {
		case <-c.loaded:
		default:
			close(c.loaded)
		}
		close(c.ready)
	}
	return held
}

// serveHeld serves, in the order they arrived, the calls that waited for
// the configuration.
func (c *Config) serveHeld(s *session, held []message) {
	for _, m := range held {
		s.serve(m)
	}
}

// changed applies a change pushed by the platform, ["changed", ENTRY]. A
// change whose revision is not the next one means the platform could not
// push one (its queue towards the agent was full): the agent asks for what
// it missed.
func (c *Config) changed(s *session, m message) {
	if len(m.Args) < 2 {
		return
	}
	e, err := decodeEntry(m.Args[1])
	if err != nil {
		c.a.log.Error("capbus agent: malformed configuration change from the platform", "err", err)
		return
	}
	c.mu.Lock()
	switch {
	case c.sess != s || c.open.Load() != s || c.watchID != "" || e.Identity != c.a.identity:
		// Before or during a watch: its answer covers this change.
		c.mu.Unlock()
		return
	case e.Revision <= c.rev:
		c.mu.Unlock()
		return
	case e.Revision > c.rev+1:
		c.mu.Unlock()
		c.a.log.Warn("capbus agent: configuration changes were missed; asking for them", "have", c.rev, "got", e.Revision)
		if err := c.watch(s.ctx, s); err != nil {
			c.a.log.Warn("capbus agent: cannot ask for the configuration", "err", err)
		}
		return
	}
	c.apply(s.ctx, e)
	c.rev = e.Revision
	c.mu.Unlock()
}

// apply records e and posts the event it makes. c.mu must be held.
func (c *Config) apply(ctx context.Context, e configstore.Entry) {
	prev, had := c.entries[e.Name]
	var ev ConfigEvent
	switch {
	case e.Deleted && !had:
		return // created and deleted before the agent saw it
	case e.Deleted:
		delete(c.entries, e.Name)
		ev = ConfigEvent{Action: ConfigDelete, Entry: e, Previous: &prev}
	case had:
		c.entries[e.Name] = e
		ev = ConfigEvent{Action: ConfigUpdate, Entry: e, Previous: &prev}
	default:
		c.entries[e.Name] = e
		ev = ConfigEvent{Action: ConfigCreate, Entry: e}
	}
	c.post(ctx, ev, c.regs)
}

// replace makes the entries those of a whole store, got: names the agent
// had that got lacks are deleted, entries whose contents changed are
// updated. c.mu must be held.
func (c *Config) replace(ctx context.Context, got []configstore.Entry) {
	now := make(map[string]bool, len(got))
	for _, e := range got {
		if !e.Deleted {
			now[e.Name] = true
		}
	}
	var gone []string
	for name := range c.entries {
		if !now[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		c.apply(ctx, configstore.Entry{Identity: c.a.identity, Name: name, Deleted: true})
	}
	for _, e := range got {
		if prev, had := c.entries[e.Name]; had && !e.Deleted && prev.Kind == e.Kind && string(prev.Data) == string(e.Data) {
			c.entries[e.Name] = e // same contents, new numbering: no event
			continue
		}
		c.apply(ctx, e)
	}
}

// post queues ev for the handlers among regs whose pattern matches its
// entry, and starts the goroutine that calls them if none runs. c.mu must
// be held.
func (c *Config) post(ctx context.Context, ev ConfigEvent, regs []*configReg) {
	var to []*configReg
	for _, r := range regs {
		if r.re.MatchString(ev.Entry.Name) {
			to = append(to, r)
		}
	}
	if len(to) == 0 {
		return
	}
	c.queue = append(c.queue, configDelivery{ctx: ctx, ev: ev, regs: to})
	if !c.running {
		c.running = true
		c.a.handlers.Add(1)
		go c.drain()
	}
}

// drain calls the handlers of the queued events in order and exits when
// none is left.
func (c *Config) drain() {
	defer c.a.handlers.Done()
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			c.queue = nil
			c.mu.Unlock()
			return
		}
		d := c.queue[0]
		c.queue[0] = configDelivery{}
		c.queue = c.queue[1:]
		c.mu.Unlock()
		for _, r := range d.regs {
			c.call(r, d)
		}
	}
}

func (c *Config) call(r *configReg, d configDelivery) {
	defer func() {
		if p := recover(); p != nil {
			c.a.log.Error("capbus agent: configuration handler panicked", "pattern", r.pattern,
				"name", d.ev.Entry.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	r.fn(d.ctx, d.ev)
}

// decodeEntry decodes an ENTRY frame.
func decodeEntry(b []byte) (configstore.Entry, error) {
	var w vip.ConfigEntry
	if err := codec.Unmarshal(b, &w); err != nil {
		return configstore.Entry{}, fmt.Errorf("undecodable ENTRY: %w", err)
	}
	return w.Entry()
}

// compileGlob compiles a Python fnmatch pattern (VOLTTRON's config
// patterns) into an anchored regular expression.
func compileGlob(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	for i := 0; i < len(pattern); i++ {
		switch ch := pattern[i]; ch {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i + 1
			if j < len(pattern) && pattern[j] == '!' {
				j++
			}
			if j < len(pattern) && pattern[j] == ']' {
				j++
			}
			for j < len(pattern) && pattern[j] != ']' {
				j++
			}
			if j >= len(pattern) {
				b.WriteString(`\[`) // no closing bracket: a literal '['
				continue
			}
			set := pattern[i+1 : j]
			b.WriteByte('[')
			if strings.HasPrefix(set, "!") {
				b.WriteByte('^')
				set = set[1:]
			}
			b.WriteString(strings.NewReplacer(`\`, `\\`, `[`, `\[`, `^`, `\^`).Replace(set))
			b.WriteByte(']')
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(string(ch)))
		}
	}
	b.WriteString(`\z`)
	return regexp.Compile(b.String())
}

// ConfigStore is access to the configuration store of one agent identity,
// as the operator has it: reading another agent's entries needs the
// capability read_config_store or edit_config_store, changing any
// identity's entries (the agent's own too) needs edit_config_store, and
// auth.json may restrict either to some identities with a parameter
// restriction on "identity" (docs/AUTH.md). A refusal is an *rpc.Error
// matching rpc.ErrUnauthorized that names what is missing.
//
// Other errors: a missing entry or version matches rpc.ErrNotFound and
// configstore.ErrNotFound; refused input matches rpc.ErrInvalidArgs and
// configstore.ErrInvalid (Put validates before sending; errors.As then
// finds the *configstore.InputError).
type ConfigStore struct {
	a        *Agent
	identity string
}

// ConfigStore returns access to identity's configuration store through the
// platform. It does not connect or check anything.
func (a *Agent) ConfigStore(identity string) *ConfigStore {
	return &ConfigStore{a: a, identity: identity}
}

// Get returns the current entry name.
func (cs *ConfigStore) Get(ctx context.Context, name string) (configstore.Entry, error) {
	return cs.one(ctx, vip.OpConfigGet, []byte(name))
}

// List returns the current entries, sorted by name.
func (cs *ConfigStore) List(ctx context.Context) ([]configstore.Entry, error) {
	return cs.many(ctx, vip.OpConfigList)
}

// History returns the kept versions of the entry name, newest first,
// deletions included.
func (cs *ConfigStore) History(ctx context.Context, name string) ([]configstore.Entry, error) {
	return cs.many(ctx, vip.OpConfigHistory, []byte(name))
}

// Put stores data, of kind (configstore.KindJSON, KindCSV or KindRaw), as
// the new version of the entry name, and returns it. data is validated
// first (configstore.Validate, with name as the file name): bad input is
// refused before anything is sent.
func (cs *ConfigStore) Put(ctx context.Context, name string, kind configstore.Kind, data []byte) (configstore.Entry, error) {
	if err := configstore.Validate(kind, name, data); err != nil {
		return configstore.Entry{}, invalidInput{err}
	}
	return cs.one(ctx, vip.OpConfigPut, []byte(name), []byte(kind), data)
}

// invalidInput is input Put refused before sending: the
// *configstore.InputError, which also matches rpc.ErrInvalidArgs as the
// platform's refusal of it would.
type invalidInput struct{ err error }

func (e invalidInput) Error() string   { return e.err.Error() }
func (e invalidInput) Unwrap() []error { return []error{e.err, rpc.ErrInvalidArgs} }

// Delete deletes the entry name and returns its tombstone.
func (cs *ConfigStore) Delete(ctx context.Context, name string) (configstore.Entry, error) {
	return cs.one(ctx, vip.OpConfigDelete, []byte(name))
}

// DeleteAll deletes every entry of the store (VOLTTRON's delete_store) and
// returns the tombstones, in name order.
func (cs *ConfigStore) DeleteAll(ctx context.Context) ([]configstore.Entry, error) {
	return cs.many(ctx, vip.OpConfigDeleteStore)
}

// Rollback stores the data of an earlier version of the entry name as its
// new version and returns it.
func (cs *ConfigStore) Rollback(ctx context.Context, name string, version uint64) (configstore.Entry, error) {
	return cs.one(ctx, vip.OpConfigRollback, []byte(name), []byte(strconv.FormatUint(version, 10)))
}

func (cs *ConfigStore) one(ctx context.Context, op string, args ...[]byte) (configstore.Entry, error) {
	r, err := cs.request(ctx, op, args)
	if err != nil {
		return configstore.Entry{}, err
	}
	if r.arg(0) != vip.OpConfigEntry || len(r.Args) < 2 {
		return configstore.Entry{}, rpc.Errorf(rpc.CodeProtocol, "config %s answered with %q, want %q and an ENTRY", op, r.arg(0), vip.OpConfigEntry)
	}
	e, err := decodeEntry(r.Args[1])
	if err != nil {
		return configstore.Entry{}, rpc.Errorf(rpc.CodeProtocol, "config %s: %v", op, err)
	}
	return e, nil
}

func (cs *ConfigStore) many(ctx context.Context, op string, args ...[]byte) ([]configstore.Entry, error) {
	r, err := cs.request(ctx, op, args)
	if err != nil {
		return nil, err
	}
	if r.arg(0) != vip.OpConfigEntries {
		return nil, rpc.Errorf(rpc.CodeProtocol, "config %s answered with %q, want %q", op, r.arg(0), vip.OpConfigEntries)
	}
	out := make([]configstore.Entry, 0, len(r.Args)-1)
	for _, b := range r.Args[1:] {
		e, err := decodeEntry(b)
		if err != nil {
			return nil, rpc.Errorf(rpc.CodeProtocol, "config %s: %v", op, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// request sends ["config", op, identity, args...] and waits for the answer.
func (cs *ConfigStore) request(ctx context.Context, op string, args [][]byte) (message, error) {
	if err := checkIdentity(cs.identity); err != nil {
		return message{}, rpc.NewError(rpc.CodeInvalidArgs, err.Error()).WithCause(configstore.ErrInvalid)
	}
	ctx, cancel := cs.a.bound(ctx)
	defer cancel()
	s, err := cs.a.current(ctx)
	if err != nil {
		return message{}, err
	}
	frames := append([][]byte{[]byte(op), []byte(cs.identity)}, args...)
	r, err := s.request(ctx, &message{Subsys: vip.SubConfig, Args: frames}, 0)
	if err != nil {
		if e, ok := err.(*rpc.Error); ok {
			switch e.Code() {
			case rpc.CodeNotFound:
				e.WithCause(configstore.ErrNotFound)
			case rpc.CodeInvalidArgs:
				e.WithCause(configstore.ErrInvalid)
			}
		}
		return message{}, err
	}
	return r, nil
}
