// Package keys holds CURVE key material: public keys (Key), secret keys
// (Secret) and key pairs (Pair), their text forms (Z85, the form libzmq
// prints; base64url, VOLTTRON's; hex), keystore files, and the
// known_hosts file in which clients pin a platform's public key.
//
// It depends on nothing but golang.org/x/crypto, so an agent binary that
// needs keys links neither the policy engine nor a file watcher.
//
//	kp, err := keys.Generate()
//	err = keys.Save("weather.json", kp) // mode 0600
//	kp, err = keys.Load("weather.json") // refuses a file others may read
//	serverKey, err := keys.LookupKnownHost(filepath.Join(home, "known_hosts"), "tcp://127.0.0.1:22916", nil)
package keys
