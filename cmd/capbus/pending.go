package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/internal/pendingkeys"
	"github.com/capbus/capbus/keys"
)

func newAuthPendingCommand(g *globals, ed func() *authEditor) *cobra.Command {
	var clear bool
	var file string
	cmd := &cobra.Command{
		Use:   "pending",
		Short: "List the keys the platform refused because auth.json does not know them",
		Long: `pending lists the keys that connected to the platform and were refused at the handshake
because no entry of auth.json has them (VOLTTRON's pending authentication requests):
the key (Z85, quoted for pasting), the address it came from, when it was first and last
seen and how many times. Keys that are disabled or denied are not listed, nor keys that
auth.json admits by now (added with capbus auth add, say). The platform
keeps the 100 most recently seen in pending_keys.json in its home. Admit one with
capbus auth approve; --clear forgets them all.`,
		Example: `  capbus auth pending
  capbus auth approve 'KEY' --user thermostat --identity thermostat --grant publish_devices
  capbus auth pending --clear`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := pendingFile(g, file)
			if clear {
				if err := pendingkeys.Update(cmd.Context(), path, func([]pendingkeys.Key) ([]pendingkeys.Key, error) { return nil, nil }); err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, "cleared the pending keys")
				return nil
			}
			list, err := pendingkeys.Read(path)
			if err != nil {
				return err
			}
			list = stillUnknown(ed().path, list)
			if len(list) == 0 {
				fmt.Fprintln(g.stdout, "no pending keys")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tADDRESS\tFIRST SEEN\tLAST SEEN\tCOUNT")
			for _, k := range list {
				fmt.Fprintf(tw, "'%s'\t%s\t%s\t%s\t%d\n", k.Key, k.Address,
					k.FirstSeen.Local().Format(time.DateTime), k.LastSeen.Local().Format(time.DateTime), k.Count)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&clear, "clear", false, "forget every pending key")
	cmd.Flags().StringVar(&file, "pending-file", "", "the platform's pending keys file (default: pending_keys.json in --home)")
	return cmd
}

func pendingFile(g *globals, flag string) string {
	if flag != "" {
		return flag
	}
	return g.pendingKeys()
}

func newAuthApproveCommand(g *globals, ed func() *authEditor) *cobra.Command {
	var ef entryFlags
	var file, user string
	cmd := &cobra.Command{
		Use:   "approve KEY --user USER",
		Short: "Admit a pending key: add an allow entry for it and forget it as pending",
		Long: `approve adds an allow entry for KEY (as capbus auth add does, with the same flags) and
removes KEY from the pending keys. KEY may be the whole key (Z85 or base64url) or the
start of a pending key's Z85 form, if only one pending key starts so. A key may begin with
'-' (Z85 has it) and is still read as KEY; if it begins like a flag of approve (-f, -h),
type -- before it.`,
		Example: `  capbus auth approve 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7' --user thermostat --identity thermostat
  capbus auth approve 'rq:rM>}U' --user thermostat --grant publish_devices`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &usageError{fmt.Sprintf("approve: want one KEY, got %d (the start of a key that reads as a flag, -f..., needs -- before it: capbus auth approve --user USER -- '-f...')", len(args))}
			}
			return nil
		},
		Annotations: map[string]string{dashOperand: "KEY"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return &usageError{"approve: --user is required (the user id the key will authenticate as)"}
			}
			path := pendingFile(g, file)
			list, err := pendingkeys.Read(path)
			if err != nil {
				return err
			}
			key, err := pendingKey(list, args[0])
			if err != nil {
				return err
			}
			ef.credentials = key.Z85()
			if err := cmd.Flags().Set("credentials", key.Z85()); err != nil {
				return err
			}
			var added auth.Entry
			err = ed().edit(cmd.Context(), func(f *auth.File) error { return addEntry(cmd, &ef, f, user, &added) })
			if err != nil {
				return editHint(err)
			}
			err = pendingkeys.Update(context.WithoutCancel(cmd.Context()), path, func(l []pendingkeys.Key) ([]pendingkeys.Key, error) {
				return slices.DeleteFunc(l, func(k pendingkeys.Key) bool { return k.Key == key.Z85() }), nil
			})
			fmt.Fprintf(g.stdout, "approved %s as user %s: %s\n", quoteKey(key), user, summary(added))
			if err != nil {
				return fmt.Errorf("the key is admitted, but could not be removed from %s: %w", path, err)
			}
			return nil
		},
	}
	ef.register(cmd, true)
	_ = cmd.Flags().MarkHidden("credentials")
	cmd.Flags().StringVar(&user, "user", "", "the user id the key authenticates as (required)")
	cmd.Flags().StringVar(&file, "pending-file", "", "the platform's pending keys file (default: pending_keys.json in --home)")
	return cmd
}

// pendingKey resolves what the operator typed: a whole key, or the start
// of exactly one pending key's Z85 form.
func pendingKey(list []pendingkeys.Key, arg string) (keys.Key, error) {
	arg = strings.Trim(strings.TrimSpace(arg), "'")
	if k, err := keys.Parse(strings.TrimPrefix(arg, "CURVE:")); err == nil {
		return k, nil
	}
	var match []string
	for _, p := range list {
		if arg != "" && strings.HasPrefix(p.Key, arg) {
			match = append(match, p.Key)
		}
	}
	switch len(match) {
	case 0:
		return keys.Key{}, withCode(exitNotFound, fmt.Errorf("approve: %q is not a key and no pending key starts with it (capbus auth pending lists them)", arg))
	case 1:
		return keys.Parse(match[0])
	}
	return keys.Key{}, &usageError{fmt.Sprintf("approve: %d pending keys start with %q; give more of the key", len(match), arg)}
}

// stillUnknown drops from list the keys that the auth.json at path no
// longer refuses as unknown (admitted, disabled or denied since). When the
// file cannot be read the list is kept whole.
func stillUnknown(path string, list []pendingkeys.Key) []pendingkeys.Key {
	pol, err := auth.LoadFile(path)
	if err != nil {
		return list
	}
	return slices.DeleteFunc(list, func(p pendingkeys.Key) bool {
		k, err := keys.Parse(p.Key)
		if err != nil {
			return false
		}
		_, err = pol.Authenticate(k, p.Address)
		return !errors.Is(err, auth.ErrUnknownKey)
	})
}
