package configdb_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
)

// Every refused Put names what was wrong and leaves the store as it was.
func TestStore_RefusedPutChangesNothing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, configdb.WithMaxSize(64))
	good := put(t, s, "weather", "config", configstore.KindJSON, `{"ok": true}`, "alice")

	cases := []struct {
		name     string
		identity string
		entry    string
		kind     configstore.Kind
		data     string
		user     string
		want     string
	}{
		{"invalid JSON", "weather", "config", configstore.KindJSON, "{\n  \"a\": 1,\n}",
			"alice", `config:3:1: invalid JSON: invalid character '}' looking for beginning of object key string`},
		{"ragged CSV", "weather", "config", configstore.KindCSV, "a,b\n1\n",
			"alice", `config:2:1: invalid CSV: row has 1 fields, the header has 2`},
		{"bare quote in CSV", "weather", "config", configstore.KindCSV, "a,b\n1,x\"y\n",
			"alice", `config:2:4: invalid CSV: bare " in non-quoted-field`},
		{"invalid UTF-8 raw", "weather", "config", configstore.KindRaw, "ok\n\xc3(",
			"alice", `config:2:1: invalid UTF-8: byte 0xc3 at offset 3`},
		{"unknown kind", "weather", "config", "toml", "a = 1",
			"alice", `config: unknown kind "toml" (want json, csv or raw)`},
		{"too large", "weather", "config", configstore.KindRaw, strings.Repeat("x", 65),
			"alice", `config: raw data is 65 bytes, more than the limit of 64`},
		{"empty name", "weather", "", configstore.KindRaw, "x",
			"alice", `name "" is not a valid entry name: must be 1..256 bytes`},
		{"name too long", "weather", strings.Repeat("n", 257), configstore.KindRaw, "x",
			"alice", `name "` + strings.Repeat("n", 257) + `" is not a valid entry name: is 257 bytes, more than 256`},
		{"name with a control character", "weather", "con\tfig", configstore.KindRaw, "x",
			"alice", `name "con\tfig" is not a valid entry name: has the control character U+0009 at byte 3`},
		{"name with a leading slash", "weather", "/config", configstore.KindRaw, "x",
			"alice", `name "/config" is not a valid entry name: must not begin or end with '/' or a space`},
		{"name with invalid UTF-8", "weather", "con\xfffig", configstore.KindRaw, "x",
			"alice", `name "con\xfffig" is not a valid entry name: is not valid UTF-8`},
		{"empty identity", "", "config", configstore.KindRaw, "x",
			"alice", `identity "" is not a valid agent identity: must be 1..128 bytes`},
		{"identity too long", strings.Repeat("i", 129), "config", configstore.KindRaw, "x",
			"alice", `identity "` + strings.Repeat("i", 129) + `" is not a valid agent identity: is 129 bytes, more than 128`},
		{"identity with a newline", "weather\n", "config", configstore.KindRaw, "x",
			"alice", `identity "weather\n" is not a valid agent identity: has the control character U+000A at byte 7`},
		{"user with a control character", "weather", "config", configstore.KindRaw, "x",
			"al\x00ice", `user "al\x00ice" is not a valid user id: has the control character U+0000 at byte 2`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Put(ctx, c.identity, c.entry, c.kind, []byte(c.data), c.user)
			require.ErrorIs(t, err, configstore.ErrInvalid)
			var ie *configstore.InputError
			require.True(t, errors.As(err, &ie))
			assert.EqualError(t, err, c.want)

			got, err := s.Get(ctx, "weather", "config")
			require.NoError(t, err)
			assert.Equal(t, good, got)
			rev, err := s.Revision(ctx, "weather")
			require.NoError(t, err)
			assert.Equal(t, uint64(1), rev)
		})
	}
	ids, err := s.Identities(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"weather"}, ids, "no refused Put created an identity")
}

func TestStore_ReadsRefuseInvalidIdentitiesAndNames(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	_, err := s.Get(ctx, "weather", "")
	require.ErrorIs(t, err, configstore.ErrInvalid)
	_, err = s.List(ctx, "")
	require.ErrorIs(t, err, configstore.ErrInvalid)
	_, err = s.History(ctx, "weather", "config/")
	require.ErrorIs(t, err, configstore.ErrInvalid)
	_, err = s.Changes(ctx, "a\x7fb", 0)
	require.ErrorIs(t, err, configstore.ErrInvalid)
	_, err = s.Delete(ctx, "weather", " config", "alice")
	require.ErrorIs(t, err, configstore.ErrInvalid)
}
