package auth_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// Keys used by the test documents (public keys only).
const (
	keyAlice   = "33-ScDXnSKE4s_qTtCHCI79JjUdLyaU2isNAxt_DEWY"
	keyBobby   = "qemlQOhM49cmYa7Med2kam6mc1ze17vc2I8xgBQ0IVk"
	keyWeather = "OOMJm0AjiSGw_h_HSTsSJUD4phkkyKLMvJG_vpaShUQ"
	keyOps     = "GeJFfYFr50zSvK9x0Z6qmACMGy96Wz12zk4xEMQHNiA"
	keyLost    = "xoHwlzTac14QotyrMUtDlbdi8QkPby9y8L9LL7lc7H0"
	keyDriver  = "8Ue8B4fET-KpSNLNfbACJwy9I9Fhw-fCstt_9feIQSk"
	keyControl = "rwM9bGd7j0zd4TJyU4UlQaRqnw0fOvI27BafeKLRb3Y"
	keyLab     = "1SqcVyfANKveyZiqAFkyTlpKuJOki3gTlL3UjCJYIUI"
)

var weatherAgent = rpc.Principal{UserID: "weather", Identity: "weather"}

func mustParse(t testing.TB, doc string) *auth.Policy {
	t.Helper()
	p, err := auth.Parse("auth.json", []byte(doc))
	require.NoError(t, err)
	return p
}

func mustLoad(t testing.TB, path string) *auth.Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	p, err := auth.Parse(path, data)
	require.NoError(t, err)
	return p
}

func subject(t testing.TB, p *auth.Policy, user, identity string) *auth.Subject {
	t.Helper()
	s, err := p.Subject(rpc.Principal{UserID: user, Identity: identity})
	require.NoError(t, err)
	return s
}

func key(t testing.TB, s string) keys.Key {
	t.Helper()
	k, err := keys.Parse(s)
	require.NoError(t, err)
	return k
}

func call(t testing.TB, p *auth.Policy, user, method string, decl auth.Declared, args map[string]any) auth.Decision {
	t.Helper()
	return p.Decide(subject(t, p, user, user), p.Requirement(weatherAgent, method, decl), args)
}

var (
	temperature = auth.Declared{Capabilities: []string{"can_read_temp"}}
	forecast    = auth.Declared{Capabilities: []string{"can_read_temp", "can_read_weather_data"}}
)

func TestVolttron14_LoadsUnchanged(t *testing.T) {
	p := mustLoad(t, "testdata/volttron-1.4.json")
	assert.Equal(t, []string{"Alice", "Bobby", "control", "lab", "ops", "platform.driver", "weather"}, p.Users())

	f, err := auth.ParseFile("volttron-1.4.json", mustRead(t, "testdata/volttron-1.4.json"))
	require.NoError(t, err)
	assert.Equal(t, "1.4", f.Version)
	assert.Equal(t, "CURVE:"+keyAlice, f.Allow[2].Credentials)
	assert.Equal(t, map[string]string{"identity": "/platform\\..*/"}, f.Allow[1].Capabilities[0].Params)
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func TestVolttron14_OldCurvePrefixedCredentialAuthenticates(t *testing.T) {
	p := mustLoad(t, "testdata/volttron-1.4.json")
	user, err := p.Authenticate(key(t, keyAlice), "tcp://10.0.0.5:40000")
	require.NoError(t, err)
	assert.Equal(t, "Alice", user)
	// The same key in Z85 is the same key.
	user, err = p.Authenticate(key(t, key(t, keyAlice).Z85()), "10.0.0.5")
	require.NoError(t, err)
	assert.Equal(t, "Alice", user)
}

func TestVolttron14_DecidesAsVolttron(t *testing.T) {
	p := mustLoad(t, "testdata/volttron-1.4.json")

	assert.True(t, call(t, p, "Alice", "temperature", temperature, nil).Allowed)
	bobby := call(t, p, "Bobby", "temperature", temperature, nil)
	assert.False(t, bobby.Allowed)
	assert.Equal(t, `method "temperature" requires capabilities [can_read_temp], but capabilities [] were provided; missing [can_read_temp]`, bobby.Reason())

	// A method without RPC.allow is open to every authenticated peer.
	assert.True(t, call(t, p, "Bobby", "get_status", auth.Declared{}, nil).Allowed)

	// rpc_method_authorizations of the callee's entry add a requirement.
	d := call(t, p, "Alice", "forecast", auth.Declared{}, nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"can_read_weather_data"}, d.Missing())
	assert.True(t, call(t, p, "ops", "forecast", auth.Declared{}, nil).Allowed, "ops holds can_read_weather_data through group operators -> role admin")
}

func TestVolttron14_ParameterRestriction(t *testing.T) {
	p := mustLoad(t, "testdata/volttron-1.4.json")
	store := rpc.Principal{UserID: "config.store", Identity: "config.store"}
	req := p.Requirement(store, "manage_store", auth.Declared{Capabilities: []string{"edit_config_store"}, Params: []string{"identity", "config_name", "raw_contents"}})
	require.True(t, req.NeedsArgs())
	control := subject(t, p, "control", "control")

	ok := p.Decide(control, req, map[string]any{"identity": "platform.driver"})
	assert.True(t, ok.Allowed, ok.Reason())

	refused := p.Decide(control, req, req.NamedArgs([]any{"other", "config", "{}"}, nil))
	assert.False(t, refused.Allowed)
	assert.Contains(t, refused.Reason(), `parameter "identity" matching /platform\..*/`)
	assert.Contains(t, refused.Reason(), `identity="other"`)

	missing := p.Decide(control, req, nil)
	assert.False(t, missing.Allowed)
	assert.Contains(t, missing.Reason(), `parameter "identity" was not given`)

	// An exact (non-regex) restriction: platform.driver may edit only its own store.
	driver := subject(t, p, "platform.driver", "platform.driver")
	assert.True(t, p.Decide(driver, req, map[string]any{"identity": "platform.driver"}).Allowed)
	assert.False(t, p.Decide(driver, req, map[string]any{"identity": "platform.driverX"}).Allowed)
}

func TestVolttron14_DisabledEntryIsRefused(t *testing.T) {
	p := mustLoad(t, "testdata/volttron-1.4.json")
	_, err := p.Authenticate(key(t, keyLab), "192.168.1.7")
	require.ErrorIs(t, err, auth.ErrDisabled)
	assert.Contains(t, err.Error(), `"lab"`)
}

const weatherDoc = `{
  "allow": [
    {"user_id": "Alice", "credentials": "CURVE:` + keyAlice + `", "capabilities": ["can_read_temp"]},
    {"user_id": "Bobby", "credentials": "` + keyBobby + `"},
    {"user_id": "weather", "identity": "weather", "credentials": "` + keyWeather + `"}
  ]
}`

func TestPolicy_AliceMayCallTemperature(t *testing.T) {
	p := mustParse(t, weatherDoc)
	d := call(t, p, "Alice", "temperature", temperature, nil)
	assert.True(t, d.Allowed)
	assert.Nil(t, d.Err())
	assert.Equal(t, uint64(1), d.Generation)
}

func TestPolicy_BobbyIsRefusedTemperatureAndTheDecisionNamesTheMissingCapability(t *testing.T) {
	p := mustParse(t, weatherDoc)
	d := call(t, p, "Bobby", "temperature", temperature, nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"can_read_temp"}, d.Missing())
	assert.Equal(t, `method "temperature" requires capabilities [can_read_temp], but capabilities [] were provided; missing [can_read_temp]`, d.Reason())
	require.ErrorIs(t, d.Err(), rpc.ErrUnauthorized)

	e := d.Explanation()
	assert.Equal(t, []string{"can_read_temp"}, e.RequiredCapabilities)
	assert.Equal(t, []string{"can_read_temp"}, e.Missing)
	assert.Equal(t, "Bobby", e.UserID)
	assert.Contains(t, e.String(), "DENIED")
}

func TestPolicy_ForecastNeedsBothCapabilities(t *testing.T) {
	p := mustParse(t, weatherDoc)
	d := call(t, p, "Alice", "forecast", forecast, nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"can_read_weather_data"}, d.Missing())
}

const rolesDoc = `{
  "capability_groups": {"READ": ["read_a", "read_b"], "CONTROL": ["start", "stop"], "ALL": ["READ", "CONTROL", "broadcast"]},
  "roles": {"viewer": ["READ"], "operator": ["CONTROL"], "admin": ["ALL"]},
  "groups": {"ops": ["viewer", "operator"]},
  "allow": [
    {"user_id": "v", "credentials": "` + keyAlice + `", "roles": ["viewer"]},
    {"user_id": "o", "credentials": "` + keyBobby + `", "groups": ["ops"]},
    {"user_id": "neg", "credentials": "` + keyWeather + `", "groups": ["ops"], "capabilities": ["!stop"]},
    {"user_id": "a", "credentials": "` + keyOps + `", "roles": ["admin"], "capabilities": ["!CONTROL"]},
    {"user_id": "*", "capabilities": ["everyone", "stop"]}
  ]
}`

func holds(t *testing.T, p *auth.Policy, user, cap string) bool {
	t.Helper()
	return p.Decide(subject(t, p, user, user), p.Requirement(weatherAgent, "m", auth.Declared{Capabilities: []string{cap}}), nil).Allowed
}

func TestPolicy_RolesAndGroupsExpand(t *testing.T) {
	p := mustParse(t, rolesDoc)
	assert.True(t, holds(t, p, "v", "read_a"))
	assert.True(t, holds(t, p, "v", "READ"), "a capability group can be required: every member must be held")
	assert.False(t, holds(t, p, "v", "start"))
	assert.True(t, holds(t, p, "o", "read_b"), "group ops -> role viewer")
	assert.True(t, holds(t, p, "o", "start"), "group ops -> role operator")
	assert.True(t, holds(t, p, "a", "broadcast"), "role admin -> capability group ALL")

	perm := p.Permissions(subject(t, p, "o", "o"))
	var start auth.Grant
	for _, g := range perm.Capabilities {
		if g.Name == "start" {
			start = g
		}
	}
	require.Len(t, start.Sources, 1)
	assert.Equal(t, auth.SourceGroup, start.Sources[0].Kind)
	assert.Equal(t, "operator", start.Sources[0].Role)
	assert.Equal(t, "ops", start.Sources[0].Group)
	assert.Equal(t, "CONTROL", start.Sources[0].CapabilityGroup)
	assert.Equal(t, []string{"operator", "viewer"}, grantNames(perm.Roles))
}

func grantNames(gs []auth.Grant) []string {
	out := []string{}
	for _, g := range gs {
		out = append(out, g.Name)
	}
	return out
}

func TestPolicy_NegationBeatsWildcardGrant(t *testing.T) {
	p := mustParse(t, rolesDoc)
	// "stop" is granted by group ops -> role operator AND by "*"; "!stop" wins.
	assert.True(t, holds(t, p, "o", "stop"))
	assert.False(t, holds(t, p, "neg", "stop"))
	assert.True(t, holds(t, p, "neg", "start"))
	assert.True(t, holds(t, p, "neg", "everyone"))

	d := p.Decide(subject(t, p, "neg", "neg"), p.Requirement(weatherAgent, "halt", auth.Declared{Capabilities: []string{"stop"}}), nil)
	e := d.Explanation()
	require.Len(t, e.Removed, 1)
	assert.Equal(t, "stop", e.Removed[0].Name)
	assert.Equal(t, "negation", e.Removed[0].Cause)
	assert.Equal(t, "allow[2]", e.Removed[0].By[0].Entry)
	kinds := map[auth.SourceKind]bool{}
	for _, s := range e.Removed[0].GrantedBy {
		kinds[s.Kind] = true
	}
	assert.True(t, kinds[auth.SourceAny] && kinds[auth.SourceGroup], "the overridden grants are listed: %v", e.Removed[0].GrantedBy)
}

func TestPolicy_NegatedCapabilityGroupBeatsRoleGrant(t *testing.T) {
	p := mustParse(t, rolesDoc)
	assert.False(t, holds(t, p, "a", "start"))
	assert.False(t, holds(t, p, "a", "stop"), "!CONTROL also beats the * grant of stop")
	assert.True(t, holds(t, p, "a", "read_a"))
}

func TestPolicy_NegationInWildcardEntryBeatsDirectGrant(t *testing.T) {
	p := mustParse(t, `{"allow": [
	  {"user_id": "u", "credentials": "`+keyAlice+`", "capabilities": ["shutdown", "x"]},
	  {"user_id": "*", "capabilities": ["!shutdown"]}]}`)
	assert.False(t, holds(t, p, "u", "shutdown"))
	assert.True(t, holds(t, p, "u", "x"))
}

func TestPolicy_NegationInRoleBeatsDirectGrant(t *testing.T) {
	p := mustParse(t, `{"roles": {"restricted": ["!shutdown"]}, "allow": [
	  {"user_id": "u", "credentials": "`+keyAlice+`", "roles": ["restricted"], "capabilities": ["shutdown"]}]}`)
	assert.False(t, holds(t, p, "u", "shutdown"))
}

func TestPolicy_SiteLimitCapsWhatAnEntryGrants(t *testing.T) {
	p := mustParse(t, rolesDoc[:len(rolesDoc)-2]+`,
	  "site": {"*": {"limit": ["READ", "CONTROL", "everyone", "!stop"]}, "a": {"limit": ["ALL"]}}
	}`)
	assert.False(t, holds(t, p, "o", "stop"), "limit excludes stop")
	assert.True(t, holds(t, p, "o", "start"))
	assert.True(t, holds(t, p, "a", "broadcast"), "a has its own limit")
	assert.False(t, holds(t, p, "o", "broadcast"))

	d := p.Decide(subject(t, p, "o", "o"), p.Requirement(weatherAgent, "halt", auth.Declared{Capabilities: []string{"stop"}}), nil)
	e := d.Explanation()
	require.Len(t, e.Removed, 1)
	assert.Equal(t, "site limit", e.Removed[0].Cause)
	assert.Equal(t, `site["*"]`, e.Removed[0].By[0].Entry)
}

func TestPolicy_SiteDefaultAppliesToEntriesThatGrantNothing(t *testing.T) {
	p := mustParse(t, `{"allow": [
	  {"user_id": "quiet", "credentials": "`+keyAlice+`"},
	  {"user_id": "busy", "credentials": "`+keyBobby+`", "capabilities": ["x"]}],
	  "site": {"*": {"default": ["read"]}}}`)
	assert.True(t, holds(t, p, "quiet", "read"))
	assert.False(t, holds(t, p, "busy", "read"))
	perm := p.Permissions(subject(t, p, "quiet", "quiet"))
	require.Len(t, perm.Capabilities, 1)
	assert.Equal(t, auth.SourceSiteDefault, perm.Capabilities[0].Sources[0].Kind)
}

const narrowDoc = `{
  "roles": {"admin": ["read", "write", "delete"]},
  "allow": [
    {"user_id": "carol", "credentials": "` + keyAlice + `", "roles": ["admin"], "capabilities": ["extra"],
     "identities": ["carol.shell", "/carol\\.dash\\..*/"],
     "agents": {"carol.dash.main": {"capabilities": ["read", "never_granted"]}}}
  ]
}`

func TestPolicy_NarrowedAgentGetsTheIntersection(t *testing.T) {
	p := mustParse(t, narrowDoc)
	shell := subject(t, p, "carol", "carol.shell")
	dash := subject(t, p, "carol", "carol.dash.main")
	req := func(c string) *auth.Requirement {
		return p.Requirement(weatherAgent, "m", auth.Declared{Capabilities: []string{c}})
	}
	assert.True(t, p.Decide(shell, req("write"), nil).Allowed)
	assert.True(t, p.Decide(dash, req("read"), nil).Allowed)
	assert.False(t, p.Decide(dash, req("write"), nil).Allowed, "not in the narrowing")
	assert.False(t, p.Decide(dash, req("never_granted"), nil).Allowed, "narrowing never adds")
	roleReq := p.Requirement(weatherAgent, "m", auth.Declared{Roles: []string{"admin"}})
	assert.True(t, p.Decide(shell, roleReq, nil).Allowed)
	assert.False(t, p.Decide(dash, roleReq, nil).Allowed, "roles are narrowed too")

	perm := p.Permissions(dash)
	assert.True(t, perm.Narrowed)
	assert.Equal(t, []string{"read"}, grantNames(perm.Capabilities))
	var causes []string
	for _, r := range perm.Removed {
		causes = append(causes, r.Name+":"+r.Cause)
	}
	assert.Contains(t, causes, "write:agent narrowing")
}

func TestPolicy_IdentityBinding(t *testing.T) {
	p := mustParse(t, narrowDoc[:len(narrowDoc)-6]+`,
	  {"user_id": "free", "credentials": "`+keyBobby+`"},
	  {"user_id": "weather", "identity": "weather", "credentials": "`+keyWeather+`"}]}`)
	require.NoError(t, p.CheckIdentity("carol", "carol.shell"))
	require.NoError(t, p.CheckIdentity("carol", "carol.dash.x"))
	err := p.CheckIdentity("carol", "weather")
	require.ErrorIs(t, err, auth.ErrIdentityNotAllowed)
	assert.Contains(t, err.Error(), `"weather"`)
	assert.Contains(t, err.Error(), `"carol.shell"`)

	// A key with no identity restriction may claim any identity not bound to another user.
	require.NoError(t, p.CheckIdentity("free", "anything"))
	err = p.CheckIdentity("free", "weather")
	require.ErrorIs(t, err, auth.ErrIdentityNotAllowed)
	assert.Contains(t, err.Error(), `bound to user "weather"`)
	require.ErrorIs(t, p.CheckIdentity("free", "carol.dash.z"), auth.ErrIdentityNotAllowed, "pattern bindings are reserved too")
	require.ErrorIs(t, p.CheckIdentity("nobody", "x"), auth.ErrUnknownUser)
}

const paramDoc = `{"allow": [
  {"user_id": "ctl", "credentials": "` + keyAlice + `",
   "capabilities": {"edit_config_store": {"identity": "/platform\\..*/"}}},
  {"user_id": "both", "credentials": "` + keyBobby + `",
   "capabilities": [{"edit_config_store": {"identity": "mine"}}, "other"], "roles": ["editor"]}],
  "roles": {"editor": ["edit_config_store"]}}`

func TestPolicy_ParameterRestrictionAllowsMatchingAndRefusesOtherValues(t *testing.T) {
	p := mustParse(t, paramDoc)
	s := subject(t, p, "ctl", "ctl")
	req := p.Requirement(rpc.Principal{UserID: "cs", Identity: "config.store"}, "edit_config_store",
		auth.Declared{Capabilities: []string{"edit_config_store"}, Params: []string{"identity"}})
	require.True(t, req.NeedsArgs())
	assert.True(t, p.Decide(s, req, map[string]any{"identity": "platform.driver"}).Allowed)
	d := p.Decide(s, req, map[string]any{"identity": "other"})
	assert.False(t, d.Allowed)
	assert.Equal(t, `method "edit_config_store": capability edit_config_store is granted only with parameter "identity" matching /platform\..*/, but identity="other"`, d.Reason())
	assert.False(t, p.Decide(s, req, map[string]any{"identity": "xplatform.driver"}).Allowed, "the regex is anchored")

	// An unrestricted grant from another source (a role) lifts the restriction.
	both := subject(t, p, "both", "both")
	assert.True(t, p.Decide(both, req, map[string]any{"identity": "anything"}).Allowed)
}

func TestPolicy_RequirementWithoutRestrictedCapabilityNeedsNoArgs(t *testing.T) {
	p := mustParse(t, paramDoc)
	assert.False(t, p.Requirement(weatherAgent, "m", auth.Declared{Capabilities: []string{"other"}}).NeedsArgs())
}

const topicDoc = `{
  "allow": [
    {"user_id": "dev", "credentials": "` + keyAlice + `", "capabilities": ["write_devices", "read_devices"]},
    {"user_id": "plain", "credentials": "` + keyBobby + `"}
  ],
  "topics": {
    "devices/#": {"publish": ["write_devices"], "subscribe": ["read_devices"]},
    "devices/secret/+/key": {"publish": [], "comments": "subscribe not listed: nobody"},
    "open/#": {"publish": [], "subscribe": []}
  }
}`

func TestPolicy_TopicRuleOnDevicesDoesNotProtectDevicesX(t *testing.T) {
	p := mustParse(t, topicDoc)
	plain := subject(t, p, "plain", "plain")
	dev := subject(t, p, "dev", "dev")

	assert.True(t, p.DecideTopic(plain, auth.Publish, "devicesX").Allowed)
	assert.True(t, p.DecideTopic(plain, auth.Publish, "devicesX/a").Allowed)
	for _, topic := range []string{"devices", "devices/a", "devices/a/b/c"} {
		d := p.DecideTopic(plain, auth.Publish, topic)
		assert.False(t, d.Allowed, topic)
		assert.Equal(t, []string{"write_devices"}, d.Missing(), topic)
		assert.True(t, p.DecideTopic(dev, auth.Publish, topic).Allowed, topic)
	}
	assert.Contains(t, p.DecideTopic(plain, auth.Subscribe, "devices/a").Reason(), `topic rule "devices/#"`)
}

func TestPolicy_TopicPlusMatchesOneSegmentAndUnlistedOperationIsDenied(t *testing.T) {
	p := mustParse(t, topicDoc)
	dev := subject(t, p, "dev", "dev")
	d := p.DecideTopic(dev, auth.Subscribe, "devices/secret/x/key")
	assert.False(t, d.Allowed)
	assert.Contains(t, d.Reason(), `topic rule "devices/secret/+/key" protects this tree and allows no subscribe`)
	assert.True(t, p.DecideTopic(dev, auth.Subscribe, "devices/secret/x/y/key").Allowed, "+ is one segment")
	assert.True(t, p.DecideTopic(dev, auth.Publish, "devices/secret/x/key").Allowed)
	// A trailing "/" receives what the filter without it does, so it is
	// judged as that filter: it went around every exact and + rule.
	for _, f := range []string{"devices/secret/x/key/", "devices/secret/+/key/"} {
		d := p.DecideTopic(dev, auth.Subscribe, f)
		assert.False(t, d.Allowed, f)
		assert.Contains(t, d.Reason(), `topic rule "devices/secret/+/key"`, f)
	}
}

func TestPolicy_SubscriptionFilterIsJudgedAgainstEveryTreeItCouldReceive(t *testing.T) {
	p := mustParse(t, topicDoc)
	dev := subject(t, p, "dev", "dev")
	plain := subject(t, p, "plain", "plain")
	assert.False(t, p.DecideTopic(dev, auth.Subscribe, "#").Allowed, "# reaches devices/secret/+/key")
	assert.False(t, p.DecideTopic(dev, auth.Subscribe, "devices/+/+/key").Allowed)
	assert.True(t, p.DecideTopic(dev, auth.Subscribe, "devices/+/temp").Allowed)
	assert.False(t, p.DecideTopic(plain, auth.Subscribe, "+/a").Allowed, "+ reaches devices/a")
	assert.True(t, p.DecideTopic(plain, auth.Subscribe, "open/#").Allowed)
	assert.True(t, p.DecideTopic(plain, auth.Subscribe, "elsewhere/#").Allowed)
	assert.False(t, p.DecideTopic(plain, auth.Publish, "open/+").Allowed, "a published topic has no wildcards")
}

func TestPolicy_DenyAllRefusesUndeclaredMethodUntilAGrantNamesIt(t *testing.T) {
	doc := `{"deny_by_default": true, "allow": [
	  {"user_id": "a", "credentials": "` + keyAlice + `"},
	  {"user_id": "b", "credentials": "` + keyBobby + `", "capabilities": ["weather.status"]}]}`
	p := mustParse(t, doc)
	assert.True(t, p.DenyAllByDefault())
	d := call(t, p, "a", "status", auth.Declared{}, nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"weather.status"}, d.Missing())
	assert.Contains(t, d.Explanation().RequiredBy[0], "deny_by_default")
	assert.True(t, call(t, p, "b", "status", auth.Declared{}, nil).Allowed)
	// Declared requirements are unaffected.
	assert.False(t, call(t, p, "b", "temperature", temperature, nil).Allowed)

	// Without the switch, the undeclared method is open to authenticated peers.
	open := mustParse(t, strings.Replace(doc, "true", "false", 1))
	assert.True(t, call(t, open, "a", "status", auth.Declared{}, nil).Allowed)
}

func TestPolicy_DenyAllOpenedForEveryoneByWildcardGrant(t *testing.T) {
	p := mustParse(t, `{"deny_by_default": true, "allow": [
	  {"user_id": "a", "credentials": "`+keyAlice+`"},
	  {"user_id": "*", "capabilities": ["weather.ping"]}]}`)
	assert.True(t, call(t, p, "a", "ping", auth.Declared{}, nil).Allowed)
	assert.False(t, call(t, p, "a", "status", auth.Declared{}, nil).Allowed)
}

func TestPolicy_OperatorRequirementPerIdentityMethod(t *testing.T) {
	p := mustParse(t, `{"roles": {"admin": ["x"]}, "allow": [
	  {"user_id": "boss", "credentials": "`+keyAlice+`", "roles": ["admin"]},
	  {"user_id": "Alice", "credentials": "`+keyBobby+`", "capabilities": ["can_read_temp"]}],
	  "methods": {"weather.set_units": {"roles": ["admin"]}, "weather.temperature": {"capabilities": ["extra"]}}}`)
	assert.True(t, call(t, p, "boss", "set_units", auth.Declared{}, nil).Allowed)
	d := call(t, p, "Alice", "set_units", auth.Declared{}, nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"role:admin"}, d.Missing())
	assert.Contains(t, d.Reason(), "requires roles [admin]")
	// Operator requirements add to the declared ones.
	d = call(t, p, "Alice", "temperature", temperature, nil)
	assert.Equal(t, []string{"extra"}, d.Missing())
	assert.Contains(t, d.Explanation().RequiredBy, `methods["weather.temperature"]`)
}

func TestPolicy_SelfAndAttributeConditions(t *testing.T) {
	p := mustParse(t, `{"allow": [
	  {"user_id": "weather", "identity": "weather", "credentials": "`+keyWeather+`", "attributes": {"org": "acme"}},
	  {"user_id": "a", "credentials": "`+keyAlice+`", "attributes": {"org": "acme"}},
	  {"user_id": "b", "credentials": "`+keyBobby+`", "attributes": {"org": "other"}}],
	  "methods": {"weather.reset": {"self": true}, "weather.report": {"same_attributes": ["org"]},
	              "weather.audit": {"caller_attributes": {"org": "other"}}}}`)
	assert.True(t, call(t, p, "weather", "reset", auth.Declared{}, nil).Allowed)
	d := call(t, p, "a", "reset", auth.Declared{}, nil)
	assert.False(t, d.Allowed)
	assert.Contains(t, d.Reason(), `only by its own user "weather"`)
	assert.True(t, call(t, p, "a", "report", auth.Declared{}, nil).Allowed)
	d = call(t, p, "b", "report", auth.Declared{}, nil)
	assert.False(t, d.Allowed)
	assert.Contains(t, d.Reason(), `attribute "org"`)
	assert.True(t, call(t, p, "b", "audit", auth.Declared{}, nil).Allowed)
	assert.False(t, call(t, p, "a", "audit", auth.Declared{}, nil).Allowed)
	// Declared self.
	assert.False(t, call(t, p, "a", "mine", auth.Declared{Self: true}, nil).Allowed)
}

func TestPolicy_AuthenticateEnforcesDenyListAddressAndUnknownKeys(t *testing.T) {
	p := mustParse(t, `{"allow": [
	  {"user_id": "a", "credentials": "`+keyAlice+`", "address": "/10\\.0\\..*/"},
	  {"user_id": "lost", "credentials": "`+keyLost+`"},
	  {"user_id": "b", "credentials": "`+keyBobby+`"}],
	  "deny": [{"credentials": "`+keyLost+`"}, {"user_id": "b"}]}`)
	u, err := p.Authenticate(key(t, keyAlice), "tcp://10.0.3.4:9000")
	require.NoError(t, err)
	assert.Equal(t, "a", u)
	_, err = p.Authenticate(key(t, keyAlice), "tcp://192.168.0.1:9000")
	require.ErrorIs(t, err, auth.ErrUnknownKey)
	assert.Contains(t, err.Error(), "address")
	_, err = p.Authenticate(key(t, keyLost), "10.0.0.1")
	require.ErrorIs(t, err, auth.ErrDenied)
	_, err = p.Authenticate(key(t, keyBobby), "10.0.0.1")
	require.ErrorIs(t, err, auth.ErrDenied)
	_, err = p.Authenticate(key(t, keyOps), "10.0.0.1")
	require.ErrorIs(t, err, auth.ErrUnknownKey)
}

func TestPolicy_ClosedPolicyAdmitsNobodyAndAllowsNothing(t *testing.T) {
	p := auth.ClosedPolicy()
	assert.True(t, p.Closed())
	_, err := p.Authenticate(key(t, keyAlice), "")
	require.ErrorIs(t, err, auth.ErrUnknownKey)
	require.ErrorIs(t, err, auth.ErrNoPolicy)
	_, err = p.Subject(rpc.Principal{UserID: "Alice"})
	require.ErrorIs(t, err, auth.ErrNoPolicy)
	d := p.Decide(nil, p.Requirement(weatherAgent, "m", auth.Declared{}), nil)
	assert.False(t, d.Allowed)
	assert.False(t, p.DecideTopic(nil, auth.Publish, "a").Allowed)
}

func TestPolicy_SubjectFromAnotherPolicyIsRefused(t *testing.T) {
	p1 := mustParse(t, weatherDoc)
	p2 := mustParse(t, weatherDoc)
	s := subject(t, p1, "Alice", "Alice")
	d := p2.Decide(s, p2.Requirement(weatherAgent, "temperature", temperature), nil)
	assert.False(t, d.Allowed)
	assert.Contains(t, d.Reason(), "resolve it again")
	_, err := p1.Subject(rpc.Principal{UserID: "Mallory"})
	require.ErrorIs(t, err, auth.ErrUnknownUser)
}

func TestPolicy_RequirementNamingAnUnknownCapabilityIsUnsatisfiable(t *testing.T) {
	p := mustParse(t, weatherDoc)
	d := call(t, p, "Alice", "m", auth.Declared{Capabilities: []string{"nobody_has_this"}, Roles: []string{"no_role"}}, nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"nobody_has_this", "role:no_role"}, d.Missing())
}

func TestExampleFile_LoadsAndDecides(t *testing.T) {
	p, err := auth.LoadFile("../auth.json.example")
	require.NoError(t, err)
	assert.True(t, call(t, p, "Alice", "temperature", temperature, nil).Allowed)
	d := call(t, p, "Bobby", "temperature", temperature, nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"can_read_temp"}, d.Missing())
	assert.False(t, call(t, p, "Alice", "forecast", forecast, nil).Allowed)
	assert.True(t, call(t, p, "Carol", "forecast", forecast, nil).Allowed)
	assert.True(t, call(t, p, "Carol", "set_units", auth.Declared{}, nil).Allowed)
	assert.False(t, call(t, p, "Alice", "set_units", auth.Declared{}, nil).Allowed)
	assert.False(t, holds(t, p, "Carol", "stop"), "negated")
	assert.False(t, holds(t, p, "Carol", "remove_agent"), "site limit")
	dash := subject(t, p, "Carol", "carol.dashboard.main")
	assert.False(t, p.Decide(dash, p.Requirement(weatherAgent, "set_units", auth.Declared{}), nil).Allowed, "narrowed agent")
	assert.True(t, p.Decide(dash, p.Requirement(weatherAgent, "forecast", forecast), nil).Allowed)
	w := subject(t, p, "weather", "weather")
	assert.True(t, p.DecideTopic(w, auth.Publish, "weather/paris/temperature").Allowed)
	assert.False(t, p.DecideTopic(subject(t, p, "Alice", "Alice"), auth.Publish, "weather/paris/temperature").Allowed)
	assert.True(t, p.DecideTopic(subject(t, p, "Bobby", "Bobby"), auth.Subscribe, "weather/#").Allowed)
	_, err = p.Authenticate(key(t, keyLost), "")
	require.ErrorIs(t, err, auth.ErrDenied)
}

func TestPolicy_SubjectRefusesDisabledAndDeniedUsers(t *testing.T) {
	p := mustParse(t, `{"allow": [
	  {"user_id": "off", "credentials": "`+keyAlice+`", "enabled": false},
	  {"user_id": "banned", "credentials": "`+keyBobby+`"}],
	  "deny": [{"user_id": "banned"}]}`)
	_, err := p.Subject(rpc.Principal{UserID: "off"})
	require.ErrorIs(t, err, auth.ErrDisabled)
	_, err = p.Subject(rpc.Principal{UserID: "banned"})
	require.ErrorIs(t, err, auth.ErrDenied)
}

func TestPolicy_SubjectChecksThatTheKeyStillBelongsToTheUser(t *testing.T) {
	p := mustParse(t, weatherDoc)
	_, err := p.Subject(rpc.Principal{UserID: "Alice", Key: key(t, keyAlice)})
	require.NoError(t, err)
	_, err = p.Subject(rpc.Principal{UserID: "Alice", Key: key(t, keyBobby)})
	require.ErrorIs(t, err, auth.ErrUnknownKey)
}

// TestPolicy_NegationFromAnySourceBeatsGrantFromEveryOtherSource builds one
// document per pair (where the "!x" comes from, where the "x" comes from),
// checks that x is held without the negation, and not held with it.
func TestPolicy_NegationFromAnySourceBeatsGrantFromEveryOtherSource(t *testing.T) {
	list := func(xs []string) string {
		if len(xs) == 0 {
			return "[]"
		}
		return `["` + strings.Join(xs, `", "`) + `"]`
	}
	// Roles and groups: r_grant/g_grant grant x, r_neg/g_neg negate it.
	build := func(grantFrom, negFrom string, withNeg bool) string {
		var entryCaps, entryRoles, entryGroups, starCaps, siteDefault []string
		put := func(source, grantOrNeg string) {
			switch source {
			case "direct":
				if grantOrNeg == "grant" {
					entryCaps = append(entryCaps, "x")
				} else {
					entryCaps = append(entryCaps, "!x")
				}
			case "role":
				entryRoles = append(entryRoles, "r_"+grantOrNeg)
			case "group":
				entryGroups = append(entryGroups, "g_"+grantOrNeg)
			case "*":
				if grantOrNeg == "grant" {
					starCaps = append(starCaps, "x")
				} else {
					starCaps = append(starCaps, "!x")
				}
			case "site default":
				if grantOrNeg == "grant" {
					siteDefault = append(siteDefault, "x")
				} else {
					siteDefault = append(siteDefault, "!x")
				}
			}
		}
		put(grantFrom, "grant")
		if withNeg {
			put(negFrom, "neg")
		}
		return `{
		  "roles": {"r_grant": ["x"], "r_neg": ["!x"]},
		  "groups": {"g_grant": ["r_grant"], "g_neg": ["r_neg"]},
		  "allow": [
		    {"user_id": "u", "credentials": "` + keyAlice + `", "capabilities": ` + list(entryCaps) +
			`, "roles": ` + list(entryRoles) + `, "groups": ` + list(entryGroups) + `},
		    {"user_id": "*", "capabilities": ` + list(starCaps) + `}
		  ],
		  "site": {"*": {"default": ` + list(siteDefault) + `}}
		}`
	}
	entrySources := map[string]bool{"direct": true, "role": true, "group": true}
	sources := []string{"direct", "role", "group", "*", "site default"}
	for _, negFrom := range sources {
		for _, grantFrom := range sources {
			if negFrom == grantFrom {
				continue
			}
			// A site default applies only to an entry that grants nothing itself.
			if (negFrom == "site default" && entrySources[grantFrom]) || (grantFrom == "site default" && entrySources[negFrom]) {
				continue
			}
			t.Run("!x from "+negFrom+" beats x from "+grantFrom, func(t *testing.T) {
				assert.True(t, holds(t, mustParse(t, build(grantFrom, negFrom, false)), "u", "x"), "without the negation x is granted by %s", grantFrom)
				assert.False(t, holds(t, mustParse(t, build(grantFrom, negFrom, true)), "u", "x"), "the negation from %s removes x", negFrom)
			})
		}
	}
}

func TestPolicy_Z85KeyThatLooksLikeARegexIsAKey(t *testing.T) {
	// A key whose Z85 text starts and ends with "/", as a /regex/ does;
	// read as a regex, its unbalanced "(" would not even compile.
	const z = "/(" + "0000000000000000000000000000000000000" + "/"
	key, err := keys.Parse(z)
	require.NoError(t, err)
	require.Equal(t, z, key.Z85())
	p, err := auth.Parse("auth.json", []byte(`{"allow": [{"user_id": "slash", "credentials": "`+z+`"}]}`))
	require.NoError(t, err)
	user, err := p.Authenticate(key, "127.0.0.1:1")
	require.NoError(t, err)
	require.Equal(t, "slash", user)
}
