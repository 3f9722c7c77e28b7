package configstore_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/configstore"
)

func TestValidate_RefusesBadDataNamingFileLineAndColumn(t *testing.T) {
	cases := []struct {
		name string
		kind configstore.Kind
		data string
		want string
		line int
		col  int
	}{
		{"JSON with a trailing comma", configstore.KindJSON,
			"{\n  \"a\": 1,\n  \"b\": 2,\n}\n",
			`weather.json:4:1: invalid JSON: invalid character '}' looking for beginning of object key string`, 4, 1},
		{"JSON with a bad value", configstore.KindJSON,
			"{\n  \"a\": 1,\n  \"interval\": 5s\n}",
			`weather.json:3:16: invalid JSON: invalid character 's' after object key:value pair`, 3, 16},
		{"JSON cut short", configstore.KindJSON,
			"{\n  \"a\": [1, 2\n\n",
			`weather.json:2:13: invalid JSON: unexpected end of JSON input`, 2, 13},
		{"empty JSON", configstore.KindJSON, "",
			`weather.json:1:1: invalid JSON: unexpected end of JSON input`, 1, 1},
		{"JSON with two values", configstore.KindJSON, "{}\n{}",
			`weather.json:2:1: invalid JSON: invalid character '{' after top-level value`, 2, 1},
		{"JSON number at the top", configstore.KindJSON, "  42",
			`weather.json:1:3: invalid JSON: a configuration must be an object or an array, not a number`, 1, 3},
		{"JSON string at the top", configstore.KindJSON, "\n\"x\"",
			`weather.json:2:1: invalid JSON: a configuration must be an object or an array, not a string`, 2, 1},
		{"JSON null", configstore.KindJSON, "null",
			`weather.json:1:1: invalid JSON: a configuration must be an object or an array, not null`, 1, 1},
		{"JSON with invalid UTF-8", configstore.KindJSON, "{\"a\": \"caf\xe9\"}",
			`weather.json:1:11: invalid UTF-8: byte 0xe9 at offset 10`, 1, 11},
		{"CSV with a ragged row", configstore.KindCSV,
			"point,unit,writable\nT1,degF,true\nT2,degF\n",
			`weather.json:3:1: invalid CSV: row has 2 fields, the header has 3`, 3, 1},
		{"CSV with a bare quote", configstore.KindCSV,
			"point,unit\nT1,de\"gF\n",
			`weather.json:2:6: invalid CSV: bare " in non-quoted-field`, 2, 6},
		{"CSV with an unclosed quote", configstore.KindCSV,
			"point,unit\nT1,\"degF\n",
			`weather.json:2:10: invalid CSV: extraneous or missing " in quoted-field`, 2, 10},
		{"CSV with an unclosed quote over lines", configstore.KindCSV,
			"point,notes\nT1,\"first\nsecond\nT2,x\n",
			`weather.json:4:6: invalid CSV: extraneous or missing " in quoted-field (in the record that starts on line 2)`, 4, 6},
		{"CSV with text after a closing quote", configstore.KindCSV,
			"point,unit\nT1,\"deg\"F\n",
			`weather.json:2:8: invalid CSV: extraneous or missing " in quoted-field`, 2, 8},
		{"CSV with a repeated header", configstore.KindCSV,
			"point,unit,point\n1,2,3\n",
			`weather.json:1:12: invalid CSV: column 3 repeats the header name "point" of column 1`, 1, 12},
		{"empty CSV", configstore.KindCSV, "",
			`weather.json: invalid CSV: no header row`, 0, 0},
		{"raw with invalid UTF-8", configstore.KindRaw, "line one\nline \xff two",
			`weather.json:2:6: invalid UTF-8: byte 0xff at offset 14`, 2, 6},
		{"unknown kind", configstore.Kind("yaml"), "a: 1",
			`weather.json: unknown kind "yaml" (want json, csv or raw)`, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := configstore.Validate(c.kind, "weather.json", []byte(c.data))
			require.ErrorIs(t, err, configstore.ErrInvalid)
			assert.EqualError(t, err, c.want)
			var ie *configstore.InputError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, "weather.json", ie.File)
			assert.Equal(t, c.line, ie.Line)
			assert.Equal(t, c.col, ie.Column)
		})
	}
}

func TestValidate_AcceptsWellFormedData(t *testing.T) {
	cases := []struct {
		kind configstore.Kind
		data string
	}{
		{configstore.KindJSON, `{"a": [1, 2.5e3, "x", null, true]}`},
		{configstore.KindJSON, "\n  [ ]\n"},
		{configstore.KindCSV, "point,unit\n"},
		{configstore.KindCSV, "point,\"unit, long\"\r\nT1,\"deg \"\"F\"\"\"\r\n\r\nT2,degC"},
		{configstore.KindRaw, ""},
		{configstore.KindRaw, "any text, ünïcödé, {not json"},
	}
	for _, c := range cases {
		assert.NoError(t, configstore.Validate(c.kind, "f", []byte(c.data)), "%s %q", c.kind, c.data)
	}
}

func TestChecks_RefuseBadIdentitiesNamesAndUsersSayingWhy(t *testing.T) {
	cases := []struct {
		name  string
		check func(string) error
		input string
		want  string
	}{
		{"empty identity", configstore.CheckIdentity, "",
			`identity "" is not a valid agent identity: must be 1..128 bytes`},
		{"identity too long", configstore.CheckIdentity, strings.Repeat("i", configstore.MaxIdentity+1),
			`identity "` + strings.Repeat("i", 129) + `" is not a valid agent identity: is 129 bytes, more than 128`},
		{"identity with a newline", configstore.CheckIdentity, "weather\n",
			`identity "weather\n" is not a valid agent identity: has the control character U+000A at byte 7`},
		{"empty name", configstore.CheckName, "",
			`name "" is not a valid entry name: must be 1..256 bytes`},
		{"name too long", configstore.CheckName, strings.Repeat("n", configstore.MaxName+1),
			`name "` + strings.Repeat("n", 257) + `" is not a valid entry name: is 257 bytes, more than 256`},
		{"name with invalid UTF-8", configstore.CheckName, "con\xfffig",
			`name "con\xfffig" is not a valid entry name: is not valid UTF-8`},
		{"name ending with a slash", configstore.CheckName, "devices/",
			`name "devices/" is not a valid entry name: must not begin or end with '/' or a space`},
		{"name beginning with a space", configstore.CheckName, " config",
			`name " config" is not a valid entry name: must not begin or end with '/' or a space`},
		{"user too long", configstore.CheckUser, strings.Repeat("u", configstore.MaxUser+1),
			`user "` + strings.Repeat("u", 257) + `" is not a valid user id: is 257 bytes, more than 256`},
		{"user with DEL", configstore.CheckUser, "al\x7fice",
			`user "al\x7fice" is not a valid user id: has the control character U+007F at byte 2`},
		{"unknown kind", func(s string) error { return configstore.CheckKind(configstore.Kind(s), "weather.json") }, "yaml",
			`weather.json: unknown kind "yaml" (want json, csv or raw)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.check(c.input)
			require.ErrorIs(t, err, configstore.ErrInvalid)
			var ie *configstore.InputError
			require.ErrorAs(t, err, &ie)
			assert.EqualError(t, err, c.want)
		})
	}
}

func TestChecks_AcceptNamesAtTheirLimits(t *testing.T) {
	assert.NoError(t, configstore.CheckIdentity(strings.Repeat("i", configstore.MaxIdentity)))
	assert.NoError(t, configstore.CheckIdentity("platform.weather"))
	assert.NoError(t, configstore.CheckName(strings.Repeat("n", configstore.MaxName)))
	assert.NoError(t, configstore.CheckName("devices/chaudière n°2"))
	assert.NoError(t, configstore.CheckUser(""), "a change may have no user")
	assert.NoError(t, configstore.CheckUser(strings.Repeat("u", configstore.MaxUser)))
	for _, k := range []configstore.Kind{configstore.KindJSON, configstore.KindCSV, configstore.KindRaw} {
		assert.NoError(t, configstore.CheckKind(k, "f"))
	}
}
