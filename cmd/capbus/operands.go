package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capbus/capbus/keys"
)

// dashOperand marks, in a command's Annotations, a command whose operand
// may begin with '-': a Z85 key can, and flag parsing would read it as a
// flag ("unknown shorthand flag: 'i' in -ik=28PX...").
const dashOperand = "capbus.dash-operand"

// dashOperands returns args with every argument of a dashOperand command
// that begins with '-' and is a whole key or names none of its flags
// moved after a "--", so that it reaches the command as an operand. The
// start of a key that reads as a flag, such as "-fQ", stays a flag; it
// needs the "--" typed: capbus auth approve --user u -- '-fQ'.
func dashOperands(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd.Annotations[dashOperand] == "" {
		return args
	}
	var kept, moved []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(append(append(kept, "--"), moved...), args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			kept = append(kept, a)
			continue
		}
		f, inline := flagNamed(cmd, a)
		if _, err := keys.Parse(a); err == nil || f == nil {
			moved = append(moved, a)
			continue
		}
		kept = append(kept, a)
		if !inline && f.NoOptDefVal == "" && i+1 < len(args) {
			i++
			kept = append(kept, args[i])
		}
	}
	if len(moved) == 0 {
		return args
	}
	return append(append(kept, "--"), moved...)
}

// flagNamed returns the flag of cmd that a names, and whether a carries
// its value ("--user=x", "-fauth.json"); nil if a names no flag.
func flagNamed(cmd *cobra.Command, a string) (*pflag.Flag, bool) {
	if name, ok := strings.CutPrefix(a, "--"); ok {
		name, _, inline := strings.Cut(name, "=")
		if name == "help" {
			return &pflag.Flag{Name: "help", NoOptDefVal: "true"}, inline
		}
		return lookup(cmd, func(fs *pflag.FlagSet) *pflag.Flag { return fs.Lookup(name) }), inline
	}
	short := a[1:2]
	if short == "h" && len(a) == 2 {
		return &pflag.Flag{Name: "help", NoOptDefVal: "true"}, false
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
