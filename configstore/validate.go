package configstore

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// Kind is the format of an entry's data.
type Kind string

// The kinds of entries, as VOLTTRON names them.
const (
	// KindJSON is a JSON object or array (VOLTTRON refuses other top-level
	// values, and so does Validate).
	KindJSON Kind = "json"
	// KindCSV is CSV text with a header row; every row has as many fields
	// as the header.
	KindCSV Kind = "csv"
	// KindRaw is any UTF-8 text.
	KindRaw Kind = "raw"
)

// Limits of names.
const (
	// MaxIdentity is the longest agent identity, in bytes (the platform's
	// bound on identities).
	MaxIdentity = 128
	// MaxName is the longest entry name, in bytes.
	MaxName = 256
	// MaxUser is the longest user id recorded with a change, in bytes.
	MaxUser = 256
)

// Sentinel errors of the data model, shared by the store (package
// configdb) and the agent SDK; match them with errors.Is. The store's own
// conditions (a locked, closed or corrupt file) are configdb's errors.
var (
	// ErrNotFound: the entry, or the asked version of it, does not exist
	// (or is deleted).
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the input was refused. Errors wrapping it are
	// *InputError values, which say where.
	ErrInvalid = errors.New("invalid input")
)

// InputError says why and where input was refused. It wraps ErrInvalid.
//
// Line and Column are 1-based; Column counts bytes, as Go's compilers do.
// Both are zero when the error is not about a position (a bad name, an
// unknown kind, data too large). File is the name the data was given under:
// the file name passed to Validate, or the entry name for configdb's
// Store.Put and Store.Rollback; a caller that knows the file may set it
// before printing.
type InputError struct {
	// File is the file or entry name the input came under.
	File string
	// Line is the 1-based line of the problem, 0 if none.
	Line int
	// Column is the 1-based byte column of the problem, 0 if none.
	Column int
	// Msg says what is wrong.
	Msg string
}

// Error reads "file:line:column: msg", "file: msg" or "msg".
func (e *InputError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	default:
		return e.Msg
	}
}

// Unwrap returns ErrInvalid.
func (e *InputError) Unwrap() error { return ErrInvalid }

// Validate checks that data is well-formed for kind: valid UTF-8 for every
// kind; for JSON, one JSON object or array; for CSV, a header row and rows
// of as many fields, with quotes used by RFC 4180's rules. A refusal is an
// *InputError naming file, line and column. configdb's Store.Put runs
// Validate after checking the store's size bound; the agent SDK runs it
// before it sends a Put.
func Validate(kind Kind, file string, data []byte) error {
	if err := CheckKind(kind, file); err != nil {
		return err
	}
	if i := invalidUTF8(data); i >= 0 {
		return posError(file, data, i, fmt.Sprintf("invalid UTF-8: byte 0x%02x at offset %d", data[i], i))
	}
	switch kind {
	case KindJSON:
		return validateJSON(file, data)
	case KindCSV:
		return validateCSV(file, data)
	}
	return nil
}

// CheckKind checks that kind is one of KindJSON, KindCSV and KindRaw. A
// refusal is an *InputError naming file, without a position.
func CheckKind(kind Kind, file string) error {
	switch kind {
	case KindJSON, KindCSV, KindRaw:
		return nil
	}
	return &InputError{File: file, Msg: fmt.Sprintf("unknown kind %q (want json, csv or raw)", kind)}
}

// invalidUTF8 returns the offset of the first byte that is not valid UTF-8,
// or -1.
func invalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		if data[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

func validateJSON(file string, data []byte) error {
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if !errors.As(err, &se) {
			return &InputError{File: file, Msg: "invalid JSON: " + err.Error()}
		}
		// Offset counts the bytes read, the offending one included; at
		// the end of the input, point just after the last non-space byte.
		i := int(se.Offset) - 1
		if se.Offset >= int64(len(data)) && se.Error() == "unexpected end of JSON input" {
			i = len(bytes.TrimRight(data, " \t\r\n"))
		}
		return posError(file, data, max(i, 0), "invalid JSON: "+se.Error())
	}
	i := len(data) - len(bytes.TrimLeft(data, " \t\r\n"))
	var what string
	switch data[i] {
	case '{', '[':
		return nil
	case '"':
		what = "a string"
	case 't', 'f':
		what = "a boolean"
	case 'n':
		what = "null"
	default:
		what = "a number"
	}
	return posError(file, data, i, "invalid JSON: a configuration must be an object or an array, not "+what)
}

func validateCSV(file string, data []byte) error {
	r := csv.NewReader(bytes.NewReader(data))
	header, err := r.Read()
	if err == io.EOF {
		return &InputError{File: file, Msg: "invalid CSV: no header row"}
	}
	if err != nil {
		return csvError(file, err)
	}
	seen := make(map[string]int, len(header))
	for i, h := range header {
		if j, dup := seen[h]; dup {
			line, col := r.FieldPos(i)
			return &InputError{File: file, Line: line, Column: col,
				Msg: fmt.Sprintf("invalid CSV: column %d repeats the header name %q of column %d", i+1, h, j+1)}
		}
		seen[h] = i
	}
	r.ReuseRecord = true
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, csv.ErrFieldCount) {
			var pe *csv.ParseError
			errors.As(err, &pe)
			return &InputError{File: file, Line: pe.StartLine, Column: 1,
				Msg: fmt.Sprintf("invalid CSV: row has %d fields, the header has %d", len(rec), len(header))}
		}
		if err != nil {
			return csvError(file, err)
		}
	}
}

func csvError(file string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		msg := "invalid CSV: " + pe.Err.Error()
		if pe.StartLine != pe.Line {
			msg += fmt.Sprintf(" (in the record that starts on line %d)", pe.StartLine)
		}
		return &InputError{File: file, Line: pe.Line, Column: pe.Column, Msg: msg}
	}
	return &InputError{File: file, Msg: "invalid CSV: " + err.Error()}
}

// posError makes an InputError at byte offset i of data.
func posError(file string, data []byte, i int, msg string) *InputError {
	i = min(i, len(data))
	before := data[:i]
	line := 1 + bytes.Count(before, []byte{'\n'})
	col := i - bytes.LastIndexByte(before, '\n')
	return &InputError{File: file, Line: line, Column: col, Msg: msg}
}

// checkText checks an identity, entry name or user id: at most maxLen
// bytes (and at least one unless empty is allowed), UTF-8, no control
// characters.
func checkText(what, noun, s string, maxLen int, emptyOK bool) error {
	var why string
	switch {
	case s == "" && !emptyOK:
		why = fmt.Sprintf("must be 1..%d bytes", maxLen)
	case len(s) > maxLen:
		why = fmt.Sprintf("is %d bytes, more than %d", len(s), maxLen)
	case !utf8.ValidString(s):
		why = "is not valid UTF-8"
	default:
		for i, r := range s {
			if unicode.IsControl(r) {
				why = fmt.Sprintf("has the control character %U at byte %d", r, i)
				break
			}
		}
	}
	if why == "" {
		return nil
	}
	return &InputError{Msg: fmt.Sprintf("%s %q is not a valid %s: %s", what, s, noun, why)}
}

// CheckIdentity checks an agent identity: 1..MaxIdentity bytes of UTF-8
// without control characters. A refusal is an *InputError that quotes the
// identity and says what is wrong.
func CheckIdentity(identity string) error {
	return checkText("identity", "agent identity", identity, MaxIdentity, false)
}

// CheckName checks an entry name: 1..MaxName bytes of UTF-8 without
// control characters, not beginning or ending with a space or '/' (VOLTTRON
// strips those, so "/config" and "config" would otherwise be two entries
// that VOLTTRON tools see as one). A refusal is an *InputError that quotes
// the name and says what is wrong.
func CheckName(name string) error {
	if err := checkText("name", "entry name", name, MaxName, false); err != nil {
		return err
	}
	if name[0] == '/' || name[0] == ' ' || name[len(name)-1] == '/' || name[len(name)-1] == ' ' {
		return &InputError{Msg: fmt.Sprintf("name %q is not a valid entry name: must not begin or end with '/' or a space", name)}
	}
	return nil
}

// CheckUser checks the user id recorded with a change: at most MaxUser
// bytes of UTF-8 without control characters; empty is allowed. A refusal
// is an *InputError that quotes the id and says what is wrong.
func CheckUser(user string) error {
	return checkText("user", "user id", user, MaxUser, true)
}
