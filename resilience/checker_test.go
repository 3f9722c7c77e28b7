//go:build linux

package resilience

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A timeline in milliseconds: v0 grants chk1 cap_a; v1 (written at 10..11)
// revokes it; v2 (20..21) is broken; v3 (30..31) grants it again. The probe
// saw v0 as generation 1, v1 as 2 and v3 as 3.
func checkerTimeline() (func(ms int) time.Time, []*version, []observation) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	versions := []*version{
		{n: 0, valid: true, g: grants{"chk1": {capA}}},
		{n: 1, valid: true, kind: "revoke", g: grants{"chk1": {}}, start: at(10), end: at(11)},
		{n: 2, kind: "syntax error", g: grants{"chk1": {}}, start: at(20), end: at(21)},
		{n: 3, valid: true, kind: "grant", g: grants{"chk1": {capA}}, start: at(30), end: at(31)},
	}
	obs := []observation{
		{sent: at(0), answered: at(1), gen: 1, version: 0},
		{sent: at(12), answered: at(13), gen: 2, version: 1},
		{sent: at(31), answered: at(32), gen: 3, version: 3},
	}
	return at, versions, obs
}

func TestVerify_AcceptsDecisionsOfAPolicyInForceWhileTheCallWasUnderWay(t *testing.T) {
	at, versions, obs := checkerTimeline()
	ds := []decision{
		{caller: "chk1", method: "guarded_a", sent: at(2), answered: at(3), outcome: allowed},
		{caller: "chk1", method: "guarded_a", sent: at(9), answered: at(12), outcome: allowed},         // v0 or v1 in force
		{caller: "chk1", method: "guarded_a", sent: at(14), answered: at(15), outcome: denied, gen: 2}, // v1, exactly
		{caller: "chk1", method: "guarded_a", sent: at(9), answered: at(12), outcome: denied, gen: 2},  // v1, written before the answer
		{caller: "chk1", method: "guarded_b", sent: at(2), answered: at(3), outcome: denied, gen: 1},   // nobody holds cap_b
		{caller: "chk1", method: "guarded_a", sent: at(25), answered: at(35), outcome: allowed},        // v3 was written meanwhile
		{caller: "chk1", method: "guarded_b", sent: at(33), answered: at(34), outcome: denied, gen: 7}, // unknown generation after v3
		{caller: "chk1", method: "guarded_a", sent: at(14), answered: at(33), outcome: denied, gen: 2}, // v1 still in force at 14
		{caller: "chk1", method: "guarded_a", sent: at(14), answered: at(33), outcome: allowed},        // v3 in force by 33
	}
	r := verify(versions, obs, ds)
	assert.Empty(t, r.violations)
	assert.Equal(t, 9, r.decisions)
	assert.Equal(t, 4, r.allowed)
	assert.Equal(t, 5, r.denied)
	assert.Equal(t, 4, r.exact)
	assert.Equal(t, 1, r.interval)
	assert.Equal(t, []time.Duration{3 * time.Millisecond, 2 * time.Millisecond}, r.lags, "v1 seen 3 ms after its write began, v3 2 ms after")
	assert.Empty(t, r.unseen)
}

func TestVerify_FlagsDecisionsNoPolicyInForceCouldHaveMade(t *testing.T) {
	at, versions, obs := checkerTimeline()
	cases := map[string]decision{
		"allowed after the revocation was seen":     {caller: "chk1", method: "guarded_a", sent: at(14), answered: at(15), outcome: allowed},
		"denied by a generation that allows":        {caller: "chk1", method: "guarded_a", sent: at(2), answered: at(3), outcome: denied, gen: 1},
		"denied by a generation no longer in force": {caller: "chk1", method: "guarded_b", sent: at(14), answered: at(15), outcome: denied, gen: 1},
		"denied by a generation not yet written":    {caller: "chk1", method: "guarded_b", sent: at(2), answered: at(3), outcome: denied, gen: 3},
		"denied by an unseen generation after v3":   {caller: "chk1", method: "guarded_a", sent: at(33), answered: at(34), outcome: denied, gen: 9},
		"allowed a method nobody may call":          {caller: "chk1", method: "guarded_b", sent: at(2), answered: at(3), outcome: allowed},
		"a failure instead of a decision":           {caller: "chk1", method: "guarded_a", sent: at(2), answered: at(3), outcome: failed, err: "unavailable"},
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			r := verify(versions, obs, []decision{d})
			require.Len(t, r.violations, 1)
			t.Log(r.violations[0])
		})
	}
}

func TestVerify_FlagsPoliciesInstalledOutOfOrderOrNeverWrittenValid(t *testing.T) {
	at, versions, obs := checkerTimeline()
	r := verify(versions, append(obs, observation{sent: at(40), answered: at(41), gen: 4, version: 1}), nil)
	require.Len(t, r.violations, 1)
	assert.Contains(t, r.violations[0], "an older policy was installed after a newer one")

	r = verify(versions, append(obs, observation{sent: at(40), answered: at(41), gen: 4, version: 2}), nil)
	require.NotEmpty(t, r.violations)
	assert.Contains(t, r.violations[0], "version 2, never written valid, was in force")

	r = verify(versions, append(obs, observation{sent: at(40), answered: at(41), gen: 3, version: 1}), nil)
	require.NotEmpty(t, r.violations)
	assert.Contains(t, r.violations[0], "generation 3 was seen with versions 3 and 1")

	r = verify(versions, obs[:2], nil)
	assert.Equal(t, []int{3}, r.unseen, "v3 was never seen in force")
}
