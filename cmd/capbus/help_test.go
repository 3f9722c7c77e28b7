package main

import (
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
)

// TestEveryCommand_HasHelpAndExamples walks the command tree: every command
// a user can run documents itself with a summary and at least one example.
func TestEveryCommand_HasHelpAndExamples(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		assert.NotEmpty(t, c.Short, "%s has no summary", c.CommandPath())
		assert.NotEmpty(t, c.Example, "%s has no example", c.CommandPath())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand(&globals{}))
}

// TestGroups_RefuseAnUnknownSubcommand: a mistyped subcommand of a group
// is a usage error naming it, as at the root, not the group's help with
// exit 0; the group alone still prints its help.
func TestGroups_RefuseAnUnknownSubcommand(t *testing.T) {
	home := t.TempDir()
	for _, c := range []struct{ args, want []string }{
		{[]string{"platform", "rn"}, []string{`unknown command "rn" for "capbus platform"`, "did you mean run?"}},
		{[]string{"config", "gett", "weather", "config"}, []string{`unknown command "gett" for "capbus config"`, "did you mean get?"}},
		{[]string{"auth", "role", "lst"}, []string{`unknown command "lst" for "capbus auth role"`, "list"}},
	} {
		r := capbus(t, home, c.args...)
		assert.Equal(t, exitUsage, r.code, "%v", c.args)
		for _, w := range c.want {
			assert.Contains(t, r.stderr, w)
		}
	}
	r := capbus(t, home, "auth")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Available Commands:")
}
