package platform

// WithPendingKeysFile makes the platform remember, in the file at path,
// the CURVE keys it refuses at the handshake because auth.json does not
// know them (not keys that are disabled or denied): their Z85 form, the
// remote address, first and last time seen and a count, for at most the
// 100 most recently seen keys. The file is written at most once a second
// however many handshakes are refused. An operator lists them with
// "capbus auth pending" and admits one with "capbus auth approve"
// (VOLTTRON's pending authentication requests). Without this option
// nothing is written.
func WithPendingKeysFile(path string) Option {
	return optionFunc(func(c *config) { c.pendingKeysFile = path })
}
