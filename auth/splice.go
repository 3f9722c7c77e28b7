package auth

import (
	"bytes"
	"sort"
	"strings"
)

// This file turns an edit of the File model into targeted splices of the
// file's text, so that comments and formatting outside the changed values
// survive. The model before and after the change is marshalled to its
// canonical JSON (File.Marshal) and both are scanned into trees; walking
// them beside the tree of the original text finds the values that changed.
// The text tree's nodes know their byte spans, so each change is the
// replacement of one span, the removal of one member or element, or an
// insertion before a closing bracket.

// textEdit replaces data[start:end] with text.
type textEdit struct {
	start, end int
	text       string
}

type splicer struct {
	data  []byte // the original text
	after []byte // canonical JSON of the model after the change
	unit  string // one level of indentation
	edits []textEdit
}

// spliceEdit returns the original text with the change from before to
// after (canonical JSON of the model) applied, and false when it cannot:
// the caller then renders the whole file.
func spliceEdit(data []byte, root *node, before, after []byte) ([]byte, bool) {
	if bytes.Equal(before, after) {
		return data, true
	}
	bt, perr := buildTree(before)
	if perr != nil {
		return nil, false
	}
	at, perr := buildTree(after)
	if perr != nil || root.kind != kindObject {
		return nil, false
	}
	sp := &splicer{data: data, after: after, unit: indentUnit(data, root)}
	sp.value(root, bt, at)
	out, ok := sp.apply()
	if !ok {
		return nil, false
	}
	// The result must say exactly what the model says.
	f, err := ParseFile("", out)
	if err != nil {
		return nil, false
	}
	got, err := f.Marshal()
	if err != nil || !bytes.Equal(got, after) {
		return nil, false
	}
	return out, true
}

// apply applies the edits, which must not overlap.
func (sp *splicer) apply() ([]byte, bool) {
	sort.SliceStable(sp.edits, func(i, j int) bool { return sp.edits[i].start < sp.edits[j].start })
	var out bytes.Buffer
	pos := 0
	for _, e := range sp.edits {
		if e.start < pos || e.end < e.start || e.end > len(sp.data) {
			return nil, false
		}
		out.Write(sp.data[pos:e.start])
		out.WriteString(e.text)
		pos = e.end
	}
	out.Write(sp.data[pos:])
	return out.Bytes(), true
}

func (sp *splicer) add(start, end int, text string) {
	sp.edits = append(sp.edits, textEdit{start: start, end: end, text: text})
}

// value makes text node t, which says what o says (canonical before), say
// what n says (canonical after). o is nil when the canonical form omits
// the value (an empty list, a null).
func (sp *splicer) value(t, o, n *node) {
	if o != nil && nodeEqual(o, n) {
		return
	}
	switch {
	case o == nil || t.kind != o.kind || o.kind != n.kind:
		sp.replace(t, n)
	case n.kind == kindObject:
		sp.object(t, o, n)
	case n.kind == kindArray && len(t.elems) == len(o.elems):
		sp.array(t, o, n)
	default:
		sp.replace(t, n)
	}
}

// replace replaces t's span with n rendered at t's indentation.
func (sp *splicer) replace(t, n *node) {
	sp.add(t.off, t.end, sp.render(n, lineIndent(sp.data, t.off)))
}

// plan says what happens to each item (member or element) of a text
// container: kept as is, edited (recurse into it), or removed; and what is
// appended after the last one.
type plan struct {
	start   []int   // where each item starts: its key, or the element
	end     []int   // where its value ends
	edit    []*node // the old and new canonical values of an edited item
	editNew []*node
	removed []bool
	addKeys []string // JSON text of the appended members' keys (objects)
	addVals []*node
}

func newPlan(n int) *plan {
	return &plan{start: make([]int, n), end: make([]int, n), edit: make([]*node, n),
		editNew: make([]*node, n), removed: make([]bool, n)}
}

func memberValue(n *node, key string) *node {
	if n == nil {
		return nil
	}
	for _, m := range n.members {
		if m.key == key {
			return m.val
		}
	}
	return nil
}

// object edits the members of t: changed values in place, members gone
// from the model removed, new members appended.
func (sp *splicer) object(t, o, n *node) {
	p := newPlan(len(t.members))
	inText := map[string]bool{}
	for i, m := range t.members {
		inText[m.key] = true
		p.start[i], p.end[i] = m.off, m.val.end
		ov, nv := memberValue(o, m.key), memberValue(n, m.key)
		switch {
		case nv == nil && ov != nil:
			p.removed[i] = true
		case nv == nil:
			// Absent from the model before and after (a null, an empty
			// list): the text stays.
		default:
			p.edit[i], p.editNew[i] = ov, nv
		}
	}
	for _, m := range n.members {
		if !inText[m.key] {
			k, _ := marshalNoHTML(m.key)
			p.addKeys = append(p.addKeys, string(k))
			p.addVals = append(p.addVals, m.val)
		}
	}
	sp.container(t, n, p, func(i int) *node { return t.members[i].val })
}

// array edits the elements of t: equal elements are matched in order, the
// unmatched ones between two matches are edits of each other, the rest are
// removed or appended.
func (sp *splicer) array(t, o, n *node) {
	p := newPlan(len(t.elems))
	for i, e := range t.elems {
		p.start[i], p.end[i] = e.off, e.end
	}
	oi, ni := 0, 0
	middle := false // an element inserted before a kept one
	gap := func(oEnd, nEnd int) {
		for ; oi < oEnd && ni < nEnd; oi, ni = oi+1, ni+1 {
			p.edit[oi], p.editNew[oi] = o.elems[oi], n.elems[ni]
		}
		for ; oi < oEnd; oi++ {
			p.removed[oi] = true
		}
		for ; ni < nEnd; ni++ {
			p.addVals = append(p.addVals, n.elems[ni])
			middle = middle || oEnd < len(o.elems)
		}
	}
	for _, pr := range align(o.elems, n.elems) {
		gap(pr.o, pr.n)
		oi, ni = pr.o+1, pr.n+1
	}
	gap(len(o.elems), len(n.elems))
	if middle {
		sp.replace(t, n)
		return
	}
	sp.container(t, n, p, func(i int) *node { return t.elems[i] })
}

// container emits the edits of plan p for container t (whose new value is
// n).
func (sp *splicer) container(t, n *node, p *plan, val func(int) *node) {
	last := len(p.removed) - 1
	if len(p.addVals) > 0 && (last < 0 || p.removed[last]) {
		// Appending into an empty container or after a removed item:
		// render the container.
		sp.replace(t, n)
		return
	}
	for i := range p.removed {
		if p.editNew[i] != nil {
			sp.value(val(i), p.edit[i], p.editNew[i])
		}
	}
	sp.remove(p)
	if len(p.addVals) > 0 {
		sp.append(t, p)
	}
}

// remove removes the items marked in p. An item alone on its lines goes
// with its lines, the // comment lines just above it and a comment that
// ends its last line; the comma of the last item kept goes when every item
// after it is removed.
func (sp *splicer) remove(p *plan) {
	lastKept := -1
	for i, r := range p.removed {
		if !r {
			lastKept = i
		}
	}
	d := sp.data
	for i, r := range p.removed {
		if !r {
			continue
		}
		start, end := p.start[i], p.end[i]
		c := skipBlank(d, end, true)
		hasComma := c < len(d) && d[c] == ','
		if hasComma {
			end = c + 1
		}
		eol := restOfLine(d, end)
		if ls := lineStart(d, start); eol >= 0 && onlySpace(d[ls:start]) {
			start, end = commentLinesAbove(d, ls), eol
		} else {
			end = skipSpaces(d, end)
		}
		sp.add(start, end, "")
		if i == len(p.removed)-1 && !hasComma && lastKept >= 0 {
			// The kept item before the removed tail loses its comma.
			if c := skipBlank(d, p.end[lastKept], true); c < len(d) && d[c] == ',' {
				sp.add(c, c+1, "")
			}
		}
	}
}

// append adds p's new items after the last item of t.
func (sp *splicer) append(t *node, p *plan) {
	d := sp.data
	last := len(p.start) - 1
	end := p.end[last]
	c := skipBlank(d, end, true)
	trailing := c < len(d) && d[c] == ','
	multiline := bytes.IndexByte(d[end:t.end], '\n') >= 0
	indent := lineIndent(d, p.start[last])
	itemText := func(k int) string {
		ind := indent
		if !multiline {
			ind = ""
		}
		v := sp.render(p.addVals[k], ind)
		if p.addKeys != nil {
			return p.addKeys[k] + ": " + v
		}
		return v
	}
	var b strings.Builder
	if !multiline {
		for k := range p.addVals {
			if k > 0 || !trailing {
				b.WriteString(", ")
			} else {
				b.WriteString(" ")
			}
			b.WriteString(itemText(k))
		}
		at := end
		if trailing {
			at = c + 1
		}
		sp.add(at, at, b.String())
		return
	}
	// One item per line, after the line of the last item (and its comment).
	at := end
	if trailing {
		at = c + 1
	}
	if eol := restOfLine(d, at); eol >= 0 {
		if !trailing {
			sp.add(end, end, ",")
		}
		for k := range p.addVals {
			if k > 0 {
				b.WriteString(",")
			}
			b.WriteString("\n" + indent + itemText(k))
		}
		// Before the newline that ends the line.
		nl := eol
		if nl > 0 && d[nl-1] == '\n' {
			nl--
			if nl > 0 && d[nl-1] == '\r' {
				nl--
			}
		}
		sp.add(nl, nl, b.String())
		return
	}
	for k := range p.addVals {
		if k > 0 || !trailing {
			b.WriteString(",")
		}
		b.WriteString("\n" + indent + itemText(k))
	}
	sp.add(at, at, b.String())
}

// pair is a matched element: index in the old list and in the new one.
type pair struct{ o, n int }

// align matches equal elements of a and b in order (a longest common
// subsequence after stripping the common prefix and suffix; past a size
// bound only the prefix and suffix are matched).
func align(a, b []*node) []pair {
	var out []pair
	i := 0
	for i < len(a) && i < len(b) && nodeEqual(a[i], b[i]) {
		out = append(out, pair{i, i})
		i++
	}
	ea, eb := len(a), len(b)
	var suffix []pair
	for ea > i && eb > i && nodeEqual(a[ea-1], b[eb-1]) {
		ea--
		eb--
		suffix = append(suffix, pair{ea, eb})
	}
	ma, mb := a[i:ea], b[i:eb]
	if len(ma) > 0 && len(mb) > 0 && len(ma)*len(mb) <= 1<<16 {
		l := make([][]int, len(ma)+1)
		for x := range l {
			l[x] = make([]int, len(mb)+1)
		}
		for x := len(ma) - 1; x >= 0; x-- {
			for y := len(mb) - 1; y >= 0; y-- {
				if nodeEqual(ma[x], mb[y]) {
					l[x][y] = l[x+1][y+1] + 1
				} else {
					l[x][y] = max(l[x+1][y], l[x][y+1])
				}
			}
		}
		for x, y := 0, 0; x < len(ma) && y < len(mb); {
			switch {
			case nodeEqual(ma[x], mb[y]):
				out = append(out, pair{i + x, i + y})
				x++
				y++
			case l[x+1][y] >= l[x][y+1]:
				x++
			default:
				y++
			}
		}
	}
	for k := len(suffix) - 1; k >= 0; k-- {
		out = append(out, suffix[k])
	}
	return out
}

// nodeEqual reports whether two canonical values are equal.
func nodeEqual(a, b *node) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.kind != b.kind || a.str != b.str || a.boolean != b.boolean ||
		len(a.elems) != len(b.elems) || len(a.members) != len(b.members) {
		return false
	}
	for i := range a.elems {
		if !nodeEqual(a.elems[i], b.elems[i]) {
			return false
		}
	}
	for i := range a.members {
		if a.members[i].key != b.members[i].key || !nodeEqual(a.members[i].val, b.members[i].val) {
			return false
		}
	}
	return true
}

// render writes canonical value n (from sp.after) as JSON for a line
// indented by indent: objects one member per line, short lists of scalars
// on one line.
func (sp *splicer) render(n *node, indent string) string {
	var b strings.Builder
	sp.renderTo(&b, n, indent)
	return b.String()
}

func (sp *splicer) renderTo(b *strings.Builder, n *node, indent string) {
	switch n.kind {
	case kindObject:
		if len(n.members) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{")
		for i, m := range n.members {
			if i > 0 {
				b.WriteString(",")
			}
			k, _ := marshalNoHTML(m.key)
			b.WriteString("\n" + indent + sp.unit)
			b.Write(k)
			b.WriteString(": ")
			sp.renderTo(b, m.val, indent+sp.unit)
		}
		b.WriteString("\n" + indent + "}")
	case kindArray:
		if len(n.elems) == 0 {
			b.WriteString("[]")
			return
		}
		if inline, ok := sp.inlineScalars(n); ok {
			b.WriteString(inline)
			return
		}
		b.WriteString("[")
		for i, e := range n.elems {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("\n" + indent + sp.unit)
			sp.renderTo(b, e, indent+sp.unit)
		}
		b.WriteString("\n" + indent + "]")
	default:
		b.Write(sp.after[n.off:n.end])
	}
}

// inlineScalars renders a list of scalars on one line when it is short.
func (sp *splicer) inlineScalars(n *node) (string, bool) {
	parts := make([]string, len(n.elems))
	total := 0
	for i, e := range n.elems {
		if e.kind == kindObject || e.kind == kindArray {
			return "", false
		}
		parts[i] = string(sp.after[e.off:e.end])
		total += len(parts[i]) + 2
	}
	if total > 72 {
		return "", false
	}
	return "[" + strings.Join(parts, ", ") + "]", true
}

// indentUnit guesses the file's indentation step from its first indented
// member; two spaces by default.
func indentUnit(data []byte, root *node) string {
	for _, m := range root.members {
		if ind := lineIndent(data, m.off); ind != "" && lineStart(data, m.off)+len(ind) == m.off {
			return ind
		}
	}
	return "  "
}

// lineStart is the offset of the start of the line holding off.
func lineStart(d []byte, off int) int { return bytes.LastIndexByte(d[:off], '\n') + 1 }

// lineIndent is the leading white space of the line holding off.
func lineIndent(d []byte, off int) string {
	s := lineStart(d, off)
	e := s
	for e < len(d) && (d[e] == ' ' || d[e] == '\t') {
		e++
	}
	return string(d[s:e])
}

func onlySpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// commentLinesAbove moves the start of line ls up over the lines just
// above it that hold only a // comment: they describe the item below.
func commentLinesAbove(d []byte, ls int) int {
	for ls > 0 {
		prev := lineStart(d, ls-1)
		line := bytes.TrimSpace(d[prev:ls])
		if !bytes.HasPrefix(line, []byte("//")) {
			return ls
		}
		ls = prev
	}
	return ls
}

// skipSpaces skips spaces and tabs.
func skipSpaces(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t') {
		i++
	}
	return i
}

// skipBlank skips white space and, when comments is set, comments.
func skipBlank(d []byte, i int, comments bool) int {
	for i < len(d) {
		switch {
		case d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r':
			i++
		case comments && bytes.HasPrefix(d[i:], []byte("//")):
			for i < len(d) && d[i] != '\n' {
				i++
			}
		case comments && bytes.HasPrefix(d[i:], []byte("/*")):
			e := bytes.Index(d[i+2:], []byte("*/"))
			if e < 0 {
				return len(d)
			}
			i += e + 4
		default:
			return i
		}
	}
	return i
}

// restOfLine returns the offset just past the newline ending the line of
// i when the rest of that line holds only white space and perhaps a //
// comment, and -1 otherwise.
func restOfLine(d []byte, i int) int {
	i = skipSpaces(d, i)
	if bytes.HasPrefix(d[i:], []byte("//")) {
		for i < len(d) && d[i] != '\n' {
			i++
		}
	}
	if i < len(d) && d[i] == '\r' {
		i++
	}
	switch {
	case i >= len(d):
		return len(d)
	case d[i] == '\n':
		return i + 1
	}
	return -1
}
