package auth

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// slowGrants resolves a user by collecting Policy.walk, the path that
// explanations use; compileGrants must give the same result.
func slowGrants(p *Policy, u *user) (caps, roles, restricted bitset) {
	c := &compiler{p: p, f: &File{}}
	gs := c.newGrantSet()
	p.walk(u.entry, u.path, u.id, gs.add, nil)
	v := &user{id: u.id}
	c.finishGrants(v, gs)
	return v.caps, v.roles, v.restrictedOnly
}

func TestCompile_FastGrantsEqualTheExplainedWalk(t *testing.T) {
	docs := map[string][]byte{}
	for _, path := range []string{"testdata/volttron-1.4.json", "../auth.json.example"} {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		docs[path] = b
	}
	docs["mixed"] = []byte(`{
	  "capability_groups": {"R": ["a", "b"], "W": ["c", "R"]},
	  "roles": {"r1": ["W", "!b"], "r2": ["d"], "r3": ["!W"]},
	  "groups": {"g1": ["r1", "r2"], "g2": ["r3"]},
	  "allow": [
	    {"user_id": "u1", "credentials": "33-ScDXnSKE4s_qTtCHCI79JjUdLyaU2isNAxt_DEWY", "roles": ["r2"], "groups": ["g1"], "capabilities": {"p": {"x": "/y.*/"}, "!d": null}},
	    {"user_id": "u2", "credentials": "qemlQOhM49cmYa7Med2kam6mc1ze17vc2I8xgBQ0IVk", "groups": ["g2", "g1"]},
	    {"user_id": "u3", "credentials": "OOMJm0AjiSGw_h_HSTsSJUD4phkkyKLMvJG_vpaShUQ"},
	    {"user_id": "*", "capabilities": [{"p": {"x": "z"}}, "e", "!c"], "roles": ["r2"]}
	  ],
	  "site": {"*": {"default": ["R"], "limit": ["!e"]}, "u1": {"limit": ["R", "W", "p", "d"]}}
	}`)
	for name, data := range docs {
		p, err := Parse(name, data)
		require.NoError(t, err, name)
		for id, u := range p.users {
			caps, roles, restricted := slowGrants(p, u)
			require.Equal(t, caps, u.caps, "%s: caps of %s", name, id)
			require.Equal(t, roles, u.roles, "%s: roles of %s", name, id)
			require.Equal(t, restricted, u.restrictedOnly, "%s: restricted of %s", name, id)
		}
	}
}
