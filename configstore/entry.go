package configstore

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jszwec/csvutil"
)

// Entry is one version of a named configuration entry of an agent: the
// current state (configdb's Store.Get, Store.List), a past one
// (Store.History) or a change (Store.Changes), as the store keeps it and
// as an agent receives it. A deletion is an Entry with Deleted set, no Kind
// and no Data: a tombstone.
type Entry struct {
	// Identity is the agent identity the entry belongs to.
	Identity string
	// Name names the entry within the identity, e.g. "config" or
	// "devices/boiler": 1..MaxName bytes of UTF-8 without control
	// characters, not beginning or ending with '/' or a space.
	Name string
	// Kind is the format of Data; empty for a tombstone.
	Kind Kind
	// Data is the text exactly as it was stored.
	Data []byte
	// Version is 1 for the first write of the name and grows by one per
	// change of it: put, delete or rollback. A put after a delete goes on
	// from the tombstone's version.
	Version uint64
	// Revision is the identity's change counter after this change: 1 for
	// the identity's first change, one more for each change of any of its
	// entries. It is the position in configdb's Store.Changes.
	Revision uint64
	// User is who made the change (the authenticated user id).
	User string
	// Time is when the change was made, in UTC.
	Time time.Time
	// Deleted marks a tombstone.
	Deleted bool
}

// Value returns the entry's data decoded as VOLTTRON hands it to an agent:
// for JSON the decoded value (map[string]any or []any, with numbers as
// json.Number so that no integer loses precision); for CSV the rows as
// []map[string]string keyed by the header row; for raw the text as a
// string. A tombstone gives ErrNotFound.
func (e Entry) Value() (any, error) {
	switch {
	case e.Deleted:
		return nil, e.deletedError()
	case e.Kind == KindRaw:
		return string(e.Data), nil
	case e.Kind == KindCSV:
		return e.csvRows()
	}
	var v any
	if err := e.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Decode decodes the entry's data into v:
//   - JSON: as encoding/json.Unmarshal does, with numbers decoded into an
//     interface value as json.Number;
//   - CSV: v is a *[]map[string]string (rows keyed by header) or a pointer
//     to a slice of structs, whose fields are matched to header names by a
//     `csv:"name"` tag or else by the exact field name (as
//     github.com/jszwec/csvutil does); fields are converted to the field's
//     type;
//   - raw: v is a *string or a *[]byte.
//
// A value that does not fit v's type gives an *InputError naming the line
// and column (File is the entry name). A tombstone gives ErrNotFound.
func (e Entry) Decode(v any) error {
	if e.Deleted {
		return e.deletedError()
	}
	switch e.Kind {
	case KindJSON:
		return e.decodeJSON(v)
	case KindCSV:
		return e.decodeCSV(v)
	case KindRaw:
		switch p := v.(type) {
		case *string:
			*p = string(e.Data)
			return nil
		case *[]byte:
			*p = bytes.Clone(e.Data)
			return nil
		}
		return fmt.Errorf("configstore: decode raw entry %q into %T: %w: want *string or *[]byte", e.Name, v, ErrInvalid)
	}
	return CheckKind(e.Kind, e.Name)
}

func (e Entry) deletedError() error {
	return fmt.Errorf("configstore: entry %q of %q is deleted (version %d): %w", e.Name, e.Identity, e.Version, ErrNotFound)
}

func (e Entry) decodeJSON(v any) error {
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.UseNumber()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return posError(e.Name, e.Data, valueStart(e.Data, te.Offset), "cannot decode JSON: "+err.Error())
	}
	var se *json.SyntaxError
	if errors.As(err, &se) { // only if the stored data was not validated
		return posError(e.Name, e.Data, max(int(se.Offset)-1, 0), "invalid JSON: "+err.Error())
	}
	return fmt.Errorf("configstore: decode JSON entry %q into %T: %w", e.Name, v, err)
}

// valueStart returns the offset of the first byte of the JSON token that
// ends at or after end (encoding/json reports where a value that did not
// fit ends; a reader wants where it starts).
func valueStart(data []byte, end int64) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		start := dec.InputOffset()
		if _, err := dec.Token(); err != nil {
			return max(int(end)-1, 0)
		}
		if dec.InputOffset() >= end {
			skip := bytes.IndexFunc(data[start:], func(r rune) bool { return !strings.ContainsRune(" \t\r\n:,", r) })
			return int(start) + max(skip, 0)
		}
	}
}

func (e Entry) decodeCSV(v any) error {
	if p, ok := v.(*[]map[string]string); ok {
		rows, err := e.csvRows()
		if err != nil {
			return err
		}
		*p = rows
		return nil
	}
	err := csvutil.Unmarshal(e.Data, v)
	if err == nil {
		return nil
	}
	var de *csvutil.DecodeError
	if errors.As(err, &de) {
		return &InputError{File: e.Name, Line: de.Line, Column: de.Column,
			Msg: fmt.Sprintf("cannot decode CSV column %q: %v", de.Field, de.Err)}
	}
	return fmt.Errorf("configstore: decode CSV entry %q into %T: %w", e.Name, v, err)
}

// csvRows returns the rows keyed by the header, as Python's csv.DictReader
// (VOLTTRON's parser) does.
func (e Entry) csvRows() ([]map[string]string, error) {
	r := csv.NewReader(bytes.NewReader(e.Data))
	header, err := r.Read()
	if err != nil && err != io.EOF {
		return nil, csvError(e.Name, err)
	}
	rows := []map[string]string{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, csvError(e.Name, err)
		}
		row := make(map[string]string, len(header))
		for i, h := range header {
			row[h] = rec[i]
		}
		rows = append(rows, row)
	}
}
