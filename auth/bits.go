package auth

import "math/bits"

// bitset is a fixed-size set of interned indices (capabilities or roles).
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) has(i int) bool { return i>>6 < len(b) && b[i>>6]&(1<<(uint(i)&63)) != 0 }

func (b bitset) or(o bitset) {
	for i := range o {
		b[i] |= o[i]
	}
}

func (b bitset) and(o bitset) {
	for i := range b {
		b[i] &= o[i]
	}
}

func (b bitset) andNot(o bitset) {
	for i := range o {
		b[i] &^= o[i]
	}
}

func (b bitset) clone() bitset { return append(bitset(nil), b...) }

// each calls fn for every member in ascending order.
func (b bitset) each(fn func(i int)) {
	for w, x := range b {
		for x != 0 {
			t := bits.TrailingZeros64(x)
			fn(w<<6 + t)
			x &= x - 1
		}
	}
}

// wordMask is one non-zero word of a sparse bitset: a requirement is a short
// list of these, so a check touches only the words it needs.
type wordMask struct {
	word int
	mask uint64
}

// sparse returns the non-zero words of b.
func (b bitset) sparse() []wordMask {
	var out []wordMask
	for i, x := range b {
		if x != 0 {
			out = append(out, wordMask{i, x})
		}
	}
	return out
}

// holds reports whether b contains every member of req: req &^ b == 0.
func (b bitset) holds(req []wordMask) bool {
	for _, w := range req {
		if w.word >= len(b) || w.mask&^b[w.word] != 0 {
			return false
		}
	}
	return true
}

func trailingZeros(x uint64) int { return bits.TrailingZeros64(x) }
