package admin_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/capbus/capbus/platform/admin"
)

// fakeBackend is a small policy model standing in for the platform: users
// hold capabilities and roles, agents export methods with requirements, and
// the matrix is computed from them on every Snapshot, so a Grant changes
// it.
type fakeBackend struct {
	mu       sync.Mutex
	users    []string
	caps     map[string][]string // user -> capabilities
	condCaps map[string][]string // user -> capabilities granted with a parameter restriction
	roles    map[string][]string // user -> roles
	agents   []admin.Agent
	peers    []admin.Peer
	denials  []admin.Denial
	policy   admin.PolicyState

	readyErr error // returned by Ready
	snapErr  error // returned by Snapshot
	editErr  error // returned by Grant and Revoke
	edits    []fakeEdit
}

// fakeEdit is one call of Grant or Revoke.
type fakeEdit struct {
	Op, By, User, Capability string
}

func (f *fakeBackend) Snapshot(ctx context.Context) (admin.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.snapErr != nil {
		return admin.Snapshot{}, f.snapErr
	}
	s := admin.Snapshot{
		Peers:   slices.Clone(f.peers),
		Agents:  slices.Clone(f.agents),
		Denials: slices.Clone(f.denials),
		Policy:  f.policy,
	}
	s.Matrix.Users = slices.Clone(f.users)
	for _, a := range f.agents {
		for _, m := range a.Methods {
			s.Matrix.Targets = append(s.Matrix.Targets, a.Identity+"."+m.Name)
		}
	}
	for ui, u := range f.users {
		var row []admin.Cell
		for _, a := range f.agents {
			for _, m := range a.Methods {
				row = append(row, f.decide(ui, u, a, m))
			}
		}
		s.Matrix.Cells = append(s.Matrix.Cells, row)
	}
	return s, nil
}

// decide mimics the policy's decision and explanation.
func (f *fakeBackend) decide(ui int, user string, a admin.Agent, m admin.Method) admin.Cell {
	var c admin.Cell
	var missing []string
	conditional := false
	for _, need := range m.Capabilities {
		switch {
		case slices.Contains(f.caps[user], need):
			c.Sources = append(c.Sources, fmt.Sprintf("%s: allow[%d] (%s) capabilities", need, ui, user))
		case slices.Contains(f.condCaps[user], need):
			conditional = true
			c.Sources = append(c.Sources, fmt.Sprintf("%s: allow[%d] (%s) capabilities, only with parameter %q matching /lab-.*/", need, ui, user, m.Params[0]))
		default:
			missing = append(missing, need)
		}
	}
	for _, need := range m.Roles {
		if slices.Contains(f.roles[user], need) {
			c.Sources = append(c.Sources, fmt.Sprintf("role %s: allow[%d] (%s) roles", need, ui, user))
		} else {
			missing = append(missing, "role:"+need)
		}
	}
	c.Missing = missing
	c.Allowed = len(missing) == 0
	c.Conditional = c.Allowed && conditional
	held := slices.Clone(f.caps[user])
	if held == nil {
		held = []string{}
	}
	switch {
	case !c.Allowed:
		c.Reason = fmt.Sprintf("method %q of %q requires capabilities %v roles %v, but capabilities %v were provided; missing %v",
			m.Name, a.Identity, m.Capabilities, m.Roles, held, missing)
	case c.Conditional:
		c.Reason = fmt.Sprintf("method %q of %q is allowed when parameter %q matches /lab-.*/", m.Name, a.Identity, m.Params[0])
	default:
		c.Reason = fmt.Sprintf("method %q of %q: every requirement is held", m.Name, a.Identity)
	}
	return c
}

func (f *fakeBackend) Grant(ctx context.Context, by, user, capability string) error {
	return f.edit("grant", by, user, capability)
}

func (f *fakeBackend) Revoke(ctx context.Context, by, user, capability string) error {
	return f.edit("revoke", by, user, capability)
}

func (f *fakeBackend) edit(op, by, user, capability string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.edits = append(f.edits, fakeEdit{Op: op, By: by, User: user, Capability: capability})
	if f.editErr != nil {
		return f.editErr
	}
	if !slices.Contains(f.users, user) {
		return fmt.Errorf("edit refused: auth.json has no allow entry with user_id %q", user)
	}
	if op == "grant" {
		if !slices.Contains(f.caps[user], capability) {
			f.caps[user] = append(f.caps[user], capability)
		}
	} else {
		f.caps[user] = slices.DeleteFunc(f.caps[user], func(c string) bool { return c == capability })
	}
	f.policy.Generation++
	f.policy.LoadedAt = time.Now()
	return nil
}

func (f *fakeBackend) Ready(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readyErr
}

func (f *fakeBackend) setReadyErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readyErr = err
}

func (f *fakeBackend) setEditErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.editErr = err
}

func (f *fakeBackend) setSnapErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snapErr = err
}

func (f *fakeBackend) addPeer(p admin.Peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = append(f.peers, p)
}

func (f *fakeBackend) addDenial(d admin.Denial) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.denials = append([]admin.Denial{d}, f.denials...)
}

func (f *fakeBackend) recordedEdits() []fakeEdit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.edits)
}

// newFake returns a fake platform as a small site would have it: the
// weather agent and a thermostat, alice who may read the weather, bobby who
// may not yet, carol the administrator, and an operator with a restricted
// grant.
func newFake(now time.Time) *fakeBackend {
	weather := admin.Agent{Identity: "weather", UserID: "weather", Methods: []admin.Method{
		{Name: "temperature", Capabilities: []string{"can_read_temp"}},
		{Name: "forecast", Capabilities: []string{"can_read_temp", "can_read_weather_data"}},
		{Name: "set_units", Roles: []string{"admin"}},
	}}
	thermostat := admin.Agent{Identity: "hvac.thermostat", UserID: "hvac", Methods: []admin.Method{
		{Name: "set_point", Capabilities: []string{"can_control_hvac"}, Params: []string{"zone"}},
	}}
	f := &fakeBackend{
		users: []string{"alice", "bobby", "carol", "ops"},
		caps: map[string][]string{
			"alice": {"can_read_temp", "can_read_weather_data"},
			"carol": {"can_read_temp", "can_control_hvac"},
		},
		condCaps: map[string][]string{"ops": {"can_control_hvac"}},
		roles:    map[string][]string{"carol": {"admin"}},
		agents:   []admin.Agent{weather, thermostat},
		policy: admin.PolicyState{
			File:       "/var/lib/capbus/auth.json",
			Generation: 7,
			LoadedAt:   now.Add(-25 * time.Minute),
			Rejected: &admin.RejectedEdit{Time: now.Add(-31 * time.Minute), Line: 14, Column: 7,
				Message: `allow[2].capabilites: unknown key; did you mean "capabilities"?`},
		},
	}
	f.peers = []admin.Peer{
		{Identity: "weather", UserID: "weather", Address: "127.0.0.1:41822", Since: now.Add(-2*time.Hour - 14*time.Minute), CallsIn: 1284},
		{Identity: "hvac.thermostat", UserID: "hvac", Address: "10.0.4.17:50312", Since: now.Add(-26 * time.Hour), CallsIn: 97, CallsOut: 3},
		{Identity: "alice.cli", UserID: "alice", Address: "127.0.0.1:41907", Since: now.Add(-42 * time.Minute), CallsOut: 212},
		{Identity: "bobby.dashboard", UserID: "bobby", Address: "10.0.4.31:38110", Since: now.Add(-7 * time.Minute), CallsOut: 3, QueueMessages: 2, QueueBytes: 1843},
		{Identity: "carol.shell", UserID: "carol", Address: "127.0.0.1:42011", Since: now.Add(-3 * time.Minute), CallsOut: 1},
	}
	missing := func(caps ...string) string {
		return fmt.Sprintf("missing [%s]", strings.Join(caps, " "))
	}
	f.denials = []admin.Denial{
		{Time: now.Add(-40 * time.Second), UserID: "bobby", Identity: "bobby.dashboard", Target: "weather.temperature",
			Reason: `method "temperature" of "weather" requires capabilities [can_read_temp], but capabilities [] were provided; ` + missing("can_read_temp"), Missing: []string{"can_read_temp"}},
		{Time: now.Add(-2 * time.Minute), UserID: "bobby", Identity: "bobby.dashboard", Target: "weather.forecast",
			Reason: `method "forecast" of "weather" requires capabilities [can_read_temp can_read_weather_data], but capabilities [] were provided; ` + missing("can_read_temp", "can_read_weather_data"), Missing: []string{"can_read_temp", "can_read_weather_data"}},
		{Time: now.Add(-18 * time.Minute), UserID: "alice", Identity: "alice.cli", Target: "weather.set_units",
			Reason: `method "set_units" of "weather" requires roles [admin], but roles [] were provided; missing [role:admin]`, Missing: []string{"role:admin"}},
	}
	return f
}
