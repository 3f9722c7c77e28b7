//go:build linux

package resilience

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/keys"
)

// The capabilities of the suite's policy.
const (
	capLegit = "legit_call" // the legitimate callers' grant, in every version
	capA     = "cap_a"      // guarded_a's requirement, granted and revoked by the rewrites
	capB     = "cap_b"      // guarded_b's requirement, likewise
)

// cast holds the key pair of every peer of the suite.
type cast struct {
	echo    keys.Pair   // the callee: echo, guarded_a, guarded_b
	legit   []keys.Pair // legitimate callers legit1..
	pub     keys.Pair   // legitimate publisher
	sub     keys.Pair   // legitimate subscriber
	probe   keys.Pair   // asks the platform which policy version is in force
	chk     []keys.Pair // the checked callers of the rewrite scenario
	mallory keys.Pair   // an admitted key used by the attacks
	flood   []keys.Pair // the subscription flood's keys, one user each
	knock   keys.Pair   // dials to learn whether 127.0.0.1 is out of its handshake backoff
}

func genKeys(t *testing.T, n int) []keys.Pair {
	t.Helper()
	out := make([]keys.Pair, n)
	for i := range out {
		kp, err := keys.Generate()
		require.NoError(t, err)
		out[i] = kp
	}
	return out
}

func newCast(t *testing.T, legit, chk, flood int) *cast {
	k := genKeys(t, 7)
	return &cast{echo: k[0], pub: k[1], sub: k[2], probe: k[3], mallory: k[4], knock: k[5],
		legit: genKeys(t, legit), chk: genKeys(t, chk), flood: genKeys(t, flood)}
}

func legitID(i int) string { return fmt.Sprintf("legit%d", i+1) }
func chkID(i int) string   { return fmt.Sprintf("chk%d", i+1) }
func floodID(i int) string { return fmt.Sprintf("flood%d", i+1) }

// marker is the capability by which the probe learns the version of the
// policy in force.
func marker(version int) string { return fmt.Sprintf("policy_v%d", version) }

// entry is one allow entry of auth.json.
type entry struct {
	Credentials  string   `json:"credentials"`
	UserID       string   `json:"user_id"`
	Identity     string   `json:"identity,omitempty"`
	Capabilities []string `json:"capabilities"`
}

// grants is what the checked callers hold in one policy version: identity
// to capabilities (cap_a, cap_b).
type grants map[string][]string

// policy renders auth.json for version, with the checked callers' grants.
// Keys are written in base64url: a Z85 key that starts and ends with "/"
// would read as a /regex/.
func (c *cast) policy(version int, g grants) []byte {
	e := func(kp keys.Pair, user, identity string, caps ...string) entry {
		if caps == nil {
			caps = []string{}
		}
		return entry{Credentials: kp.Public.Base64URL(), UserID: user, Identity: identity, Capabilities: caps}
	}
	allow := []entry{
		e(c.echo, "echo", "echo"),
		e(c.pub, "legitpub", "legitpub"),
		e(c.sub, "legitsub", "legitsub"),
		e(c.probe, "probe", "probe", marker(version)),
		e(c.mallory, "mallory", "/mallory.*/"),
		e(c.knock, "knock", "knock"),
	}
	for i, kp := range c.legit {
		allow = append(allow, e(kp, legitID(i), legitID(i), capLegit))
	}
	for i, kp := range c.chk {
		allow = append(allow, e(kp, chkID(i), chkID(i), g[chkID(i)]...))
	}
	for i, kp := range c.flood {
		allow = append(allow, e(kp, floodID(i), floodID(i)))
	}
	b, err := json.MarshalIndent(map[string]any{"allow": allow}, "", "  ")
	if err != nil {
		panic(err) // a map of strings always encodes
	}
	return append([]byte("// the resilience suite's policy, version "+fmt.Sprint(version)+"\n"), b...)
}
