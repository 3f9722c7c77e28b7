package auth

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 64

// scanner parses JSON into a tree of nodes that remember their byte
// offsets, for error messages with lines and columns. It accepts exactly
// the JSON grammar of RFC 8259 (comments and trailing commas are removed
// beforehand by stripComments, which keeps offsets unchanged); strings with
// escapes or non-UTF-8 bytes are decoded by encoding/json so that their
// values are the same as encoding/json would give. It is a hand-written
// scanner rather than a json.Decoder token walk because the token walk
// alone took most of the time budget of parsing a 10,000-user file.
type scanner struct {
	text []byte
	pos  int
	slab []node // nodes are allocated in blocks

	// Scratch stacks: the members and elements of the objects and arrays
	// being read, copied into exactly sized slices when each one ends.
	mstack []member
	estack []*node
	mslab  []member
	eslab  []*node

	// intern shares the text of short strings that repeat (keys, role and
	// capability names), which saves most string allocations.
	intern map[string]string
}

const maxIntern = 8192

func (s *scanner) internString(raw []byte) string {
	if len(raw) > 40 {
		return string(raw)
	}
	if v, ok := s.intern[string(raw)]; ok {
		return v
	}
	v := string(raw)
	if s.intern == nil {
		s.intern = make(map[string]string, 256)
	}
	if len(s.intern) < maxIntern {
		s.intern[v] = v
	}
	return v
}

func (s *scanner) elemSlice(from []*node) []*node {
	if len(s.eslab) < len(from) {
		s.eslab = make([]*node, max(len(from), 1024))
	}
	out := s.eslab[:len(from):len(from)]
	s.eslab = s.eslab[len(from):]
	copy(out, from)
	return out
}

func (s *scanner) memberSlice(from []member) []member {
	if len(s.mslab) < len(from) {
		s.mslab = make([]member, max(len(from), 512))
	}
	out := s.mslab[:len(from):len(from)]
	s.mslab = s.mslab[len(from):]
	copy(out, from)
	return out
}

func (s *scanner) newNode() *node {
	if len(s.slab) == 0 {
		s.slab = make([]node, 256)
	}
	n := &s.slab[0]
	s.slab = s.slab[1:]
	n.off = s.pos
	return n
}

func buildTree(text []byte) (*node, *posError) {
	s := &scanner{text: text}
	s.skipSpace()
	root, err := s.value(0)
	if err != nil {
		return nil, err
	}
	s.skipSpace()
	if s.pos < len(text) {
		return nil, &posError{off: s.pos, msg: "unexpected data after the top-level object"}
	}
	return root, nil
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.text) {
		switch s.text[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) errorf(format string, args ...any) *posError {
	return &posError{off: s.pos, msg: "invalid JSON: " + fmt.Sprintf(format, args...)}
}

func (s *scanner) unexpected(what string) *posError {
	if s.pos >= len(s.text) {
		return s.errorf("unexpected end of document; expected %s", what)
	}
	r, _ := utf8.DecodeRune(s.text[s.pos:])
	return s.errorf("unexpected %q; expected %s", r, what)
}

func (s *scanner) value(depth int) (*node, *posError) {
	n, err := s.value1(depth)
	if n != nil && err == nil {
		n.end = s.pos
	}
	return n, err
}

func (s *scanner) value1(depth int) (*node, *posError) {
	if depth > maxDepth {
		return nil, s.errorf("nesting deeper than %d levels", maxDepth)
	}
	if s.pos >= len(s.text) {
		return nil, s.unexpected("a value")
	}
	n := s.newNode()
	switch c := s.text[s.pos]; {
	case c == '{':
		return n, s.object(n, depth)
	case c == '[':
		return n, s.array(n, depth)
	case c == '"':
		str, err := s.str()
		n.kind, n.str = kindString, str
		return n, err
	case c == 't':
		n.kind, n.boolean = kindBool, true
		return n, s.literal("true")
	case c == 'f':
		n.kind = kindBool
		return n, s.literal("false")
	case c == 'n':
		n.kind = kindNull
		return n, s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		n.kind = kindNumber
		start := s.pos
		if err := s.number(); err != nil {
			return nil, err
		}
		n.str = string(s.text[start:s.pos])
		return n, nil
	}
	return nil, s.unexpected("a value")
}

func (s *scanner) literal(word string) *posError {
	if len(s.text)-s.pos < len(word) || string(s.text[s.pos:s.pos+len(word)]) != word {
		return s.unexpected("a value")
	}
	s.pos += len(word)
	return nil
}

func (s *scanner) digits() int {
	start := s.pos
	for s.pos < len(s.text) && s.text[s.pos] >= '0' && s.text[s.pos] <= '9' {
		s.pos++
	}
	return s.pos - start
}

func (s *scanner) number() *posError {
	if s.text[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.text) && s.text[s.pos] == '0':
		s.pos++
	case s.digits() == 0:
		return s.unexpected("a digit")
	}
	if s.pos < len(s.text) && s.text[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.unexpected("a digit after the decimal point")
		}
	}
	if s.pos < len(s.text) && (s.text[s.pos] == 'e' || s.text[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.text) && (s.text[s.pos] == '+' || s.text[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return s.unexpected("a digit in the exponent")
		}
	}
	return nil
}

// str reads a string starting at the opening quote.
func (s *scanner) str() (string, *posError) {
	start := s.pos
	i := s.pos + 1
	simple := true
	for {
		if i >= len(s.text) {
			s.pos = start
			return "", s.errorf("unterminated string")
		}
		c := s.text[i]
		switch {
		case c == '"':
			raw := s.text[start+1 : i]
			s.pos = i + 1
			if simple || utf8.Valid(raw) && !containsByte(raw, '\\') {
				return s.internString(raw), nil
			}
			var out string
			if err := json.Unmarshal(s.text[start:i+1], &out); err != nil {
				s.pos = start
				return "", s.errorf("bad string: %v", err)
			}
			return out, nil
		case c == '\\':
			simple = false
			i += 2
		case c < 0x20:
			s.pos = i
			return "", s.errorf("control character %#02x in string; write it escaped", c)
		case c >= 0x80:
			simple = false
			i++
		default:
			i++
		}
	}
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

func (s *scanner) array(n *node, depth int) *posError {
	n.kind = kindArray
	s.pos++ // [
	s.skipSpace()
	if s.pos < len(s.text) && s.text[s.pos] == ']' {
		s.pos++
		return nil
	}
	base := len(s.estack)
	defer func() { s.estack = s.estack[:base] }()
	for {
		e, err := s.value(depth + 1)
		if err != nil {
			return err
		}
		s.estack = append(s.estack, e)
		s.skipSpace()
		if s.pos >= len(s.text) {
			return s.unexpected("',' or ']'")
		}
		switch s.text[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case ']':
			s.pos++
			n.elems = s.elemSlice(s.estack[base:])
			return nil
		default:
			return s.unexpected("',' or ']'")
		}
	}
}

func (s *scanner) object(n *node, depth int) *posError {
	n.kind = kindObject
	s.pos++ // {
	s.skipSpace()
	if s.pos < len(s.text) && s.text[s.pos] == '}' {
		s.pos++
		return nil
	}
	var seen map[string]bool // only for large objects
	base := len(s.mstack)
	defer func() { s.mstack = s.mstack[:base] }()
	for {
		if s.pos >= len(s.text) || s.text[s.pos] != '"' {
			return s.unexpected("a string (an object key)")
		}
		koff := s.pos
		key, err := s.str()
		if err != nil {
			return err
		}
		dup := false
		if members := s.mstack[base:]; len(members) < 16 {
			for _, m := range members {
				if m.key == key {
					dup = true
				}
			}
		} else {
			if seen == nil {
				seen = make(map[string]bool, 32)
				for _, m := range members {
					seen[m.key] = true
				}
			}
			dup = seen[key]
			seen[key] = true
		}
		if dup {
			return &posError{off: koff, msg: fmt.Sprintf("duplicate key %q in the same object", key)}
		}
		s.skipSpace()
		if s.pos >= len(s.text) || s.text[s.pos] != ':' {
			return s.unexpected("':' after an object key")
		}
		s.pos++
		s.skipSpace()
		v, err := s.value(depth + 1)
		if err != nil {
			return err
		}
		s.mstack = append(s.mstack, member{key: key, off: koff, val: v})
		s.skipSpace()
		if s.pos >= len(s.text) {
			return s.unexpected("',' or '}'")
		}
		switch s.text[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case '}':
			s.pos++
			n.members = s.memberSlice(s.mstack[base:])
			return nil
		default:
			return s.unexpected("',' or '}'")
		}
	}
}

// lookup finds the node at a JSON path as written by joinKey and joinIndex
// (key, .key, [3], ["key"]), or nil.
func (n *node) lookup(path string) *node {
	for path != "" && n != nil {
		var key string
		switch {
		case path[0] == '.':
			path = path[1:]
			continue
		case strings.HasPrefix(path, `["`):
			end := strings.Index(path, `"]`)
			for end >= 0 && strings.HasSuffix(path[:end], `\`) { // an escaped quote
				next := strings.Index(path[end+1:], `"]`)
				if next < 0 {
					return nil
				}
				end += 1 + next
			}
			if end < 0 {
				return nil
			}
			k, err := strconv.Unquote(path[1 : end+1])
			if err != nil {
				return nil
			}
			key, path = k, path[end+2:]
		case path[0] == '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return nil
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || n.kind != kindArray || i < 0 || i >= len(n.elems) {
				return nil
			}
			n, path = n.elems[i], path[end+1:]
			continue
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			key, path = path[:end], path[end:]
		}
		if n.kind != kindObject {
			return nil
		}
		var next *node
		for _, m := range n.members {
			if m.key == key {
				next = m.val
			}
		}
		n = next
	}
	return n
}
