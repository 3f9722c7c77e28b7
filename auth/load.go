package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"unicode/utf8"
)

// MaxFileSize is the largest auth.json accepted (64 MiB: far beyond any
// real policy, small enough that a runaway file cannot exhaust memory).
const MaxFileSize = 64 << 20

// Parse validates and compiles an auth.json document. name is used in error
// messages (usually the file name). The document is accepted whole or not at
// all: any error is a *ValidationError (use errors.As) naming the line,
// column and JSON path. An empty or comment-only document is an error
// wrapping ErrNoPolicy.
//
// The policy returned has generation 1; a Store assigns later generations.
func Parse(name string, data []byte) (*Policy, error) {
	f, err := ParseFile(name, data)
	if err != nil {
		return nil, err
	}
	return f.Compile(name)
}

// LoadFile reads and compiles the auth.json file at path. A missing file or
// an empty (white space or comments only) file yields a closed policy, which
// admits nobody, together with an error wrapping ErrNoPolicy so that the
// caller can log it. Any other error returns a nil policy.
func LoadFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return closedPolicy(path), fmt.Errorf("%w: %s does not exist; nobody is admitted: %w", ErrNoPolicy, path, err)
		}
		return nil, fmt.Errorf("auth policy %s: %w", path, err)
	}
	p, err := Parse(path, data)
	if err != nil {
		if errors.Is(err, ErrNoPolicy) {
			return closedPolicy(path), err
		}
		return nil, err
	}
	return p, nil
}

// ParseFile parses and structurally validates an auth.json document into
// its editable model, without compiling it. Unknown keys, wrong types and
// malformed values are reported here; references between sections (an
// undefined role, a duplicate user id) are checked by Compile.
func ParseFile(name string, data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, &ValidationError{File: name, Msg: fmt.Sprintf("file is %d bytes; the limit is %d", len(data), MaxFileSize)}
	}
	text, err := stripComments(data)
	if err != nil {
		return nil, err.at(name, data)
	}
	if len(bytes.TrimSpace(text)) == 0 {
		return nil, &ValidationError{File: name, Msg: "empty document: no policy (nobody is admitted)", Err: ErrNoPolicy}
	}
	root, perr := buildTree(text)
	if perr != nil {
		return nil, perr.at(name, data)
	}
	d := &decoder{name: name, data: data}
	f := d.file(root)
	if d.err != nil {
		d = &decoder{name: name, data: data, paths: true}
		d.file(root)
		if d.err == nil { // cannot happen: the passes differ only in paths
			d.err = &ValidationError{File: name, Msg: "internal error: inconsistent validation"}
		}
		return nil, d.err
	}
	f.name = name
	f.data = data
	f.root = root
	return f, nil
}

// posError is an error at a byte offset, converted to a ValidationError once
// the file name is known.
type posError struct {
	off  int
	path string
	msg  string
}

func (e *posError) at(name string, data []byte) *ValidationError {
	line, col := lineCol(data, e.off)
	return &ValidationError{File: name, Line: line, Column: col, Path: e.path, Msg: e.msg}
}

// lineCol converts a byte offset to a 1-based line and column; the column
// counts runes.
func lineCol(data []byte, off int) (line, col int) {
	if off > len(data) {
		off = len(data)
	}
	if off < 0 {
		off = 0
	}
	line = 1 + bytes.Count(data[:off], []byte{'\n'})
	start := bytes.LastIndexByte(data[:off], '\n') + 1
	col = 1 + utf8.RuneCount(data[start:off])
	return line, col
}

// stripComments returns a copy of data in which // and /* */ comments and
// trailing commas (before } or ]) are replaced by spaces, so that byte
// offsets (and so lines and columns) are unchanged. Strings are respected.
func stripComments(data []byte) ([]byte, *posError) {
	out := make([]byte, len(data))
	copy(out, data)
	if len(out) >= 3 && out[0] == 0xEF && out[1] == 0xBB && out[2] == 0xBF {
		out[0], out[1], out[2] = ' ', ' ', ' ' // a UTF-8 byte order mark
	}
	inString, escaped := false, false
	pendingComma := -1
	for i := 0; i < len(out); i++ {
		c := out[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
			pendingComma = -1
		case c == '/' && i+1 < len(out) && out[i+1] == '/':
			for i < len(out) && out[i] != '\n' {
				out[i] = ' '
				i++
			}
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			start := i
			out[i], out[i+1] = ' ', ' '
			i += 2
			for ; ; i++ {
				if i+1 >= len(out) {
					return nil, &posError{off: start, msg: "unterminated /* comment"}
				}
				if out[i] == '*' && out[i+1] == '/' {
					out[i], out[i+1] = ' ', ' '
					i++
					break
				}
				if out[i] != '\n' {
					out[i] = ' '
				}
			}
		case c == ',':
			pendingComma = i
		case c == '}' || c == ']':
			if pendingComma >= 0 {
				out[pendingComma] = ' '
			}
			pendingComma = -1
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			pendingComma = -1
		}
	}
	return out, nil
}

// nodeKind is the JSON type of a node.
type nodeKind uint8

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k nodeKind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

// node is a JSON value with the byte offsets where it starts and ends.
type node struct {
	kind    nodeKind
	off     int
	end     int      // offset just past the value's last byte
	str     string   // kindString; kindNumber holds the literal
	boolean bool     // kindBool
	elems   []*node  // kindArray
	members []member // kindObject, in document order
}

// member is one key of a JSON object.
type member struct {
	key string
	off int // offset of the key
	val *node
}
