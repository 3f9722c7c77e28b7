package vip

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMatchTopic(t *testing.T) {
	for _, c := range []struct {
		pattern, topic string
		want           bool
	}{
		{"devices/#", "devices", true},
		{"devices/#", "devices/a/b", true},
		{"devices/#", "devicesX", false},
		{"devices/#", "devicesX/a", false},
		{"devices/+/temp", "devices/a/temp", true},
		{"devices/+/temp", "devices/a/b/temp", false},
		{"devices/+", "devices", false},
		{"#", "a/b", true},
		{"#", "anything/at/all", true},
		{"a/+", "a/b", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a", "a/b", false},
		{"a/b", "a", false},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"+", "a", true},
		{"+/+", "a", false},
	} {
		assert.Equal(t, c.want, MatchTopic(c.pattern, c.topic), "MatchTopic(%q, %q)", c.pattern, c.topic)
	}
}

func TestCheckTopic(t *testing.T) {
	long := make([]byte, MaxTopic+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, c := range []struct {
		t         string
		wildcards bool
		valid     bool
	}{
		{"devices/boiler/temp", false, true},
		{"devices/+/temp", true, true},
		{"devices/#", true, true},
		{"#", true, true},
		{"+", true, true},
		{string(long[:MaxTopic]), false, true},
		{"", false, false},
		{"", true, false},
		{string(long), false, false},
		{"devices/+/temp", false, false},
		{"devices/#", false, false},
		{"a/#/b", true, false},
		{"a+/b", true, false},
		{"a/b#", true, false},
		{"a/b#", false, false},
	} {
		why := CheckTopic(c.t, c.wildcards)
		assert.Equal(t, c.valid, why == "", "CheckTopic(%.20q, %v) = %q: valid", c.t, c.wildcards, why)
	}
}
