package main

import (
	"bytes"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// TestParseJSON_NumbersTravelExactlyOrNotAtAll: integers keep every digit
// up to 64 bits, and a number beyond them is refused, not rounded or sent
// as an infinity.
func TestParseJSON_NumbersTravelExactlyOrNotAtAll(t *testing.T) {
	for in, want := range map[string]any{
		"-5":                   int64(-5),
		"12345678901234567890": uint64(12345678901234567890),
		"2.5":                  2.5,
		"1e3":                  1000.0,
		`[1, {"a": -2.5}]`:     []any{int64(1), map[string]any{"a": -2.5}},
	} {
		v, err := parseJSON(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, v, in)
	}
	for in, msg := range map[string]string{
		"123456789012345678901234": "the integer 123456789012345678901234 does not fit in 64 bits",
		"1e400":                    "the number 1e400 is out of the range of a float64",
		`{"a": [-1e999]}`:          "the number -1e999 is out of the range of a float64",
	} {
		_, err := parseJSON(in)
		assert.EqualError(t, err, msg, in)
	}
}

// TestPrintJSON_WhatAnAgentSendsIsPrinted: maps with integer keys (as a
// Python agent may send) and infinities print, instead of failing a call
// that succeeded.
func TestPrintJSON_WhatAnAgentSendsIsPrinted(t *testing.T) {
	raw, err := msgpack.Marshal(map[int]any{1: "a", 2: math.Inf(1), 3: map[int]string{4: "b"}})
	require.NoError(t, err)
	v, err := decodeAny(raw)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, printJSON(&out, v))
	assert.JSONEq(t, `{"1": "a", "2": "+Inf", "3": {"4": "b"}}`, out.String())
}
