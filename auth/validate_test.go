package auth_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
)

func validationError(t *testing.T, doc string) *auth.ValidationError {
	t.Helper()
	p, err := auth.Parse("auth.json", []byte(doc))
	require.Error(t, err)
	assert.Nil(t, p, "a file is accepted whole or not at all")
	var ve *auth.ValidationError
	require.True(t, errors.As(err, &ve), "want *ValidationError, got %T: %v", err, err)
	return ve
}

func TestValidation_ErrorsNameFileLineColumnPathAndWhatWasExpected(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		line int
		col  int // 0: not checked
		want string
	}{
		{
			name: "unknown key with did-you-mean",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `"},
    {"user_id": "b", "credentials": "` + keyBobby + `",
     "capabilites": ["x"]}
  ]
}`,
			line: 5, col: 6,
			want: `auth.json:5:6: allow[1].capabilites: unknown key; did you mean "capabilities"?`,
		},
		{
			name: "unknown top-level key",
			doc: `{
  // a comment
  "alow": []
}`,
			line: 3, col: 3,
			want: `auth.json:3:3: alow: unknown key; did you mean "allow"?`,
		},
		{
			name: "unknown key without a close match lists the expected keys",
			doc:  "{\"allow\": [], \"zzzzzzzzzz\": 1}",
			line: 1, col: 15,
			want: `auth.json:1:15: zzzzzzzzzz: unknown key; expected one of version, allow, deny`,
		},
		{
			name: "wrong type",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `", "enabled": "yes"}
  ]
}`,
			line: 3,
			want: `allow[0].enabled: expected a boolean, found a string`,
		},
		{
			name: "entry role not defined",
			doc: `{
  "roles": {"admin": ["x"]},
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `",
     "roles": ["admn"]}
  ]
}`,
			line: 5, col: 16,
			want: `auth.json:5:16: allow[0].roles[0]: role "admn" is not defined in "roles"; did you mean "admin"?`,
		},
		{
			name: "group names an undefined role",
			doc: `{
  "roles": {"admin": ["x"]},
  "groups": {
    "ops": ["admin", "operator"]
  },
  "allow": []
}`,
			line: 4,
			want: `groups.ops[1]: group "ops" names role "operator", which is not defined in "roles"`,
		},
		{
			name: "entry group not defined",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `", "groups": ["ops"]}
  ]
}`,
			line: 3,
			want: `allow[0].groups[0]: group "ops" is not defined in "groups"`,
		},
		{
			name: "duplicate user id",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `"},
    {"user_id": "a", "credentials": "` + keyBobby + `"}
  ]
}`,
			line: 4, col: 17,
			want: `auth.json:4:17: allow[1].user_id: duplicate user_id "a" (also allow[0])`,
		},
		{
			name: "duplicate key, in another form",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `"},
    {"user_id": "b",
     "credentials": "CURVE:` + keyAlice + `"}
  ]
}`,
			line: 5,
			want: `allow[1].credentials: duplicate key`,
		},
		{
			name: "malformed key",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "not-a-key"}
  ]
}`,
			line: 3,
			want: `allow[0].credentials: expected a CURVE public key`,
		},
		{
			name: "invalid JSON",
			doc: `{
  "allow": [
    {"user_id": "a" "credentials": "x"}
  ]
}`,
			line: 3,
			want: `invalid JSON`,
		},
		{
			name: "unterminated block comment",
			doc: `{
  "allow": []
  /* never closed
}`,
			line: 3, col: 3,
			want: `auth.json:3:3: unterminated /* comment`,
		},
		{
			name: "duplicate JSON key",
			doc: `{
  "allow": [],
  "allow": []
}`,
			line: 3,
			want: `duplicate key "allow" in the same object`,
		},
		{
			name: "capability group cycle",
			doc: `{
  "capability_groups": {
    "A": ["B"],
    "B": ["A"]
  },
  "allow": []
}`,
			line: 3,
			want: `capability_groups.A: capability group "A" includes itself (A -> B -> A)`,
		},
		{
			name: "negation inside a capability group",
			doc: `{
  "capability_groups": {
    "A": ["x", "!y"]
  }
}`,
			line: 3,
			want: `capability_groups.A[1]: a capability group cannot contain a negation`,
		},
		{
			name: "invalid regex",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `", "identity": "/([a-z/"}
  ]
}`,
			line: 3,
			want: `allow[0].identity: invalid regular expression`,
		},
		{
			name: "site rule for an unknown user",
			doc: `{
  "allow": [{"user_id": "alice", "credentials": "` + keyAlice + `"}],
  "site": {
    "alicia": {"limit": []}
  }
}`,
			line: 4,
			want: `site.alicia: site rule for user "alicia", but no allow entry has that user_id; did you mean "alice"?`,
		},
		{
			name: "wildcard entry with credentials",
			doc: `{
  "allow": [
    {"user_id": "*",
     "credentials": "` + keyAlice + `"}
  ]
}`,
			line: 4,
			want: `allow[0].credentials: the "*" entry holds grants for every authenticated peer; it cannot have "credentials"`,
		},
		{
			name: "identity bound twice",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `", "identity": "weather"},
    {"user_id": "b", "credentials": "` + keyBobby + `", "identities": ["weather"]}
  ]
}`,
			line: 4,
			want: `allow[1].identities[0]: identity "weather" is already bound to user "a" (allow[0])`,
		},
		{
			name: "narrowed agent outside the identity binding",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `", "identity": "a.main",
     "agents": {"b.other": {"capabilities": ["x"]}}}
  ]
}`,
			line: 4,
			want: `allow[0].agents["b.other"]: agent "b.other" is not an identity this entry may claim`,
		},
		{
			name: "bad topic pattern",
			doc: `{
  "topics": {
    "devices/#/x": {"publish": []}
  }
}`,
			line: 3,
			want: `"#" must be the last segment`,
		},
		{
			name: "method key without identity",
			doc: `{
  "methods": {
    "set_units": {"roles": []}
  }
}`,
			line: 3,
			want: `methods.set_units: expected a key of the form "identity.method"`,
		},
		{
			name: "unknown key in a method rule",
			doc: `{
  "methods": {
    "weather.set_units": {"role": ["admin"]}
  }
}`,
			line: 3,
			want: `methods["weather.set_units"].role: unknown key; did you mean "roles"?`,
		},
		{
			name: "duplicate capability in an entry",
			doc: `{
  "allow": [
    {"user_id": "a", "credentials": "` + keyAlice + `",
     "capabilities": ["x", "y", "x"]}
  ]
}`,
			line: 4,
			want: `allow[0].capabilities[2]: capability "x" is listed twice`,
		},
		{
			name: "trailing data",
			doc:  "{\"allow\": []}\n{}",
			line: 2,
			want: `unexpected data after the top-level object`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ve := validationError(t, tc.doc)
			assert.Equal(t, "auth.json", ve.File)
			assert.Equal(t, tc.line, ve.Line, "line of: %v", ve)
			if tc.col != 0 {
				assert.Equal(t, tc.col, ve.Column, "column of: %v", ve)
			}
			assert.Contains(t, ve.Error(), tc.want)
		})
	}
}

func TestValidation_EmptyDocumentIsNoPolicy(t *testing.T) {
	for _, doc := range []string{"", "  \n\t", "// only a comment\n/* and another */"} {
		_, err := auth.Parse("auth.json", []byte(doc))
		require.ErrorIs(t, err, auth.ErrNoPolicy, "%q", doc)
	}
}

func TestValidation_CommentsAndTrailingCommasAreAccepted(t *testing.T) {
	p := mustParse(t, `// header
{
  /* block
     comment */
  "allow": [
    {"user_id": "a", // the user
     "credentials": "`+keyAlice+`",
     "comments": "not // a comment, nor /* this */",
     "capabilities": ["x",],
    },
  ],
}`)
	f, err := auth.ParseFile("auth.json", []byte(`{"allow": [{"user_id": "a", "credentials": "`+keyAlice+`", "comments": "not // a comment, nor /* this */"}]}`))
	require.NoError(t, err)
	assert.Equal(t, "not // a comment, nor /* this */", f.Allow[0].Comments)
	assert.True(t, holds(t, p, "a", "x"))
}

func TestValidation_LinesAreCountedInTheOriginalTextAfterComments(t *testing.T) {
	ve := validationError(t, "{\n/* one\ntwo\nthree */ \"allow\": [\n{\"user_id\": 5}]}")
	assert.Equal(t, 5, ve.Line)
	assert.Equal(t, "allow[0].user_id", ve.Path)
	assert.Contains(t, ve.Msg, "expected a string, found a number")
}

func TestFile_MarshalRoundTrips(t *testing.T) {
	for _, path := range []string{"testdata/volttron-1.4.json", "../auth.json.example"} {
		f, err := auth.ParseFile(path, mustRead(t, path))
		require.NoError(t, err)
		out, err := f.Marshal()
		require.NoError(t, err)
		g, err := auth.ParseFile(path, out)
		require.NoError(t, err, string(out))
		out2, err := g.Marshal()
		require.NoError(t, err)
		assert.Equal(t, string(out), string(out2), "stable")
		_, err = g.Compile(path)
		require.NoError(t, err)
		assert.Equal(t, len(f.Allow), len(g.Allow))
		assert.Equal(t, f.Allow[1].Capabilities, g.Allow[1].Capabilities)
		assert.Equal(t, f.Roles, g.Roles)
		assert.Equal(t, f.Version, g.Version)
	}
}

func TestFile_CompileBuiltInMemoryReportsPathWithoutLine(t *testing.T) {
	f := &auth.File{Allow: []auth.Entry{{UserID: "a", Credentials: keyAlice, Roles: []string{"ghost"}}}}
	_, err := f.Compile("memory")
	var ve *auth.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, 0, ve.Line)
	assert.Equal(t, `memory: allow[0].roles[0]: role "ghost" is not defined in "roles"`, ve.Error())
}

func TestFile_CompileAfterAnEditReportsPathWithoutStaleLine(t *testing.T) {
	f, err := auth.ParseFile("auth.json", []byte(`{
  "allow": [
    {"user_id": "a", "credentials": "`+keyAlice+`"}
  ]
}`))
	require.NoError(t, err)
	f.Allow = append(f.Allow, auth.Entry{UserID: "a", Credentials: keyBobby})
	_, err = f.Compile("auth.json")
	var ve *auth.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, 0, ve.Line, "the text no longer describes the edited file")
	assert.Equal(t, `auth.json: allow[1].user_id: duplicate user_id "a" (also allow[0])`, ve.Error())
}

func TestValidation_ByteOrderMarkAndCRLFAreAccepted(t *testing.T) {
	p := mustParse(t, "\xEF\xBB\xBF{\r\n  // windows\r\n  \"allow\": [{\"user_id\": \"a\", \"credentials\": \""+keyAlice+"\", \"capabilities\": \"x\"}]\r\n}\r\n")
	assert.True(t, holds(t, p, "a", "x"))
}
