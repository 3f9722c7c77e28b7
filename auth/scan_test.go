package auth

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzScan checks the position-keeping scanner against encoding/json: it
// must accept exactly what encoding/json accepts (after comment stripping)
// and give the same string values.
func FuzzScan(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a": [1, -2.5e+3, true, false, null, "x\u00e9\n"]}`,
		`{"a": "\ud83d\ude00"}`, `"\xff"`, `{"a" 1}`, `[1,]`, `01`, `-`, `1.`, `1e`, `{"a":1}x`, "\"\x01\"",
		`{"a":{"b":{"c":[[[]]]}}}`, `  "s"  `, `{"k": "v", "k2": "\\\/"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		text, perr := stripComments(data)
		if perr != nil {
			return
		}
		root, err := buildTree(text)
		valid := json.Valid(text)
		// Deep nesting and duplicate keys are refused by design.
		if err != nil && valid && (depth(text) > maxDepth || strings.HasPrefix(err.msg, "duplicate key")) {
			return
		}
		require.Equal(t, valid, err == nil, "scanner accepted=%v, encoding/json valid=%v, err=%v\n%q", err == nil, valid, err, text)
		if err != nil {
			return
		}
		var want any
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.UseNumber()
		require.NoError(t, dec.Decode(&want), "encoding/json")
		got := toAny(root)
		require.True(t, equalJSON(got, want), "values differ: %#v vs %#v", got, want)
	})
}

func depth(b []byte) int {
	d, max := 0, 0
	for _, c := range b {
		switch c {
		case '[', '{':
			d++
			if d > max {
				max = d
			}
		case ']', '}':
			d--
		}
	}
	return max
}

func toAny(n *node) any {
	switch n.kind {
	case kindString:
		return n.str
	case kindNumber:
		return json.Number(n.str)
	case kindBool:
		return n.boolean
	case kindArray:
		out := []any{}
		for _, e := range n.elems {
			out = append(out, toAny(e))
		}
		return out
	case kindObject:
		out := map[string]any{}
		for _, m := range n.members {
			out[m.key] = toAny(m.val)
		}
		return out
	}
	return nil
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
