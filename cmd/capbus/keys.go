package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/capbus/capbus/keys"
	"github.com/spf13/cobra"
)

func newKeygenCommand(g *globals) *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Generate a CURVE key pair for an agent or a CLI user",
		Long: `keygen generates a CURVE key pair.

With --out it writes a keystore file (mode 0600, JSON with "public" and "secret" in Z85)
and prints the bare public key, for use as "$(capbus keygen --out FILE)"; without --out
it prints both keys single-quoted, ready to paste into a shell (treat the output as
secret). An existing file is never overwritten unless --force is given.`,
		Example: `  capbus keygen --out alice.json
  capbus auth add alice --credentials "$(capbus keygen --out alice.json)"
  capbus keygen            # prints public and secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kp, err := keys.Generate()
			if err != nil {
				return err
			}
			if out == "" {
				fmt.Fprintf(g.stdout, "public: '%s'\nsecret: '%s'\n", kp.Public.Z85(), kp.Secret.Z85())
				return nil
			}
			if _, err := os.Stat(out); err == nil && !force {
				return fmt.Errorf("keygen: %s exists; use --force to replace it", out)
			} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("keygen: %w", err)
			}
			if err := keys.Save(out, kp); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			fmt.Fprintln(g.stdout, kp.Public.Z85())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the key pair to this keystore file (mode 0600) and print the public key")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing keystore file")
	return cmd
}

func newServerKeyCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "serverkey",
		Short: "Print the platform's public key (agents pin it)",
		Long: `serverkey prints the public key of the platform whose home directory is --home,
reading its keystore.json. Agents and the CLI need it to connect.`,
		Example: `  capbus serverkey
  capbus serverkey --format base64url   # VOLTTRON's form`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kp, err := keys.Load(g.serverKeystore())
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return withCode(exitNotFound, fmt.Errorf("serverkey: no platform keystore at %s; run \"capbus platform run\" once to create it", g.serverKeystore()))
				}
				return fmt.Errorf("serverkey: %w", err)
			}
			return printKey(g, kp.Public, format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "z85", "key format: z85, base64url or hex")
	return cmd
}

func printKey(g *globals, k keys.Key, format string) error {
	switch format {
	case "z85":
		fmt.Fprintln(g.stdout, k.Z85())
	case "base64url", "base64":
		fmt.Fprintln(g.stdout, k.Base64URL())
	case "hex":
		fmt.Fprintln(g.stdout, k.Hex())
	default:
		return &usageError{fmt.Sprintf("--format %q: want z85, base64url or hex", format)}
	}
	return nil
}
