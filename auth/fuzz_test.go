package auth_test

import (
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/rpc"
)

// FuzzParse checks that the loader never panics and that every rejection is
// an error value (a *ValidationError); accepted documents must compile to a
// usable policy and re-encode to a document that loads again.
func FuzzParse(f *testing.F) {
	for _, path := range []string{"testdata/volttron-1.4.json", "../auth.json.example"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		weatherDoc, rolesDoc, narrowDoc, paramDoc, topicDoc,
		``, `{}`, `[]`, `{"allow": null}`, `{"allow": [{}]}`, `/* x`, `{"a": "\u0000"}`,
		`{"capability_groups": {"A": ["A"]}}`, `{"topics": {"#": {}}}`,
		`{"allow": [{"user_id": "*", "capabilities": {"!x": {"p": "v"}}}]}`,
		`{"version": {"major": 1, "minor": 4}, "allow": [{"credentials": "/.*/", "user_id": "any"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := auth.Parse("fuzz.json", data)
		if err != nil {
			var ve *auth.ValidationError
			require.ErrorAs(t, err, &ve, "rejection is %T, not *ValidationError", err)
			require.Nil(t, p, "rejected document returned a policy")
			_ = err.Error()
			return
		}
		// Exercise the compiled policy.
		for _, u := range p.Users() {
			s, err := p.Subject(rpc.Principal{UserID: u, Identity: u})
			if errors.Is(err, auth.ErrDisabled) || errors.Is(err, auth.ErrDenied) {
				continue
			}
			require.NoError(t, err, "user %q listed but no subject", u)
			d := p.Decide(s, p.Requirement(rpc.Principal{UserID: u, Identity: u}, "m", auth.Declared{Capabilities: []string{"x"}}), map[string]any{"identity": "x"})
			_ = d.Explanation().String()
			_ = p.DecideTopic(s, auth.Subscribe, "#").Reason()
			_ = p.CheckIdentity(u, "some.identity")
		}
		file, err := auth.ParseFile("fuzz.json", data)
		require.NoError(t, err, "Parse accepted but ParseFile rejected")
		out, err := file.Marshal()
		require.NoError(t, err, "marshal")
		_, err = auth.Parse("fuzz-remarshal.json", out)
		require.NoError(t, err, "re-encoded document does not load:\n%s", out)
	})
}
