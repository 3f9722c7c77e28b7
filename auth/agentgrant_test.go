package auth_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/rpc"
)

const agentGrantPolicy = `{
  "roles": {"operator": ["can_configure", "can_restart"]},
  "allow": [
    {"user_id": "ops", "credentials": "` + keyOps + `", "identities": ["ops.ui", "ops.control", "ops.lab"],
     "capabilities": ["can_read_temp", "!can_restart"],
     "agents": {
       "ops.control": {"grant": {"capabilities": ["can_set_units"], "roles": ["operator"]}},
       "ops.lab": {"capabilities": ["can_read_temp"], "grant": {"capabilities": ["can_calibrate"]}}
     }}
  ]
}`

func opsHolds(t *testing.T, p *auth.Policy, identity, capability string) bool {
	t.Helper()
	s, err := p.Subject(rpc.Principal{UserID: "ops", Identity: identity})
	require.NoError(t, err)
	d := p.Decide(s, p.Requirement(weatherAgent, "m", auth.Declared{Capabilities: []string{capability}}), nil)
	return d.Allowed
}

func TestPolicy_AgentRuleGrantsOneIdentityMoreThanItsUser(t *testing.T) {
	p := mustParse(t, agentGrantPolicy)
	// The user's own grants, for every identity.
	assert.True(t, opsHolds(t, p, "ops.ui", "can_read_temp"))
	assert.True(t, opsHolds(t, p, "ops.control", "can_read_temp"), "a grant-only rule does not narrow")
	// The agent grant: only for ops.control.
	assert.True(t, opsHolds(t, p, "ops.control", "can_set_units"))
	assert.True(t, opsHolds(t, p, "ops.control", "can_configure"), "through the granted role")
	assert.False(t, opsHolds(t, p, "ops.ui", "can_set_units"), "another identity of the user gets nothing")
	assert.False(t, opsHolds(t, p, "ops.ui", "can_configure"))
	// The user's negation wins over the agent grant's role.
	assert.False(t, opsHolds(t, p, "ops.control", "can_restart"))
	// Narrowing and granting together.
	assert.True(t, opsHolds(t, p, "ops.lab", "can_calibrate"))
	assert.True(t, opsHolds(t, p, "ops.lab", "can_read_temp"))

	s, err := p.Subject(rpc.Principal{UserID: "ops", Identity: "ops.control"})
	require.NoError(t, err)
	perm := p.Permissions(s)
	var found bool
	for _, g := range perm.Capabilities {
		if g.Name == "can_set_units" {
			found = true
			require.Len(t, g.Sources, 1)
			assert.Equal(t, auth.SourceAgentGrant, g.Sources[0].Kind)
			assert.Equal(t, `allow[0].agents["ops.control"].grant [agent grant]`, g.Sources[0].String())
		}
	}
	assert.True(t, found, "explain shows the agent grant: %+v", perm.Capabilities)
	var roles []string
	for _, g := range perm.Roles {
		roles = append(roles, g.Name)
	}
	assert.Equal(t, []string{"operator"}, roles)
}

func TestPolicy_AgentGrantIsCappedByTheSiteLimit(t *testing.T) {
	p := mustParse(t, strings.Replace(agentGrantPolicy, `"roles": {`, `"site": {"ops": {"limit": ["can_read_temp", "can_calibrate"]}}, "roles": {`, 1))
	assert.False(t, opsHolds(t, p, "ops.control", "can_set_units"))
	assert.True(t, opsHolds(t, p, "ops.lab", "can_calibrate"))
}

func TestValidate_AgentGrantNamesUnknownRolesAndCapabilities(t *testing.T) {
	_, err := auth.Parse("auth.json", []byte(strings.Replace(agentGrantPolicy, `"roles": ["operator"]`, `"roles": ["operater"]`, 1)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `allow[0].agents["ops.control"].grant.roles[0]: role "operater" is not defined`)
	_, err = auth.Parse("auth.json", []byte(strings.Replace(agentGrantPolicy, `{"grant": {"capabilities": ["can_set_units"]`, `{"grant": {"capabilites": ["can_set_units"]`, 1)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "capabilites")
}

func TestPolicy_DenyByDefaultRemoteSparesLoopbackCallers(t *testing.T) {
	doc := `{"deny_by_default": "remote", "allow": [
	  {"user_id": "ops", "credentials": "` + keyOps + `"},
	  {"user_id": "weather", "credentials": "` + keyWeather + `", "identity": "weather"}]}`
	p := mustParse(t, doc)
	assert.Equal(t, auth.DenyRemote, p.DenyByDefault())
	req := p.Requirement(weatherAgent, "hello", auth.Declared{})
	decide := func(addr string) auth.Decision {
		s, err := p.SubjectAt(rpc.Principal{UserID: "ops", Identity: "ops"}, addr)
		require.NoError(t, err)
		return p.Decide(s, req, nil)
	}
	assert.True(t, decide("127.0.0.1:40000").Allowed, "loopback")
	assert.True(t, decide("[::1]:40000").Allowed, "loopback v6")
	d := decide("192.0.2.7:40000")
	assert.False(t, d.Allowed, "remote")
	assert.Contains(t, d.Reason(), "deny_by_default")

	all := mustParse(t, strings.Replace(doc, `"remote"`, `true`, 1))
	s, err := all.SubjectAt(rpc.Principal{UserID: "ops", Identity: "ops"}, "127.0.0.1:40000")
	require.NoError(t, err)
	assert.False(t, all.Decide(s, all.Requirement(weatherAgent, "hello", auth.Declared{}), nil).Allowed, "true applies to loopback too")

	_, err = auth.Parse("auth.json", []byte(strings.Replace(doc, `"remote"`, `"local"`, 1)))
	assert.ErrorContains(t, err, `deny_by_default: expected true, false or "remote"`)
}

func TestFile_MarshalKeepsDenyModeAndAgentGrants(t *testing.T) {
	f, err := auth.ParseFile("auth.json", []byte(`{"deny_by_default": "remote", "roles": {"operator": ["can_configure"]}, "allow": [
	  {"user_id": "ops", "credentials": "`+keyOps+`", "identities": ["ops.control"],
	   "agents": {"ops.control": {"grant": {"roles": ["operator"]}}}}]}`))
	require.NoError(t, err)
	out, err := f.Marshal()
	require.NoError(t, err)
	assert.Contains(t, string(out), `"deny_by_default": "remote"`)
	back, err := auth.ParseFile("auth.json", out)
	require.NoError(t, err)
	assert.Equal(t, f.DenyByDefault, back.DenyByDefault)
	assert.Equal(t, f.Allow[0].Agents, back.Allow[0].Agents)
	_, err = back.Compile("auth.json")
	require.NoError(t, err)
}
