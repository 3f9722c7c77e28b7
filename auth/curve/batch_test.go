package curve

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/salsa20/salsa"
)

// memConn returns an established conn under key that writes to w and
// reads from r (either may be nil), as the server or the client, having
// last sent sent and last received received, and sealing and opening its
// boxes in batches (wide) or one at a time.
func memConn(key [32]byte, sent, received uint64, server, wide bool, w *bytes.Buffer, r io.Reader) *Conn {
	if w == nil {
		w = new(bytes.Buffer)
	}
	if r == nil {
		r = bytes.NewReader(nil)
	}
	o := newOptions("ROUTER", []Option{WithMaxFrameSize(1 << 20)})
	c := newConn(pipeConn{buf: w}, bufio.NewReaderSize(r, readBufferSize), session{key: key, sendNonce: sent, recvNonce: received}, &o, server)
	c.sendBox.wide, c.recvBox.wide = wide, wide
	return c
}

// wireBoxes splits a stream of MESSAGE commands into their nonce counters
// and boxes.
func wireBoxes(t *testing.T, wire []byte) (ns []uint64, boxes [][]byte) {
	t.Helper()
	for len(wire) > 0 {
		flags, body, err := readFrame(bytes.NewReader(wire), 1<<21)
		require.NoError(t, err)
		hsz := 2
		if flags&flagLong != 0 {
			hsz = 9
		}
		msg, err := decodeMessage(body)
		require.NoError(t, err)
		ns, boxes = append(ns, msg.Nonce), append(boxes, msg.Box)
		wire = wire[hsz+len(body):]
	}
	return ns, boxes
}

// shapeSizes is every frame size from 0 to 300 and sizes at the later
// boundaries: the plaintext (flags byte and data) filling block 0 (31
// bytes of data), the head that x/crypto computes (223), the blocks of one
// pass of eight (479), and long frames.
func shapeSizes() []int {
	var sizes []int
	for n := 0; n <= 300; n++ {
		sizes = append(sizes, n)
	}
	return append(sizes, 479, 480, 481, 511, 512, 513, 1000, 4096, 20000)
}

// TestConn_BatchedBoxesAreNaclBoxesForEveryMessageShape writes messages of
// 1 to 64 frames, whose sizes run through shapeSizes at every position of
// a batch, with a batching conn in each direction, under nonce counters
// that cross 2^32: every box on the wire must be
// nacl/box.SealAfterPrecomputation of the frame's flags byte and data
// under the MESSAGE nonce, and a batching and a non-batching reader must
// both return the messages.
func TestConn_BatchedBoxesAreNaclBoxesForEveryMessageShape(t *testing.T) {
	var key [32]byte
	_, err := rand.Read(key[:])
	require.NoError(t, err)
	sizes := shapeSizes()
	for _, server := range []bool{false, true} {
		prefix := prefixMessageC
		if server {
			prefix = prefixMessageS
		}
		start := uint64(1<<32 - 300)
		wire := new(bytes.Buffer)
		w := memConn(key, start, 0, server, true, wire, nil)
		var msgs [][][]byte
		next := 0
		for count := 1; count <= 64; count++ {
			frames := make([][]byte, count)
			for i := range frames {
				frames[i] = make([]byte, sizes[next%len(sizes)])
				_, _ = rand.Read(frames[i])
				next++
			}
			next += count % 5 // shift the sizes against the batches
			require.NoError(t, w.WriteMsg(frames))
			msgs = append(msgs, frames)
		}

		ns, boxes := wireBoxes(t, wire.Bytes())
		i := 0
		for _, frames := range msgs {
			for j, f := range frames {
				flags := byte(innerMore)
				if j == len(frames)-1 {
					flags = 0
				}
				nonce := shortNonce(prefix, start+1+uint64(i))
				require.Equal(t, start+1+uint64(i), ns[i])
				want := box.SealAfterPrecomputation(nil, append([]byte{flags}, f...), &nonce, &key)
				require.Equal(t, want, boxes[i], "server %v, message of %d frames, frame %d (%d bytes)", server, len(frames), j, len(f))
				i++
			}
		}
		require.Len(t, boxes, i)

		for _, wide := range []bool{true, false} {
			r := memConn(key, 0, start, !server, wide, nil, bytes.NewReader(wire.Bytes()))
			for _, frames := range msgs {
				got, err := r.ReadMsg()
				require.NoError(t, err, "wide reader %v", wide)
				require.Equal(t, normalize(frames), normalize(got))
			}
		}
	}
}

// TestConn_ReadMsgRefusesATamperedBoxOfABatch flips a bit of each box of
// an eight-frame message in turn, in its tag, its first ciphertext byte
// and its last: the batching reader refuses the message with ErrDecrypt.
// A message before it in the same read buffer, whose batch also covered
// the tampered box, is still returned.
func TestConn_ReadMsgRefusesATamperedBoxOfABatch(t *testing.T) {
	var key [32]byte
	_, err := rand.Read(key[:])
	require.NoError(t, err)
	first := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	wire := new(bytes.Buffer)
	w := memConn(key, 10, 0, false, true, wire, nil)
	require.NoError(t, w.WriteMsg(first))
	split := wire.Len()
	require.NoError(t, w.WriteMsg(vipCallFrames))
	clean := wire.Bytes()
	_, boxes := wireBoxes(t, clean[split:])
	require.Len(t, boxes, 8)

	for k, bx := range boxes {
		off := split + bytes.Index(clean[split:], bx)
		for _, pos := range []int{0, boxOverhead, len(bx) - 1} {
			tampered := bytes.Clone(clean)
			tampered[off+pos] ^= 0x10
			r := memConn(key, 0, 10, true, true, nil, bytes.NewReader(tampered))
			got, err := r.ReadMsg()
			require.NoError(t, err)
			require.Equal(t, first, got)
			got, err = r.ReadMsg()
			require.ErrorIs(t, err, ErrDecrypt, "box %d, byte %d", k, pos)
			require.Contains(t, err.Error(), fmt.Sprintf("MESSAGE %d", 14+k))
			require.Nil(t, got)
		}
	}
}

// TestConn_ReadMsgRefusesBoxesOfABatchOutOfOrder swaps two neighbouring
// MESSAGE commands of a message (before its last frame), or repeats one,
// in the read buffer: the batching reader refuses the message with
// ErrBadNonce.
func TestConn_ReadMsgRefusesBoxesOfABatchOutOfOrder(t *testing.T) {
	var key [32]byte
	_, err := rand.Read(key[:])
	require.NoError(t, err)
	wire := new(bytes.Buffer)
	w := memConn(key, 0, 0, false, true, wire, nil)
	require.NoError(t, w.WriteMsg(vipCallFrames))
	var cmds [][]byte // the eight MESSAGE commands with their frame headers
	rest := wire.Bytes()
	for len(rest) > 0 {
		_, body, err := readFrame(bytes.NewReader(rest), 1<<20)
		require.NoError(t, err)
		n := 2 + len(body)
		cmds, rest = append(cmds, rest[:n]), rest[n:]
	}
	require.Len(t, cmds, 8)

	for k := range 7 {
		orders := map[string][][]byte{
			"repeated": append(append(append([][]byte(nil), cmds[:k+1]...), cmds[k]), cmds[k+1:]...),
		}
		if k < 6 { // swapping the last two would end the message at the last frame
			swapped := append([][]byte(nil), cmds...)
			swapped[k], swapped[k+1] = swapped[k+1], swapped[k]
			orders["swapped"] = swapped
		}
		for name, order := range orders {
			r := memConn(key, 0, 0, true, true, nil, bytes.NewReader(bytes.Join(order, nil)))
			got, err := r.ReadMsg()
			require.ErrorIs(t, err, ErrBadNonce, "%s at %d", name, k)
			require.Nil(t, got)
		}
	}
}

// TestBatch_HoldsTheKeystreamOfExactlyTheBoxesGiven fills batches for
// several shapes: each box's keystream is the start of x/crypto's
// keystream under its counter, with block 0 always, and the further
// blocks the lanes left allow; a counter not given has none.
func TestBatch_HoldsTheKeystreamOfExactlyTheBoxesGiven(t *testing.T) {
	var key [32]byte
	_, err := rand.Read(key[:])
	require.NoError(t, err)
	for _, wide := range []bool{true, false} {
		mb := newMsgBox(&key, prefixMessageC)
		mb.wide = wide
		for _, tc := range []struct {
			lens   []int
			blocks []int // blocks held per box
		}{
			{[]int{5, 5, 6, 11, 4, 5, 5, 201}, []int{1, 1, 1, 1, 1, 1, 1, 1}},
			{[]int{201}, []int{4}},
			{[]int{32}, []int{1}},
			{[]int{33}, []int{2}},
			{[]int{5000}, []int{8}},
			{[]int{101, 101, 101}, []int{3, 3, 2}},
			{[]int{5000, 1, 5000}, []int{6, 1, 1}},
		} {
			ns := make([]uint64, len(tc.lens))
			for i := range ns {
				ns[i] = 1<<40 + 3*uint64(i) // not consecutive: as read from headers
			}
			var z batch
			mb.fill(&z, ns, tc.lens)
			for i, n := range ns {
				ks := z.keystream(n)
				want := make([]byte, 64*tc.blocks[i])
				c := salsaCounter(n, 0)
				salsa.XORKeyStream(want, want, &c, &mb.key)
				require.Equal(t, want, ks, "lengths %v, box %d", tc.lens, i)
			}
			require.Nil(t, z.keystream(1<<40+1))
		}
	}
}

// FuzzConn_BatchedMatchesUnbatched writes messages whose frame counts and
// sizes come from the fuzzer with a batching and a non-batching conn (the
// wire bytes must be equal), flips one bit of the wire if flip is not
// zero, and reads it with a batching and a non-batching conn: both must
// return the same messages and fail at the same point with the same error
// (without the flip: the messages written).
func FuzzConn_BatchedMatchesUnbatched(f *testing.F) {
	f.Add([]byte{8, 6, 4, 5, 10, 4, 4, 4, 200}, uint32(0), byte(1))
	f.Add([]byte{1, 200, 3, 100, 100, 100, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint32(900), byte(2))
	f.Add([]byte{2, 255, 255, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 31}, uint32(12345), byte(3))
	f.Fuzz(func(t *testing.T, script []byte, flip uint32, seed byte) {
		var key [32]byte
		for i := range key {
			key[i] = seed ^ byte(5*i)
		}
		start := uint64(seed) << 28 // some runs cross 2^32
		var msgs [][][]byte
		for i := 0; i < len(script) && len(msgs) < 16; {
			count := 1 + int(script[i])%20
			i++
			frames := make([][]byte, count)
			for j := range frames {
				size := 0
				if i < len(script) {
					size = int(script[i]) * (1 + int(seed)%9)
					i++
				}
				frames[j] = bytes.Repeat([]byte{byte(j) ^ seed}, size)
			}
			msgs = append(msgs, frames)
		}
		var wires [2]*bytes.Buffer
		for k, wide := range []bool{true, false} {
			wires[k] = new(bytes.Buffer)
			w := memConn(key, start, 0, seed&1 == 1, wide, wires[k], nil)
			for _, m := range msgs {
				require.NoError(t, w.WriteMsg(m))
			}
		}
		require.Equal(t, wires[1].Bytes(), wires[0].Bytes(), "batched and unbatched seal")
		wire := wires[0].Bytes()
		if flip != 0 && len(wire) > 0 {
			bit := int(flip-1) % (8 * len(wire))
			wire[bit/8] ^= 1 << (bit % 8)
		}

		type result struct {
			frames [][]byte
			err    string
		}
		var results [2][]result
		for k, wide := range []bool{true, false} {
			r := memConn(key, 0, start, seed&1 == 0, wide, nil, bytes.NewReader(wire))
			for range len(msgs) {
				got, err := r.ReadMsg()
				if err != nil {
					results[k] = append(results[k], result{err: err.Error()})
					break
				}
				results[k] = append(results[k], result{frames: normalize(got)})
			}
		}
		require.Equal(t, results[1], results[0], "batched and unbatched open")
		if flip == 0 {
			for i, m := range msgs {
				require.Equal(t, result{frames: normalize(m)}, results[0][i])
			}
		}
	})
}

// BenchmarkBatchedBoxes is BenchmarkMessageBoxes/vip-call as the conn
// seals and opens a message's boxes: in batches (fill), with
// salsa8AVX2 where the CPU has it, the frames' keystream is computed
// together. Its figure compares with vip-call of BenchmarkMessageBoxes
// (one box at a time) and with the older versions measured there.
func BenchmarkBatchedBoxes(b *testing.B) {
	var key [32]byte
	for i := range key {
		key[i] = byte(i)
	}
	b.Run("vip-call", func(b *testing.B) {
		s, r := newMsgBox(&key, prefixMessageC), newMsgBox(&key, prefixMessageC)
		s.wide, r.wide = true, true
		boxes := make([]byte, 0, 1024)
		plain := make([]byte, 0, 1024)
		var ends [8]int
		var ns [8]uint64
		var lens [8]int
		n := uint64(1)
		for b.Loop() {
			var z batch
			boxes = boxes[:0]
			s.fillFrames(&z, n, vipCallFrames)
			for i, f := range vipCallFrames {
				boxes = s.sealFrameWith(boxes, 1, f, n+uint64(i), z.keystream(n+uint64(i)))
				ends[i] = len(boxes)
				ns[i], lens[i] = n+uint64(i), 1+len(f)
			}
			r.fill(&z, ns[:], lens[:])
			plain = plain[:0]
			start := 0
			for i := range vipCallFrames {
				var ok bool
				if plain, ok = r.openWith(plain, boxes[start:ends[i]], ns[i], z.keystream(ns[i])); !ok {
					b.Fatal("open failed")
				}
				start = ends[i]
			}
			n += 8
		}
	})
}
