package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/capbus/capbus/keys"
)

// Environment variables that FromEnv reads.
const (
	// EnvHome is the capbus home directory: the platform's files
	// (known_hosts) and the agents' key pairs (keys/). Default ~/.capbus.
	EnvHome = "CAPBUS_HOME"
	// EnvAddress is the platform's address. Default DefaultAddress.
	EnvAddress = "CAPBUS_ADDRESS"
	// EnvKeystore is the agent's keystore file. Default
	// <home>/keys/<identity>.json.
	EnvKeystore = "CAPBUS_KEYSTORE"
)

// Home returns the capbus home directory: $CAPBUS_HOME, else .capbus in
// the user's home directory.
func Home() string {
	if h := os.Getenv(EnvHome); h != "" {
		return h
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".capbus")
	}
	return ".capbus"
}

// FromEnv returns an agent that will claim identity, configured from the
// environment the way "capbus platform run" lays out a local platform:
//
//   - the platform's address is $CAPBUS_ADDRESS, or DefaultAddress;
//   - the platform's public key is the line for that address in
//     <home>/known_hosts (the platform writes it when it starts), where
//     <home> is $CAPBUS_HOME or ~/.capbus;
//   - the agent's key pair is the keystore $CAPBUS_KEYSTORE, or
//     <home>/keys/<identity>.json ("capbus keygen --out FILE" writes one;
//     "capbus auth add" admits its public key).
//
// opts are applied after these and win: WithKeyPair or WithKeystore
// replaces the keystore, WithServerKey, WithPlatform or WithKnownHosts the
// known_hosts lookup, WithAddress the address; a value an option gives is
// never looked up in the environment. Errors name the missing file and the
// command that makes it.
func FromEnv(identity string, opts ...Option) (*Agent, error) {
	if err := checkIdentity(identity); err != nil {
		return nil, err
	}
	// What do the caller's options set already?
	given := defaultConfig()
	for _, o := range opts {
		if o != nil {
			if err := o.apply(&given); err != nil {
				return nil, err
			}
		}
	}
	home := Home()
	var env []Option
	address := given.address
	if a := os.Getenv(EnvAddress); a != "" && address == DefaultAddress {
		address = a
		env = append(env, WithAddress(a))
	}
	if !given.haveKeyPair {
		path, from := filepath.Join(home, "keys", identity+".json"), "the default keystore of agent "+identity
		if p := os.Getenv(EnvKeystore); p != "" {
			path, from = p, "$"+EnvKeystore
		}
		kp, err := keys.Load(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("agent %s: no key pair: %s (%s) does not exist; create it with: capbus keygen --out %s, admit its key with: capbus auth add USER --identity %s --credentials \"$(capbus keygen --out %s)\", or set %s: %w",
				identity, path, from, path, identity, path, EnvKeystore, err)
		case err != nil:
			return nil, fmt.Errorf("agent %s: key pair: %w", identity, err)
		}
		env = append(env, WithKeyPair(kp))
	}
	if given.serverKey.IsZero() && given.knownHosts == "" {
		kh := filepath.Join(home, "known_hosts")
		k, err := keys.LookupKnownHost(kh, address, given.logger)
		if err != nil {
			return nil, fmt.Errorf("agent %s: no key for the platform at %s: %w (the platform writes %s when it starts with home %s: is %s=%s the platform's home? Or pass agent.WithServerKey)",
				identity, address, err, kh, home, EnvHome, home)
		}
		env = append(env, WithServerKey(k))
	}
	return New(identity, append(env, opts...)...)
}
