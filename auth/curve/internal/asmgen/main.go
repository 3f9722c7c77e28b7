// Command asmgen generates salsa_amd64.s and salsa_amd64_stubs.go of
// package curve with avo: salsa8AVX2, eight Salsa20/20 blocks computed at
// once on the sixteen 256-bit registers of AVX2. It lives in a module of
// its own so that capbus's go.mod does not depend on avo. Run it with
// `go generate ./auth/curve`; CI runs it and fails if the output differs
// from the committed files.
//
// Layout: lane i of a register is block i. Word w of the input of every
// block is state[w], broadcast, except words 6 to 9 (the nonce and the
// block counter), which are lanes[w-6], one value per block. Twelve
// registers hold words of the state and four are scratch for the two
// quarter-rounds run at a time; the other four words wait in out, which
// serves as spill space until the result is written there. The schedule
// is fixed (see rounds): a double round spills and reloads four words
// twice. At the end the input is added, and the words are transposed
// into blocks with unpack and 128-bit permutes: bytes 64*i to 64*i+63 of
// out are block i's keystream.
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// A quarter-round of Salsa20 on words (a, b, c, d):
// b ^= (a+d)<<<7, c ^= (b+a)<<<9, d ^= (c+b)<<<13, a ^= (d+c)<<<18.
type quarter [4]int

// step i of a quarter-round q: q[dst] ^= (q[x]+q[y]) <<< rot.
var steps = [4]struct{ dst, x, y, rot int }{{1, 0, 3, 7}, {2, 1, 0, 9}, {3, 2, 1, 13}, {0, 3, 2, 18}}

// pass is two quarter-rounds run together, and the words to spill to out
// and to reload from it after them, so that the next pass finds its eight
// words in registers.
type pass struct {
	q             [2]quarter
	spill, reload []int
}

// rounds is one double round: the column round, then the row round, two
// quarter-rounds at a time. Entering it, the words of inOut are in out and
// all others in registers; leaving it, the same.
var rounds = []pass{
	{q: [2]quarter{{0, 4, 8, 12}, {5, 9, 13, 1}}, spill: []int{8, 9, 12, 13}, reload: []int{2, 3, 6, 7}},
	{q: [2]quarter{{10, 14, 2, 6}, {15, 3, 7, 11}}},
	{q: [2]quarter{{0, 1, 2, 3}, {5, 6, 7, 4}}, spill: []int{2, 3, 6, 7}, reload: []int{8, 9, 12, 13}},
	{q: [2]quarter{{10, 11, 8, 9}, {15, 12, 13, 14}}},
}

// inOut is the words in out at the start of each double round.
var inOut = map[int]bool{2: true, 3: true, 6: true, 7: true}

// kernel tracks where the sixteen words are while the code is generated.
type kernel struct {
	out, state, lanes Mem
	word              [16]reg.VecPhysical // the register of each word held in one
	free              []reg.VecPhysical   // registers holding no word
}

// slot is where word w waits in out: bytes 0-31 of block w for words 0
// to 7, bytes 32-63 of block w-8 for words 8 to 15. The second halves of
// the blocks are written first, so the words of the first halves stay
// until they are read for the last time.
func (k *kernel) slot(w int) Mem { return k.out.Offset(64*(w%8) + 32*(w/8)) }

// input is word w of the input: state[w], to broadcast, or for words 6 to
// 9 the eight lanes lanes[w-6].
func (k *kernel) input(w int) (m Mem, broadcast bool) {
	if w >= 6 && w <= 9 {
		return k.lanes.Offset(32 * (w - 6)), false
	}
	return k.state.Offset(4 * w), true
}

func (k *kernel) alloc() reg.VecPhysical {
	r := k.free[0]
	k.free = k.free[1:]
	return r
}

func (k *kernel) release(r reg.VecPhysical) { k.free = append(k.free, r) }

// load puts input word w in a new register.
func (k *kernel) load(w int) {
	r := k.alloc()
	if m, b := k.input(w); b {
		VPBROADCASTD(m, r)
	} else {
		VMOVDQU(m, r)
	}
	k.word[w] = r
}

// swap spills word out to its slot and reloads word in from its slot into
// the same register.
func (k *kernel) swap(out, in int) {
	r := k.word[out]
	VMOVDQU(r, k.slot(out))
	VMOVDQU(k.slot(in), r)
	k.word[in] = r
}

// quarters runs two quarter-rounds, interleaved, with four scratch
// registers: t = x+y, then the word ^= t<<rot ^ t>>(32-rot).
func (k *kernel) quarters(q [2]quarter) {
	Commentf("Quarter-rounds %v and %v.", q[0], q[1])
	var t, u [2]reg.VecPhysical
	for i := range 2 {
		t[i], u[i] = k.alloc(), k.alloc()
	}
	for _, s := range steps {
		for i := range 2 {
			VPADDD(k.word[q[i][s.x]], k.word[q[i][s.y]], t[i])
		}
		for i := range 2 {
			VPSLLD(U8(s.rot), t[i], u[i])
			VPSRLD(U8(32-s.rot), t[i], t[i])
		}
		for i := range 2 {
			d := k.word[q[i][s.dst]]
			VPXOR(u[i], d, d)
			VPXOR(t[i], d, d)
		}
	}
	for i := range 2 {
		k.release(t[i])
		k.release(u[i])
	}
}

// finish adds the input to words 8*half to 8*half+7, which are in
// registers, transposes them into blocks and writes them to bytes
// 32*half to 32*half+31 of the eight blocks.
func (k *kernel) finish(half int) {
	Commentf("Add the input to words %d to %d.", 8*half, 8*half+7)
	var r, t [8]reg.VecPhysical
	for j := range 8 {
		w := 8*half + j
		r[j] = k.word[w]
		if m, b := k.input(w); b {
			s := k.alloc()
			VPBROADCASTD(m, s)
			VPADDD(s, r[j], r[j])
			k.release(s)
		} else {
			VPADDD(m, r[j], r[j])
		}
	}
	for j := range t {
		t[j] = k.alloc()
	}
	Comment("Transpose them into blocks: in lanes, then 128-bit halves.")
	// t[2j], t[2j+1]: the dwords of r[2j] and r[2j+1] interleaved.
	for j := range 4 {
		VPUNPCKLDQ(r[2*j+1], r[2*j], t[2*j])
		VPUNPCKHDQ(r[2*j+1], r[2*j], t[2*j+1])
	}
	// r[4h+m] (m < 4): words 4h to 4h+3 of block m (low 128 bits) and of
	// block m+4 (high 128 bits).
	for h := range 2 {
		VPUNPCKLQDQ(t[4*h+2], t[4*h], r[4*h])
		VPUNPCKHQDQ(t[4*h+2], t[4*h], r[4*h+1])
		VPUNPCKLQDQ(t[4*h+3], t[4*h+1], r[4*h+2])
		VPUNPCKHQDQ(t[4*h+3], t[4*h+1], r[4*h+3])
	}
	// t[m]: block m's eight words; t[4+m]: block m+4's.
	for m := range 4 {
		VPERM2I128(U8(0x20), r[4+m], r[m], t[m])
		VPERM2I128(U8(0x31), r[4+m], r[m], t[4+m])
	}
	for m := range 8 {
		VMOVDQU(t[m], k.out.Offset(64*m+32*half))
	}
	for j := range 8 {
		k.release(r[j])
		k.release(t[j])
	}
}

func main() {
	ConstraintExpr("amd64,!purego")
	TEXT("salsa8AVX2", NOSPLIT, "func(out *[512]byte, state *[16]uint32, lanes *[4][8]uint32)")
	Pragma("noescape")
	Doc(
		"salsa8AVX2 computes eight Salsa20/20 blocks at once with AVX2: the",
		"input of block i is state with words 6 to 9 (nonce and block counter)",
		"replaced by lanes[0][i] to lanes[3][i]; block i, 64 bytes of",
		"keystream, goes to out[64*i:64*i+64]. The CPU must have AVX2.",
	)
	k := &kernel{
		out:   Mem{Base: Load(Param("out"), GP64())},
		state: Mem{Base: Load(Param("state"), GP64())},
		lanes: Mem{Base: Load(Param("lanes"), GP64())},
		free: []reg.VecPhysical{reg.Y0, reg.Y1, reg.Y2, reg.Y3, reg.Y4, reg.Y5, reg.Y6, reg.Y7,
			reg.Y8, reg.Y9, reg.Y10, reg.Y11, reg.Y12, reg.Y13, reg.Y14, reg.Y15},
	}

	Comment("Words 2, 3, 6 and 7 start in out, the others in registers.")
	for w := range 16 {
		if inOut[w] {
			k.load(w)
			VMOVDQU(k.word[w], k.slot(w))
			k.release(k.word[w])
		}
	}
	for w := range 16 {
		if !inOut[w] {
			k.load(w)
		}
	}

	Comment("Ten double rounds.")
	n := GP64()
	MOVQ(U32(10), n)
	Label("doubleround")
	entry, free := k.word, fmt.Sprint(k.free)
	for _, p := range rounds {
		k.quarters(p.q)
		for i, w := range p.spill {
			k.swap(w, p.reload[i])
		}
	}
	for w := range 16 {
		if !inOut[w] && k.word[w] != entry[w] || fmt.Sprint(k.free) != free {
			panic("asmgen: a double round does not leave the words where it found them")
		}
	}
	DECQ(n)
	JNZ(LabelRef("doubleround"))

	Comment("Words 8 to 15 (in registers) go to the second halves of the blocks.")
	for _, w := range []int{0, 1, 4, 5} {
		VMOVDQU(k.word[w], k.slot(w))
		k.release(k.word[w])
	}
	k.finish(1)
	Comment("Words 0 to 7 (in out, where nothing has been written over them) go to the first halves.")
	for w := range 8 {
		r := k.alloc()
		VMOVDQU(k.slot(w), r)
		k.word[w] = r
	}
	k.finish(0)
	VZEROUPPER()
	RET()
	Generate()
}
