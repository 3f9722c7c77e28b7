package auth

import (
	"fmt"
	"net"
	"strings"

	"github.com/capbus/capbus/keys"
)

// Authenticate decides admission at the CURVE handshake: which user is this
// key? The error wraps ErrDenied (a deny entry matches: capbus enforces the
// deny list), ErrUnknownKey (no enabled allow entry for this key, or its
// address does not match) or ErrDisabled, and says why. remoteAddr ("host",
// "host:port" or "tcp://host:port") is checked against the entry's address
// when the entry sets one.
func (p *Policy) Authenticate(key keys.Key, remoteAddr string) (string, error) {
	if p.closed {
		return "", fmt.Errorf("%w: no policy in force (%w); nobody is admitted", ErrUnknownKey, ErrNoPolicy)
	}
	host := hostOf(remoteAddr)
	addrMatch := func(m matcher) bool { return m.any() || m.match(host) || m.match(remoteAddr) }
	for _, d := range p.deny {
		keyMatch := (d.hasKey && d.key == key) || (!d.hasKey && !d.cred.any() && credMatch(d.cred, key))
		if keyMatch && addrMatch(d.address) {
			return "", fmt.Errorf("%w: key %s matches %s", ErrDenied, key.Z85(), d.path)
		}
	}
	u := p.byKey[key]
	if u == nil {
		for _, c := range p.byPattern {
			if credMatch(c.cred, key) && addrMatch(c.address) {
				u = c
				break
			}
		}
	}
	if u == nil {
		return "", fmt.Errorf("%w: no allow entry has key %s", ErrUnknownKey, key.Z85())
	}
	if !addrMatch(u.address) {
		return "", fmt.Errorf("%w: key %s belongs to user %q (%s), whose address %q does not match %q", ErrUnknownKey, key.Z85(), u.id, u.path, u.address.text, remoteAddr)
	}
	if !u.enabled {
		return "", fmt.Errorf("%w: user %q (%s) has \"enabled\": false", ErrDisabled, u.id, u.path)
	}
	for _, d := range p.deny {
		if d.userID != "" && d.userID == u.id && !d.hasKey && d.cred.any() {
			return "", fmt.Errorf("%w: user %q matches %s", ErrDenied, u.id, d.path)
		}
	}
	return u.id, nil
}

func credMatch(m matcher, k keys.Key) bool { return m.match(k.Base64URL()) || m.match(k.Z85()) }

// hostOf extracts the host from "tcp://host:port", "host:port" or "host".
func hostOf(addr string) string {
	if i := strings.Index(addr, "://"); i >= 0 {
		addr = addr[i+3:]
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// CheckIdentity reports whether user may claim the agent identity. An entry
// that names identities (VOLTTRON's "identity" plus capbus "identities",
// exact or /regex/) may claim only those; an entry that names none may claim
// any identity that is not bound to another user. The error wraps
// ErrIdentityNotAllowed (or ErrUnknownUser) and names the identity and what
// is allowed.
func (p *Policy) CheckIdentity(userID, identity string) error {
	u := p.users[userID]
	if u == nil {
		return fmt.Errorf("%w: %w: user %q is not in the policy", ErrIdentityNotAllowed, ErrUnknownUser, userID)
	}
	if identity == "" {
		return fmt.Errorf("%w: user %q claimed an empty identity", ErrIdentityNotAllowed, userID)
	}
	if len(u.binds) > 0 {
		if u.mayClaim(identity) {
			return nil
		}
		return fmt.Errorf("%w: user %q may not claim identity %q (%s)", ErrIdentityNotAllowed, userID, identity, u.bindList())
	}
	if other := p.boundExact[identity]; other != nil && other != u {
		return fmt.Errorf("%w: identity %q is bound to user %q (%s); user %q may claim any identity not bound to another user", ErrIdentityNotAllowed, identity, other.id, other.path, userID)
	}
	for _, other := range p.boundPattern {
		if other != u && other.mayClaim(identity) {
			return fmt.Errorf("%w: identity %q is bound to user %q (%s, %s); user %q may claim any identity not bound to another user", ErrIdentityNotAllowed, identity, other.id, other.path, other.bindList(), userID)
		}
	}
	return nil
}
