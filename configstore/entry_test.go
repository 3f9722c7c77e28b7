package configstore_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/configstore"
)

// entry returns the first version of the entry name of the weather agent,
// as a store gives it.
func entry(name string, kind configstore.Kind, data string) configstore.Entry {
	return configstore.Entry{Identity: "weather", Name: name, Kind: kind, Data: []byte(data),
		Version: 1, Revision: 1, User: "alice", Time: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
}

const pointsCSV = "Volttron Point Name,Units,Writable,Default\n" +
	"SupplyTemp,degF,false,\n" +
	"\"Set Point, Cooling\",degF,true,72.5\n"

func TestEntry_ValueGivesEachKindAsVolttronHandsItToAnAgent(t *testing.T) {

	j := entry("config", configstore.KindJSON, `{"station": "KPDX", "id": 9007199254740993, "rate": 0.5, "tags": ["a"]}`)
	v, err := j.Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"station": "KPDX",
		"id":      json.Number("9007199254740993"), // more than float64 holds exactly
		"rate":    json.Number("0.5"),
		"tags":    []any{"a"},
	}, v)

	c := entry("points", configstore.KindCSV, pointsCSV)
	v, err = c.Value()
	require.NoError(t, err)
	assert.Equal(t, []map[string]string{
		{"Volttron Point Name": "SupplyTemp", "Units": "degF", "Writable": "false", "Default": ""},
		{"Volttron Point Name": "Set Point, Cooling", "Units": "degF", "Writable": "true", "Default": "72.5"},
	}, v)

	h := entry("header-only", configstore.KindCSV, "a,b\n")
	v, err = h.Value()
	require.NoError(t, err)
	assert.Equal(t, []map[string]string{}, v)

	r := entry("notes", configstore.KindRaw, "free text\n")
	v, err = r.Value()
	require.NoError(t, err)
	assert.Equal(t, "free text\n", v)
}

func TestEntry_DecodeJSONIntoAStruct(t *testing.T) {
	e := entry("config", configstore.KindJSON,
		`{"station": "KPDX", "interval": 300, "units": {"temp": "degF"}, "extra": 1}`)

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
	e := entry("points", configstore.KindCSV, pointsCSV)

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
	e := entry("notes", configstore.KindRaw, "free text")
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

	j := entry("config", configstore.KindJSON, "{\n  \"station\": \"KPDX\",\n  \"interval\": \"5m\"\n}")
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
	j = entry("limits", configstore.KindJSON, "{\"station\": \"KPDX\",\n \"limits\": {\"max\": 10,\n  \"min\": [1, 2]}}")
	err = j.Decode(&nested)
	require.ErrorIs(t, err, configstore.ErrInvalid)
	assert.Contains(t, err.Error(), "limits:3:10: cannot decode JSON: json: cannot unmarshal array into Go ")

	c := entry("points", configstore.KindCSV, "name,port\nboiler,47808\nchiller,BAC0\n")
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
	tomb := configstore.Entry{Identity: "weather", Name: "config", Version: 2, Revision: 2, User: "alice", Deleted: true}

	_, err := tomb.Value()
	require.ErrorIs(t, err, configstore.ErrNotFound)
	assert.EqualError(t, err, `configstore: entry "config" of "weather" is deleted (version 2): not found`)
	var v any
	require.ErrorIs(t, tomb.Decode(&v), configstore.ErrNotFound)
}
