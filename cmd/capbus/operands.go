package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capbus/capbus/keys"
)

// dashOperand marks, in a command's Annotations, a command whose operands
// may begin with '-': a Z85 key can ("-ik=28PX..."), and so can a JSON
// number ("-5"); flag parsing would read either as a flag ("unknown
// shorthand flag: 'i' in -ik=28PX...").
const dashOperand = "capbus.dash-operand"

// dashOperands rewrites the command line of a dashOperand command so that
// an argument that begins with '-' and is a whole key, or names none of
// the command's flags, reaches it as an operand: the command's path, then
// its flags with their values, then "--" and every operand in the order
// given. Other command lines are returned as they are. The start of a key
// that reads as a flag, such as "-fQ", stays a flag; it needs the "--"
// typed: capbus auth approve --user u -- '-fQ'.
func dashOperands(root *cobra.Command, args []string) []string {
	cmd, rest, err := root.Find(args)
	if err != nil || cmd.Annotations[dashOperand] == "" {
		return args
	}
	var flags, operands []string
	moved := false
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			operands = append(operands, rest[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			operands = append(operands, a)
			continue
		}
		f, inline := flagNamed(cmd, a)
		if _, err := keys.Parse(a); err == nil || f == nil {
			operands = append(operands, a)
			moved = true
			continue
		}
		flags = append(flags, a)
		if !inline && f.NoOptDefVal == "" && i+1 < len(rest) {
			i++
			flags = append(flags, rest[i])
		}
	}
	if !moved {
		return args
	}
	path := strings.Fields(cmd.CommandPath())[1:]
	out := append(append(path, flags...), "--")
	return append(out, operands...)
}

// flagNamed returns the flag of cmd that a names, and whether a carries
// its value ("--user=x", "-fauth.json"); nil if a names no flag.
func flagNamed(cmd *cobra.Command, a string) (*pflag.Flag, bool) {
	help := &pflag.Flag{Name: "help", NoOptDefVal: "true"} // added by cobra when it runs
	if name, ok := strings.CutPrefix(a, "--"); ok {
		name, _, inline := strings.Cut(name, "=")
		if name == "help" {
			return help, inline
		}
		return lookup(cmd, func(fs *pflag.FlagSet) *pflag.Flag { return fs.Lookup(name) }), inline
	}
	short := a[1:2]
	if short == "h" && len(a) == 2 {
		return help, false
	}
	return lookup(cmd, func(fs *pflag.FlagSet) *pflag.Flag { return fs.ShorthandLookup(short) }), len(a) > 2
}

func lookup(cmd *cobra.Command, find func(*pflag.FlagSet) *pflag.Flag) *pflag.Flag {
	for _, fs := range []*pflag.FlagSet{cmd.LocalFlags(), cmd.InheritedFlags()} {
		if f := find(fs); f != nil {
			return f
		}
	}
	return nil
}
