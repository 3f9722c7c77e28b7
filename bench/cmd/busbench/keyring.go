package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/capbus/capbus/keys"
)

// A keyring gives every agent of a group ("idle", "sub", "fleet") its own
// key pair, derived from a seed that the orchestrator makes and passes to
// its children (-seed), so that thousands of agents need neither thousands
// of keystore files nor one shared key: each agent is its own user in
// auth.json, as in a deployment, and no per-key or per-user limit is
// reached by the benchmark's own construction.
type keyring struct{ seed []byte }

func newKeyring() (keyring, error) {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return keyring{}, err
	}
	return keyring{seed: seed}, nil
}

func parseKeyring(s string) (keyring, error) {
	seed, err := hex.DecodeString(s)
	if err != nil || len(seed) != 32 {
		return keyring{}, fmt.Errorf("-seed: want 64 hex digits")
	}
	return keyring{seed: seed}, nil
}

func (k keyring) String() string { return hex.EncodeToString(k.seed) }

// pair returns the key pair of agent i of group: its secret key is
// SHA-256(seed, group, i).
func (k keyring) pair(group string, i int) keys.Pair {
	h := sha256.New()
	h.Write(k.seed)
	h.Write([]byte(group))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(i))
	h.Write(n[:])
	var s keys.Secret
	copy(s[:], h.Sum(nil))
	return keys.Pair{Public: s.Public(), Secret: s}
}

// identity is the identity (and user id) of agent i of group.
func identity(group string, i int) string { return fmt.Sprintf("%s.%d", group, i) }
