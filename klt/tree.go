package klt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// kind is the JSON kind of a node.
type kind uint8

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

// node is one JSON value of a decoded document. Numbers keep their
// literal text, objects their keys in file order (duplicates are refused
// while decoding).
type node struct {
	kind kind
	b    bool
	s    string // string value, or the literal of a number
	keys []string
	kids []*node // object values (parallel to keys) or array elements
}

func (n *node) get(key string) *node {
	if n == nil || n.kind != kObject {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.kids[i]
		}
	}
	return nil
}

func (n *node) set(key string, v *node) {
	for i, k := range n.keys {
		if k == key {
			n.kids[i] = v
			return
		}
	}
	n.keys = append(n.keys, key)
	n.kids = append(n.kids, v)
}

func (n *node) del(key string) {
	for i, k := range n.keys {
		if k == key {
			n.keys = slices.Delete(n.keys, i, i+1)
			n.kids = slices.Delete(n.kids, i, i+1)
			return
		}
	}
}

func newObject() *node         { return &node{kind: kObject} }
func strNode(s string) *node   { return &node{kind: kString, s: s} }
func boolNode(b bool) *node    { return &node{kind: kBool, b: b} }
func numNode(lit string) *node { return &node{kind: kNumber, s: lit} }

// limits bound what the decoder accepts.
type limits struct {
	size   int64
	depth  int
	values int
}

// errTooLarge and friends are turned into ValidationErrors by decode.
type limitError struct {
	field, reason string
}

func (e *limitError) Error() string { return e.reason }

// guard counts bytes and checks UTF-8 while the JSON decoder reads.
type guard struct {
	r     io.Reader
	n     int64
	limit int64
	pend  [utf8.UTFMax]byte
	np    int
	err   error
}

func (g *guard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	k, err := g.r.Read(p)
	if k > 0 {
		if g.n+int64(k) > g.limit {
			g.err = &limitError{reason: fmt.Sprintf("the document is larger than the limit of %d bytes", g.limit)}
			return 0, g.err
		}
		if off, ok := g.check(p[:k]); !ok {
			g.err = &limitError{reason: fmt.Sprintf("the document is not valid UTF-8 (byte offset %d)", g.n+int64(off))}
			return 0, g.err
		}
		g.n += int64(k)
	}
	if err == io.EOF && g.np > 0 {
		g.err = &limitError{reason: fmt.Sprintf("the document is not valid UTF-8 (truncated sequence at byte offset %d)", g.n-int64(g.np))}
		return k, g.err
	}
	return k, err
}

// check validates b as the continuation of the bytes seen so far; a
// sequence cut at the end of b is kept for the next call. It returns the
// offset of an invalid byte within b.
func (g *guard) check(b []byte) (int, bool) {
	i := 0
	if g.np > 0 {
		for g.np < len(g.pend) && i < len(b) && !utf8.FullRune(g.pend[:g.np]) {
			g.pend[g.np] = b[i]
			g.np++
			i++
		}
		if !utf8.FullRune(g.pend[:g.np]) {
			return 0, true
		}
		r, size := utf8.DecodeRune(g.pend[:g.np])
		if r == utf8.RuneError && size <= 1 || size != g.np {
			return 0, false
		}
		g.np = 0
	}
	for i < len(b) {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		if !utf8.FullRune(b[i:]) {
			g.np = copy(g.pend[:], b[i:])
			return 0, true
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i, false
		}
		i += size
	}
	return 0, true
}

// decodeTree reads one JSON document from r within lim. Every refusal is
// a *ValidationError (Field "" for the document as a whole, or the dotted
// path of a duplicate key). It reads the input as a stream of tokens, so
// the memory it uses grows only with the values it accepts.
func decodeTree(r io.Reader, lim limits) (*node, error) {
	g := &guard{r: r, limit: lim.size}
	dec := json.NewDecoder(g)
	dec.UseNumber()
	p := &treeParser{dec: dec, lim: lim}
	root, err := p.value("", 1)
	if err != nil {
		return nil, p.wrap(err, g)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return nil, errs.Invalid("", "", "the document has data after its end")
		}
		return nil, p.wrap(err, g)
	}
	return root, nil
}

type treeParser struct {
	dec    *json.Decoder
	lim    limits
	values int
}

func (p *treeParser) wrap(err error, g *guard) error {
	var le *limitError
	if errors.As(err, &le) {
		return errs.Invalid(le.field, "", le.reason)
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve
	}
	if g.err != nil {
		var le *limitError
		if errors.As(g.err, &le) {
			return errs.Invalid("", "", le.reason)
		}
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return errs.Invalid("", "", "the document ends early")
	}
	return errs.Invalid("", "", fmt.Sprintf("is not valid JSON (near byte offset %d): %v", p.dec.InputOffset(), err))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (p *treeParser) value(path string, depth int) (*node, error) {
	if depth > p.lim.depth {
		return nil, &limitError{field: path, reason: fmt.Sprintf("is nested deeper than the limit of %d levels", p.lim.depth)}
	}
	p.values++
	if p.values > p.lim.values {
		return nil, &limitError{field: path, reason: fmt.Sprintf("the document holds more than the limit of %d values", p.lim.values)}
	}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &node{kind: kNull}, nil
	case bool:
		return boolNode(t), nil
	case json.Number:
		return numNode(string(t)), nil
	case string:
		return strNode(t), nil
	case json.Delim:
		switch t {
		case '[':
			n := &node{kind: kArray}
			for i := 0; p.dec.More(); i++ {
				v, err := p.value(fmt.Sprintf("%s[%d]", path, i), depth+1)
				if err != nil {
					return nil, err
				}
				n.kids = append(n.kids, v)
			}
			_, err := p.dec.Token() // ']'
			return n, err
		case '{':
			n := newObject()
			var seen map[string]bool
			for p.dec.More() {
				kt, err := p.dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string) // the decoder only yields string keys
				dup := false
				if seen != nil {
					dup = seen[k]
				} else {
					dup = slices.Contains(n.keys, k)
					if len(n.keys) >= 16 {
						seen = make(map[string]bool, 2*len(n.keys))
						for _, x := range n.keys {
							seen[x] = true
						}
					}
				}
				if dup {
					return nil, errs.Invalid(join(path, k), "", "is a duplicate key")
				}
				if seen != nil {
					seen[k] = true
				}
				v, err := p.value(join(path, k), depth+1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.kids = append(n.kids, v)
			}
			_, err := p.dec.Token() // '}'
			return n, err
		}
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// encodeTree writes n as canonical JSON: object keys in byte order, two
// spaces of indentation per level, numbers as their literal text, strings
// with the minimal escapes (no HTML escaping), a final newline at the top.
func encodeTree(buf *bytes.Buffer, n *node, indent int, pretty bool) {
	switch n.kind {
	case kNull:
		buf.WriteString("null")
	case kBool:
		if n.b {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case kNumber:
		buf.WriteString(n.s)
	case kString:
		writeString(buf, n.s)
	case kArray:
		if len(n.kids) == 0 {
			buf.WriteString("[]")
			return
		}
		buf.WriteByte('[')
		for i, k := range n.kids {
			if i > 0 {
				buf.WriteByte(',')
			}
			newline(buf, indent+1, pretty)
			encodeTree(buf, k, indent+1, pretty)
		}
		newline(buf, indent, pretty)
		buf.WriteByte(']')
	case kObject:
		if len(n.keys) == 0 {
			buf.WriteString("{}")
			return
		}
		order := make([]int, len(n.keys))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int {
			switch {
			case n.keys[a] < n.keys[b]:
				return -1
			case n.keys[a] > n.keys[b]:
				return 1
			}
			return 0
		})
		buf.WriteByte('{')
		for j, i := range order {
			if j > 0 {
				buf.WriteByte(',')
			}
			newline(buf, indent+1, pretty)
			writeString(buf, n.keys[i])
			buf.WriteByte(':')
			if pretty {
				buf.WriteByte(' ')
			}
			encodeTree(buf, n.kids[i], indent+1, pretty)
		}
		newline(buf, indent, pretty)
		buf.WriteByte('}')
	}
}

func newline(buf *bytes.Buffer, indent int, pretty bool) {
	if !pretty {
		return
	}
	buf.WriteByte('\n')
	for range indent {
		buf.WriteString("  ")
	}
}

const hexDigits = "0123456789abcdef"

func writeString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c < utf8.RuneSelf {
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				// Never produced by the decoder (it refuses invalid UTF-8);
				// strings from Go values are replaced like encoding/json.
				buf.WriteString(s[start:i])
				buf.WriteString(`\ufffd`)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		buf.WriteString(s[start:i])
		switch c {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			buf.WriteString(`\u00`)
			buf.WriteByte(hexDigits[c>>4])
			buf.WriteByte(hexDigits[c&0xf])
		}
		i++
		start = i
	}
	buf.WriteString(s[start:])
	buf.WriteByte('"')
}

// compact returns n as canonical JSON without indentation.
func compact(n *node) []byte {
	var buf bytes.Buffer
	encodeTree(&buf, n, 0, false)
	return buf.Bytes()
}

// isInteger reports whether a JSON number literal is an integer and
// returns it when it fits int64.
func integer(lit string) (int64, bool, bool) {
	for i := 0; i < len(lit); i++ {
		switch lit[i] {
		case '.', 'e', 'E':
			return 0, false, false
		}
	}
	v, err := strconv.ParseInt(lit, 10, 64)
	return v, err == nil, true
}
