package klt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
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

// grow makes room for one more element by doubling the capacity, so a
// long list costs at most twice its size in allocations (append's growth
// factor falls to 1.25 for large slices, which costs five times).
func grow[T any](s []T) []T {
	if len(s) < cap(s) {
		return s
	}
	n := make([]T, len(s), 2*cap(s)+4)
	copy(n, s)
	return n
}

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
// JSON path of the offending value). It scans the input byte by byte
// through a small buffer, so what it holds grows only with the values it
// has accepted, never with white space or read-ahead.
func decodeTree(r io.Reader, lim limits) (*node, error) {
	return decodeTreeBuf(r, lim, 4<<10)
}

// decodeTreeBuf is decodeTree with a read buffer of bufSize bytes.
func decodeTreeBuf(r io.Reader, lim limits, bufSize int) (*node, error) {
	g := &guard{r: r, limit: lim.size}
	p := &treeParser{r: bufio.NewReaderSize(g, bufSize), lim: lim}
	c, err := p.skipSpace()
	if err == nil {
		var root *node
		if root, err = p.value(c, 1); err == nil {
			if c, err = p.skipSpace(); err == io.EOF {
				return root, nil
			} else if err == nil {
				err = p.syntax(fmt.Sprintf("data after the end of the document (%q)", c))
			}
		}
	}
	var le *limitError
	switch {
	case errors.As(err, &le):
		return nil, errs.Invalid(le.field, "", le.reason)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, errs.Invalid(p.path(), "", "the document ends early")
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return nil, ve
	}
	return nil, errs.Invalid(p.path(), "", err.Error())
}

// pathElem is one step of the path to the value being read.
type pathElem struct {
	key   string
	index int // -1 for a key
}

type treeParser struct {
	r      *bufio.Reader
	lim    limits
	off    int64 // bytes consumed
	values int
	stack  []pathElem
	buf    []byte
}

// path returns the dotted path of the value being read.
func (p *treeParser) path() string {
	var b strings.Builder
	for _, e := range p.stack {
		if e.index >= 0 {
			fmt.Fprintf(&b, "[%d]", e.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(e.key)
	}
	return b.String()
}

func (p *treeParser) syntax(msg string) error {
	return errs.Invalid(p.path(), "", fmt.Sprintf("is not valid JSON at byte offset %d: %s", p.off, msg))
}

func (p *treeParser) next() (byte, error) {
	c, err := p.r.ReadByte()
	if err == nil {
		p.off++
	}
	return c, err
}

func (p *treeParser) skipSpace() (byte, error) {
	for {
		c, err := p.next()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

func (p *treeParser) value(c byte, depth int) (*node, error) {
	if depth > p.lim.depth {
		return nil, &limitError{field: p.path(), reason: fmt.Sprintf("is nested deeper than the limit of %d levels", p.lim.depth)}
	}
	p.values++
	if p.values > p.lim.values {
		return nil, &limitError{field: p.path(), reason: fmt.Sprintf("the document holds more than the limit of %d values", p.lim.values)}
	}
	switch {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return strNode(s), nil
	case c == 't':
		return boolNode(true), p.literal("rue")
	case c == 'f':
		return boolNode(false), p.literal("alse")
	case c == 'n':
		return &node{kind: kNull}, p.literal("ull")
	case c == '-' || c >= '0' && c <= '9':
		return p.number(c)
	}
	return nil, p.syntax(fmt.Sprintf("unexpected %q", c))
}

func (p *treeParser) literal(rest string) error {
	for i := 0; i < len(rest); i++ {
		c, err := p.next()
		if err != nil {
			return err
		}
		if c != rest[i] {
			return p.syntax(fmt.Sprintf("unexpected %q in a literal", c))
		}
	}
	return nil
}

func (p *treeParser) object(depth int) (*node, error) {
	n := newObject()
	c, err := p.skipSpace()
	if err != nil {
		return nil, err
	}
	if c == '}' {
		return n, nil
	}
	for {
		if c != '"' {
			return nil, p.syntax(fmt.Sprintf("expected a key, found %q", c))
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		// Small objects are checked for a repeated key at once; large ones
		// when they end (checkDuplicates), which costs a sorted copy of the
		// keys instead of a map.
		dup := len(n.keys) < smallObject && slices.Contains(n.keys, k)
		p.stack = append(p.stack, pathElem{key: k, index: -1})
		if dup {
			return nil, errs.Invalid(p.path(), "", "is a duplicate key")
		}
		if c, err = p.skipSpace(); err != nil {
			return nil, err
		}
		if c != ':' {
			return nil, p.syntax(fmt.Sprintf("expected ':', found %q", c))
		}
		if c, err = p.skipSpace(); err != nil {
			return nil, err
		}
		v, err := p.value(c, depth+1)
		if err != nil {
			return nil, err
		}
		p.stack = p.stack[:len(p.stack)-1]
		n.keys = append(grow(n.keys), k)
		n.kids = append(grow(n.kids), v)
		if c, err = p.skipSpace(); err != nil {
			return nil, err
		}
		switch c {
		case '}':
			if len(n.keys) > smallObject {
				if err := p.checkDuplicates(n.keys); err != nil {
					return nil, err
				}
			}
			return n, nil
		case ',':
			if c, err = p.skipSpace(); err != nil {
				return nil, err
			}
		default:
			return nil, p.syntax(fmt.Sprintf("expected ',' or '}', found %q", c))
		}
	}
}

// smallObject is the size up to which object checks each key for a
// repeat as it reads it.
const smallObject = 16

// checkDuplicates refuses a repeated key of a large object.
func (p *treeParser) checkDuplicates(keys []string) error {
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			p.stack = append(p.stack, pathElem{key: sorted[i], index: -1})
			return errs.Invalid(p.path(), "", "is a duplicate key")
		}
	}
	return nil
}

func (p *treeParser) array(depth int) (*node, error) {
	n := &node{kind: kArray}
	c, err := p.skipSpace()
	if err != nil {
		return nil, err
	}
	if c == ']' {
		return n, nil
	}
	for i := 0; ; i++ {
		p.stack = append(p.stack, pathElem{index: i})
		v, err := p.value(c, depth+1)
		if err != nil {
			return nil, err
		}
		p.stack = p.stack[:len(p.stack)-1]
		n.kids = append(grow(n.kids), v)
		if c, err = p.skipSpace(); err != nil {
			return nil, err
		}
		switch c {
		case ']':
			return n, nil
		case ',':
			if c, err = p.skipSpace(); err != nil {
				return nil, err
			}
		default:
			return nil, p.syntax(fmt.Sprintf("expected ',' or ']', found %q", c))
		}
	}
}

// maxNumberLen bounds the text of a JSON number: far more than any
// Open API value needs (a long has at most 20 characters, a double's
// shortest form 24), so a hostile number is refused before it is held.
const maxNumberLen = 1024

// number reads a JSON number whose first byte is c, keeping its text.
func (p *treeParser) number(c byte) (*node, error) {
	b := p.buf[:0]
	digits := func() (int, error) {
		n := 0
		for {
			c, err := p.r.ReadByte()
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return n, err
			}
			if c < '0' || c > '9' {
				_ = p.r.UnreadByte()
				return n, nil
			}
			p.off++
			if len(b) >= maxNumberLen {
				return n, &limitError{field: p.path(), reason: fmt.Sprintf("is a number longer than the limit of %d characters", maxNumberLen)}
			}
			b = append(b, c)
			n++
		}
	}
	peek := func() byte {
		c, err := p.r.ReadByte()
		if err != nil {
			return 0
		}
		_ = p.r.UnreadByte()
		return c
	}
	b = append(b, c)
	if c == '-' {
		c2, err := p.next()
		if err != nil {
			return nil, err
		}
		if c2 < '0' || c2 > '9' {
			return nil, p.syntax("a number needs digits")
		}
		b = append(b, c2)
		c = c2
	}
	if c != '0' {
		if _, err := digits(); err != nil {
			return nil, err
		}
	} else if d := peek(); d >= '0' && d <= '9' {
		return nil, p.syntax("a number must not start with 0")
	}
	if peek() == '.' {
		p.next()
		b = append(b, '.')
		if n, err := digits(); err != nil || n == 0 {
			return nil, p.syntax("a fraction needs digits")
		}
	}
	if e := peek(); e == 'e' || e == 'E' {
		p.next()
		b = append(b, e)
		if s := peek(); s == '+' || s == '-' {
			p.next()
			b = append(b, s)
		}
		if n, err := digits(); err != nil || n == 0 {
			return nil, p.syntax("an exponent needs digits")
		}
	}
	p.buf = b
	return numNode(string(b)), nil
}

// str reads a string after its opening quote, decoding escapes. Lone
// surrogates become U+FFFD, as in encoding/json.
func (p *treeParser) str() (string, error) {
	b := p.buf[:0]
	for {
		c, err := p.next()
		if err != nil {
			return "", err
		}
		switch {
		case c == '"':
			p.buf = b
			return string(b), nil
		case c < 0x20:
			return "", p.syntax(fmt.Sprintf("control character %U in a string", rune(c)))
		case c != '\\':
			if len(b) == cap(b) {
				// Double, so a long string costs at most twice its size in
				// buffers (append's growth factor falls to 1.25).
				nb := make([]byte, len(b), 2*cap(b)+64)
				copy(nb, b)
				b = nb
			}
			b = append(b, c)
			continue
		}
		e, err := p.next()
		if err != nil {
			return "", err
		}
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, err := p.hex4()
			if err != nil {
				return "", err
			}
			if utf16.IsSurrogate(r) {
				r2 := unicode.ReplacementChar
				if c, _ := p.r.Peek(2); len(c) == 2 && c[0] == '\\' && c[1] == 'u' {
					p.next()
					p.next()
					lo, err := p.hex4()
					if err != nil {
						return "", err
					}
					if d := utf16.DecodeRune(r, lo); d != unicode.ReplacementChar {
						r2 = d
					} else {
						b = utf8.AppendRune(b, unicode.ReplacementChar)
						r2 = lo
						if utf16.IsSurrogate(lo) {
							r2 = unicode.ReplacementChar
						}
					}
				}
				r = r2
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", p.syntax(fmt.Sprintf("invalid escape %q", e))
		}
	}
}

func (p *treeParser) hex4() (rune, error) {
	var r rune
	for range 4 {
		c, err := p.next()
		if err != nil {
			return 0, err
		}
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, p.syntax(fmt.Sprintf("invalid \\u escape (%q)", c))
		}
	}
	return r, nil
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
	switch n.kind {
	case kNumber:
		return []byte(n.s)
	case kString:
		buf := bytes.NewBuffer(make([]byte, 0, quotedLen(n.s)))
		writeString(buf, n.s)
		return buf.Bytes()
	}
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

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
