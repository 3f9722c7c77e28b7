package station

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/configstore"
)

func event(action agent.ConfigAction, rev uint64, data string) agent.ConfigEvent {
	e := configstore.Entry{Identity: Identity, Name: ConfigName, Kind: configstore.KindJSON, Data: []byte(data),
		Version: rev, Revision: rev, User: "operator", Time: time.Now()}
	if action == agent.ConfigDelete {
		e.Kind, e.Data, e.Deleted = "", nil, true
	}
	return agent.ConfigEvent{Action: action, Entry: e}
}

// The station takes its units and cities from its configuration entry,
// keeps the defaults for what the entry leaves out, ignores an entry it
// cannot use, and goes back to the defaults when the entry is deleted.
func TestStation_FollowsItsConfigurationEntry(t *testing.T) {
	ctx := context.Background()
	s := New(nil)
	assert.Equal(t, DefaultSettings(), s.Settings())

	s.configure(ctx, event(agent.ConfigCreate, 1, `{"units": "f", "cities": {"Tokyo": 16.5}}`))
	assert.Equal(t, Settings{Units: "F", Cities: map[string]float64{"tokyo": 16.5}}, s.Settings())
	r, err := s.Temperature(ctx, TemperatureArgs{City: "tokyo"})
	require.NoError(t, err)
	assert.Equal(t, "61.7 °F in tokyo", r.String())
	_, err = s.Temperature(ctx, TemperatureArgs{City: "paris"})
	assert.ErrorContains(t, err, `no station in "paris"; known: tokyo`)

	s.configure(ctx, event(agent.ConfigUpdate, 2, `{"units": "K"}`))
	assert.Equal(t, "F", s.Settings().Units, "unknown units are ignored")
	s.configure(ctx, event(agent.ConfigUpdate, 3, `{"cities": "everywhere"}`))
	assert.Equal(t, "F", s.Settings().Units, "an entry that does not decode is ignored")

	s.configure(ctx, event(agent.ConfigUpdate, 4, `{"units": "C"}`))
	assert.Equal(t, DefaultSettings(), s.Settings(), "cities left out: the default cities")

	s.configure(ctx, event(agent.ConfigUpdate, 5, `{"units": "F"}`))
	s.configure(ctx, event(agent.ConfigDelete, 6, ""))
	assert.Equal(t, DefaultSettings(), s.Settings())
	require.NoError(t, s.WaitApplied(ctx, 6))
	wctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, s.WaitApplied(wctx, 7), context.DeadlineExceeded)
}
