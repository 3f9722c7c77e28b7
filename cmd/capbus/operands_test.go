package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/keys"
)

func TestDashOperands_AnOperandThatBeginsWithADashIsAnOperand(t *testing.T) {
	root := newRootCommand(&globals{stdout: io.Discard, stderr: io.Discard})
	whole := "-f" + "PXdLcA@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7X" // a whole key in Z85
	_, err := keys.Parse(whole)
	require.NoError(t, err)
	cases := []struct {
		name     string
		in, want []string
	}{
		{"the start of a key", []string{"auth", "approve", "-ik=28PX", "--user", "u"}, []string{"auth", "approve", "--user", "u", "--", "-ik=28PX"}},
		{"a whole key that begins like -f", []string{"auth", "approve", whole, "--user", "u"}, []string{"auth", "approve", "--user", "u", "--", whole}},
		{"a flag's value that begins with a dash", []string{"auth", "approve", "k", "--user", "-u"}, []string{"auth", "approve", "k", "--user", "-u"}},
		{"a shorthand flag with its value", []string{"auth", "approve", "-fa.json", "-x", "--user=u"}, []string{"auth", "approve", "-fa.json", "--user=u", "--", "-x"}},
		{"a -- already typed", []string{"auth", "approve", "-ab", "--user", "u", "--", "-fQ"}, []string{"auth", "approve", "--user", "u", "--", "-ab", "-fQ"}},
		{"help", []string{"auth", "approve", "-h"}, []string{"auth", "approve", "-h"}},
		{"negative numbers keep their places among the arguments", []string{"--home", "h", "call", "thermostat", "set", "-5", "3", "-2.5", "--timeout", "2s"},
			[]string{"call", "--home", "h", "--timeout", "2s", "--", "thermostat", "set", "-5", "3", "-2.5"}},
		{"a negative value published", []string{"publish", "devices/freezer/setpoint", "-18"}, []string{"publish", "--", "devices/freezer/setpoint", "-18"}},
		{"a command line without such an operand is left alone", []string{"call", "weather", "forecast", "--kwargs", "{}"}, []string{"call", "weather", "forecast", "--kwargs", "{}"}},
		{"a command without operands that begin with '-'", []string{"auth", "show", "-x"}, []string{"auth", "show", "-x"}},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, dashOperands(root, c.in), c.name)
	}
}
