//go:build !amd64 || purego

package curve

// kernels returns the assembly Salsa20 kernels this CPU can run: none here.
func kernels() map[string]func(out *[8][64]byte, state *[16]uint32, lanes *[4][8]uint32) {
	return nil
}
