package stix

import (
	"fmt"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// A small strict JSON parser for Decode. One pass over the input checks the syntax
// (RFC 8259; strings must be valid UTF-8), the nesting depth, and what encoding/json would
// silently accept: a key repeated in one object (the last would win) and a key that is not
// lower case (encoding/json matches struct fields case-insensitively; STIX property names
// are lower case). It builds a tree that keeps each object's members in order; the decode
// functions in decode.go then read the tree field by field, refusing unknown properties and
// values of the wrong JSON type.

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jObject
	jArray
)

func (k jkind) String() string {
	return [...]string{"null", "bool", "number", "string", "object", "array"}[k]
}

// jvalue is one parsed JSON value.
type jvalue struct {
	kind    jkind
	b       bool
	s       string    // string value (unescaped), or a number's literal
	members []jmember // object members, in input order; array items (key "")
}

type jmember struct {
	key string
	val jvalue
}

// get returns the member named key of an object (nil when absent).
func (v *jvalue) get(key string) *jvalue {
	for i := range v.members {
		if v.members[i].key == key {
			return &v.members[i].val
		}
	}
	return nil
}

type jparser struct {
	data []byte
	// src is data as one string: every string and number literal without escapes is a
	// substring of it, so parsing allocates once for the input, not once per string.
	src   string
	pos   int
	depth int
	// stack holds the members of the objects and arrays being parsed; each is copied
	// out to an exactly sized slice when it closes (one allocation per container).
	stack []jmember
}

// stackPool holds parse stacks (jparser.stack): one for each Decode would be most of what
// it allocates.
var stackPool = sync.Pool{New: func() any { s := make([]jmember, 0, 64); return &s }}

// parseJSON parses data as exactly one JSON value (surrounding whitespace allowed).
func parseJSON(data []byte) (jvalue, error) {
	st := stackPool.Get().(*[]jmember)
	p := jparser{data: data, src: string(data), stack: (*st)[:0]}
	defer func() {
		clear(p.stack[:cap(p.stack)]) // no strings of this input kept alive by the pool
		*st = p.stack[:0]
		stackPool.Put(st)
	}()
	p.ws()
	v, err := p.value()
	if err != nil {
		return jvalue{}, err
	}
	p.ws()
	if p.pos != len(p.data) {
		return jvalue{}, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

var errUnexpectedEOF = fmt.Errorf("unexpected EOF")

func (p *jparser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jparser) errChar(context string) error {
	if p.pos >= len(p.data) {
		return errUnexpectedEOF
	}
	return fmt.Errorf("invalid character %q %s at offset %d", p.data[p.pos], context, p.pos)
}

func (p *jparser) value() (jvalue, error) {
	if p.pos >= len(p.data) {
		return jvalue{}, errUnexpectedEOF
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		return jvalue{kind: jString, s: s}, err
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return jvalue{kind: jBool, b: true}, p.literal("true")
	case c == 'f':
		return jvalue{kind: jBool}, p.literal("false")
	case c == 'n':
		return jvalue{kind: jNull}, p.literal("null")
	}
	return jvalue{}, p.errChar("looking for beginning of value")
}

func (p *jparser) literal(lit string) error {
	for i := 0; i < len(lit); i++ {
		if p.pos >= len(p.data) {
			return errUnexpectedEOF
		}
		if p.data[p.pos] != lit[i] {
			return p.errChar("in literal " + lit)
		}
		p.pos++
	}
	return nil
}

func (p *jparser) enter() error {
	if p.depth >= maxDepth {
		return fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	p.depth++
	return nil
}

func (p *jparser) object() (jvalue, error) {
	v := jvalue{kind: jObject}
	if empty, err := p.open('}'); err != nil || empty {
		return v, err
	}
	base := len(p.stack)
	for {
		p.ws()
		if p.pos >= len(p.data) {
			return jvalue{}, errUnexpectedEOF
		}
		if p.data[p.pos] != '"' {
			return jvalue{}, p.errChar("looking for beginning of object key string")
		}
		k, err := p.str()
		if err != nil {
			return jvalue{}, err
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c >= 'A' && c <= 'Z' {
				return jvalue{}, fmt.Errorf("key %q: STIX property names are lower case", k)
			}
		}
		for i := base; i < len(p.stack); i++ {
			if p.stack[i].key == k {
				return jvalue{}, fmt.Errorf("duplicate key %q", k)
			}
		}
		p.ws()
		if p.pos >= len(p.data) {
			return jvalue{}, errUnexpectedEOF
		}
		if p.data[p.pos] != ':' {
			return jvalue{}, p.errChar("after object key")
		}
		p.pos++
		p.ws()
		val, err := p.value()
		if err != nil {
			return jvalue{}, err
		}
		if done, err := p.push(jmember{key: k, val: val}, &v, base, '}', "after object key:value pair"); err != nil || done {
			return v, err
		}
	}
}

func (p *jparser) array() (jvalue, error) {
	v := jvalue{kind: jArray}
	if empty, err := p.open(']'); err != nil || empty {
		return v, err
	}
	base := len(p.stack)
	for {
		p.ws()
		item, err := p.value()
		if err != nil {
			return jvalue{}, err
		}
		if done, err := p.push(jmember{val: item}, &v, base, ']', "after array element"); err != nil || done {
			return v, err
		}
	}
}

// open enters a container at its opening bracket and reports whether it is empty, in
// which case it has also read the closing bracket and left it.
func (p *jparser) open(closing byte) (empty bool, err error) {
	if err := p.enter(); err != nil {
		return false, err
	}
	p.pos++ // { or [
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == closing {
		p.pos++
		p.depth--
		return true, nil
	}
	return false, nil
}

// push stacks one member or element of the container v opened at base and reads what
// follows it: a comma (more to come) or the closing bracket, which sets v's members and
// leaves the container (done).
func (p *jparser) push(item jmember, v *jvalue, base int, closing byte, after string) (done bool, err error) {
	p.stack = append(p.stack, item)
	p.ws()
	if p.pos >= len(p.data) {
		return false, errUnexpectedEOF
	}
	switch p.data[p.pos] {
	case ',':
		p.pos++
		return false, nil
	case closing:
		p.pos++
		p.depth--
		v.members = p.pop(base)
		return true, nil
	default:
		return false, p.errChar(after)
	}
}

// pop returns a copy of the stack above base and truncates the stack to base.
func (p *jparser) pop(base int) []jmember {
	out := make([]jmember, len(p.stack)-base)
	copy(out, p.stack[base:])
	clear(p.stack[base:])
	p.stack = p.stack[:base]
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number checks the JSON number grammar and keeps the literal.
func (p *jparser) number() (jvalue, error) {
	start := p.pos
	d := p.data
	if d[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos >= len(d):
		return jvalue{}, errUnexpectedEOF
	case d[p.pos] == '0':
		p.pos++
	case d[p.pos] >= '1' && d[p.pos] <= '9':
		for p.pos < len(d) && isDigit(d[p.pos]) {
			p.pos++
		}
	default:
		return jvalue{}, p.errChar("in numeric literal")
	}
	if p.pos < len(d) && d[p.pos] == '.' {
		p.pos++
		if p.pos >= len(d) {
			return jvalue{}, errUnexpectedEOF
		}
		if !isDigit(d[p.pos]) {
			return jvalue{}, p.errChar("after decimal point in numeric literal")
		}
		for p.pos < len(d) && isDigit(d[p.pos]) {
			p.pos++
		}
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		if p.pos >= len(d) {
			return jvalue{}, errUnexpectedEOF
		}
		if !isDigit(d[p.pos]) {
			return jvalue{}, p.errChar("in exponent of numeric literal")
		}
		for p.pos < len(d) && isDigit(d[p.pos]) {
			p.pos++
		}
	}
	return jvalue{kind: jNumber, s: p.src[start:p.pos]}, nil
}

// str parses a string starting at the opening quote and returns its unescaped value.
func (p *jparser) str() (string, error) {
	p.pos++ // "
	start := p.pos
	d := p.data
	// Fast path: plain ASCII without escapes.
	for p.pos < len(d) {
		c := d[p.pos]
		if c == '"' {
			s := p.src[start:p.pos]
			p.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.pos++
	}
	buf := append([]byte(nil), d[start:p.pos]...)
	for {
		if p.pos >= len(d) {
			return "", errUnexpectedEOF
		}
		c := d[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.errChar("in string literal")
		case c == '\\':
			p.pos++
			if p.pos >= len(d) {
				return "", errUnexpectedEOF
			}
			switch e := d[p.pos]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, err := p.hex4(p.pos + 1)
				if err != nil {
					return "", err
				}
				p.pos += 4
				if utf16.IsSurrogate(r) {
					// A high surrogate must be followed by \u and a low one.
					if p.pos+6 < len(d) && d[p.pos+1] == '\\' && d[p.pos+2] == 'u' {
						r2, err := p.hex4(p.pos + 3)
						if err != nil {
							return "", err
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							r = dec
							p.pos += 6
						} else {
							return "", fmt.Errorf("invalid surrogate pair in string literal at offset %d", p.pos)
						}
					} else {
						return "", fmt.Errorf("lone surrogate in string literal at offset %d", p.pos)
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", p.errChar("in string escape code")
			}
			p.pos++
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(d[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", fmt.Errorf("invalid UTF-8 in string literal at offset %d", p.pos)
			}
			buf = append(buf, d[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
}

// hex4 reads the four hex digits of a \u escape starting at i.
func (p *jparser) hex4(i int) (rune, error) {
	if i+4 > len(p.data) {
		return 0, errUnexpectedEOF
	}
	v, err := strconv.ParseUint(p.src[i:i+4], 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid \\u escape in string literal at offset %d", i)
	}
	return rune(v), nil
}
