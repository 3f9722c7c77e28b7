package configstore_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/configstore"
)

const pointsCSV = "Volttron Point Name,Units,Writable,Default\n" +
	"SupplyTemp,degF,false,\n" +
	"\"Set Point, Cooling\",degF,true,72.5\n"

func TestEntry_ValueGivesEachKindAsVolttronHandsItToAnAgent(t *testing.T) {
	s := openStore(t)

	j := put(t, s, "weather", "config", configstore.KindJSON, `{"station": "KPDX", "id": 9007199254740993, "rate": 0.5, "tags": ["a"]}`, "alice")
	v, err := j.Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"station": "KPDX",
		"id":      json.Number("9007199254740993"), // more than float64 holds exactly
		"rate":    json.Number("0.5"),
		"tags":    []any{"a"},
	}, v)

	c := put(t, s, "weather", "points", configstore.KindCSV, pointsCSV, "alice")
	v, err = c.Value()
	require.NoError(t, err)
	assert.Equal(t, []map[string]string{
		{"Volttron Point Name": "SupplyTemp", "Units": "degF", "Writable": "false", "Default": ""},
		{"Volttron Point Name": "Set Point, Cooling", "Units": "degF", "Writable": "true", "Default": "72.5"},
	}, v)

	h := put(t, s, "weather", "header-only", configstore.KindCSV, "a,b\n", "alice")
	v, err = h.Value()
	require.NoError(t, err)
	assert.Equal(t, []map[string]string{}, v)

	r := put(t, s, "weather", "notes", configstore.KindRaw, "free text\n", "alice")
	v, err = r.Value()
	require.NoError(t, err)
	assert.Equal(t, "free text\n", v)
}

func TestEntry_DecodeJSONIntoAStruct(t *testing.T) {
	s := openStore(t)
	e := put(t, s, "weather", "config", configstore.KindJSON,
		`{"station": "KPDX", "interval": 300, "units": {"temp": "degF"}, "extra": 1}`, "alice")

	var cfg struct {
		Station  string            `json:"station"`
		Interval int               `json:"interval"`
		Units    map[string]string `json:"units"`
	}
	require.NoError(t, e.Decode(&cfg))
	assert.Equal(t, "KPDX", cfg.Station)
	assert.Equal(t, 300, cfg.Interval)
	assert.Equal(t, map[string]string{"temp": "degF"}, cfg.Units)
}

func TestEntry_DecodeCSVIntoStructsByHeader(t *testing.T) {
	s := openStore(t)
	e := put(t, s, "weather", "points", configstore.KindCSV, pointsCSV, "alice")

	type point struct {
		Name     string  `csv:"Volttron Point Name"`
		Units    string  // matched by field name
		Writable bool    `csv:"Writable"`
		Default  float64 `csv:"Default,omitempty"`
	}
	var points []point
	require.NoError(t, e.Decode(&points))
	assert.Equal(t, []point{
		{Name: "SupplyTemp", Units: "degF", Writable: false, Default: 0},
		{Name: "Set Point, Cooling", Units: "degF", Writable: true, Default: 72.5},
	}, points)

	var rows []map[string]string
	require.NoError(t, e.Decode(&rows))
	assert.Equal(t, "Set Point, Cooling", rows[1]["Volttron Point Name"])
}

func TestEntry_DecodeRawIntoAStringOrBytes(t *testing.T) {
	s := openStore(t)
	e := put(t, s, "weather", "notes", configstore.KindRaw, "free text", "alice")
	var str string
	require.NoError(t, e.Decode(&str))
	assert.Equal(t, "free text", str)
	var b []byte
	require.NoError(t, e.Decode(&b))
	assert.Equal(t, []byte("free text"), b)

	var n int
	err := e.Decode(&n)
	require.ErrorIs(t, err, configstore.ErrInvalid)
	assert.EqualError(t, err, `configstore: decode raw entry "notes" into *int: invalid input: want *string or *[]byte`)
}

func TestEntry_DecodeNamesTheLineOfAValueThatDoesNotFit(t *testing.T) {
	s := openStore(t)

	j := put(t, s, "weather", "config", configstore.KindJSON, "{\n  \"station\": \"KPDX\",\n  \"interval\": \"5m\"\n}", "alice")
	var cfg struct {
		Interval int `json:"interval"`
	}
	err := j.Decode(&cfg)
	require.ErrorIs(t, err, configstore.ErrInvalid)
	assert.EqualError(t, err, `config:3:15: cannot decode JSON: json: cannot unmarshal string into Go struct field .interval of type int`)

	var nested struct {
		Station string         `json:"station"`
		Limits  map[string]int `json:"limits"`
	}
	j = put(t, s, "weather", "limits", configstore.KindJSON, "{\"station\": \"KPDX\",\n \"limits\": {\"max\": 10,\n  \"min\": [1, 2]}}", "alice")
	err = j.Decode(&nested)
	require.ErrorIs(t, err, configstore.ErrInvalid)
	assert.Contains(t, err.Error(), "limits:3:10: cannot decode JSON: json: cannot unmarshal array into Go ")

	c := put(t, s, "weather", "points", configstore.KindCSV, "name,port\nboiler,47808\nchiller,BAC0\n", "alice")
	var rows []struct {
		Name string `csv:"name"`
		Port uint16 `csv:"port"`
	}
	err = c.Decode(&rows)
	require.ErrorIs(t, err, configstore.ErrInvalid)
	var ie *configstore.InputError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, 3, ie.Line)
	assert.Equal(t, 9, ie.Column)
	assert.Contains(t, err.Error(), `points:3:9: cannot decode CSV column "port": `)
}

func TestEntry_ATombstoneHasNoValue(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put(t, s, "weather", "config", configstore.KindJSON, `{}`, "alice")
	tomb, err := s.Delete(ctx, "weather", "config", "alice")
	require.NoError(t, err)

	_, err = tomb.Value()
	require.ErrorIs(t, err, configstore.ErrNotFound)
	var v any
	require.ErrorIs(t, tomb.Decode(&v), configstore.ErrNotFound)
}
