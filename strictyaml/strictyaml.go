// Package strictyaml decodes YAML documents strictly (unknown fields and wrong types are
// errors) and reports every problem with the file, line, column and dotted field path.
//
// It owns only decoding and error reporting; it must not import any other Proteus package,
// so config/ and game/ can both use it without import cycles.
package strictyaml

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every error this package returns, so callers can test with errors.Is
// and map it to exit code 2.
var ErrInvalid = errors.New("invalid document")

// FieldError is one problem in a document: where it is and what is wrong.
type FieldError struct {
	File   string // file name as given by the caller
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based; 0 when unknown
	Field  string // dotted path such as "stages[2].eta"; empty for document-level problems
	Msg    string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Errors is a list of problems, reported together so a user fixes them in one pass.
type Errors []*FieldError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap exposes the individual problems to errors.Is / errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Document is a decoded YAML document that still knows where each field came from.
type Document struct {
	File string
	root *yaml.Node
}

// MaxSize bounds the documents Decode accepts.
const MaxSize = 4 << 20

var lineRe = regexp.MustCompile(`^line (\d+): (.*)$`)
var unknownFieldRe = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)

// Decode parses data strictly into v. Unknown fields, wrong types, several documents and empty
// input are errors naming file, line and field. Unknown fields and wrong types come back with
// the document too (v filled as far as it could be), so the caller can validate the rest and
// report every problem at once with Document.Report; any other error has a nil document.
func Decode(file string, data []byte, v any) (*Document, error) {
	if len(data) > MaxSize {
		return nil, &FieldError{File: file, Msg: fmt.Sprintf("document is %d bytes, limit is %d", len(data), MaxSize)}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(file, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, &FieldError{File: file, Msg: "document is empty"}
	}
	doc := &Document{File: file, root: &root}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return doc, doc.typeErrors(te)
		}
		return nil, syntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, &FieldError{File: file, Msg: "more than one YAML document; expected exactly one"}
	}
	return doc, nil
}

func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &FieldError{File: file, Msg: msg}
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = m[2]
	}
	return fe
}

func (d *Document) typeErrors(te *yaml.TypeError) error {
	var out Errors
	for _, s := range te.Errors {
		fe := &FieldError{File: d.File, Msg: s}
		if m := lineRe.FindStringSubmatch(s); m != nil {
			fe.Line, _ = strconv.Atoi(m[1])
			fe.Msg = m[2]
			if u := unknownFieldRe.FindStringSubmatch(fe.Msg); u != nil {
				fe.Msg = "unknown field " + strconv.Quote(u[1])
				fe.Field, fe.Column = d.keyAt(fe.Line, u[1])
			} else {
				fe.Field, fe.Column = d.valueAt(fe.Line)
				fe.Msg = strings.ReplaceAll(fe.Msg, "!!", "")
			}
		}
		out = append(out, fe)
	}
	return out
}

// Locate attaches positions to problems found by validation (which knows only field paths).
// Problems whose path is not present in the document keep line 0.
func (d *Document) Locate(probs Problems) error {
	if len(probs) == 0 {
		return nil
	}
	out := make(Errors, 0, len(probs))
	for _, p := range probs {
		fe := &FieldError{File: d.File, Field: p.Field, Msg: p.Msg}
		if n := d.lookup(p.Field); n != nil {
			fe.Line, fe.Column = n.Line, n.Column
		}
		out = append(out, fe)
	}
	return out
}

// Report is Locate plus the decode errors Decode returned with d (nil when there were none),
// in the order of their lines: one run shows every unknown field, wrong type and invalid value.
// A validation problem on a field that failed to decode, or inside one, is left out (the field
// holds its zero value, so the finding would be about a value the file does not have).
func (d *Document) Report(decodeErr error, probs Problems) error {
	var out Errors
	if decodeErr != nil && !errors.As(decodeErr, &out) {
		return decodeErr
	}
	var kept Problems
	for _, p := range probs {
		if !undecoded(out, p.Field) {
			kept = append(kept, p)
		}
	}
	var located Errors
	if err := d.Locate(kept); err != nil {
		located = err.(Errors)
	}
	out = append(append(Errors(nil), out...), located...)
	if len(out) == 0 {
		return nil
	}
	slices.SortStableFunc(out, func(a, b *FieldError) int {
		// problems without a line (absent fields) go last
		la, lb := a.Line, b.Line
		if la == 0 {
			la = math.MaxInt
		}
		if lb == 0 {
			lb = math.MaxInt
		}
		return cmp.Or(cmp.Compare(la, lb), cmp.Compare(a.Column, b.Column))
	})
	return out
}

// undecoded reports whether field is, or lies inside, a field of a decode error in es.
func undecoded(es Errors, field string) bool {
	for _, e := range es {
		if e.Field == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(field, e.Field); ok && (rest == "" || rest[0] == '.' || rest[0] == '[') {
			return true
		}
	}
	return false
}

// lookup finds the value node of a dotted path like "a.b[3].c"; nil when absent.
func (d *Document) lookup(path string) *yaml.Node {
	n := d.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if path == "" {
		return n
	}
	for _, part := range splitPath(path) {
		switch {
		case part.index >= 0:
			if n.Kind != yaml.SequenceNode || part.index >= len(n.Content) {
				return nil
			}
			n = n.Content[part.index]
		default:
			if n.Kind != yaml.MappingNode {
				return nil
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part.key {
					next = n.Content[i+1]
					break
				}
			}
			if next == nil {
				return nil
			}
			n = next
		}
	}
	return n
}

type pathPart struct {
	key   string
	index int
}

func splitPath(path string) []pathPart {
	var parts []pathPart
	for _, seg := range strings.Split(path, ".") {
		key := seg
		var idx []int
		for {
			open := strings.IndexByte(key, '[')
			if open < 0 || !strings.HasSuffix(key, "]") {
				break
			}
			i, err := strconv.Atoi(key[strings.LastIndexByte(key, '[')+1 : len(key)-1])
			if err != nil {
				break
			}
			idx = append([]int{i}, idx...)
			key = key[:strings.LastIndexByte(key, '[')]
		}
		if key != "" {
			parts = append(parts, pathPart{key: key, index: -1})
		}
		for _, i := range idx {
			parts = append(parts, pathPart{index: i})
		}
	}
	return parts
}

// keyAt returns the dotted path and column of the mapping key named key on the given line.
func (d *Document) keyAt(line int, key string) (string, int) {
	var path string
	var col int
	walk(d.root, "", func(p string, k, v *yaml.Node) bool {
		if k != nil && k.Line == line && k.Value == key {
			path, col = p, k.Column
			return false
		}
		return true
	})
	return path, col
}

// valueAt returns the dotted path and column of the outermost value that starts on line.
// Block mappings and sequences are skipped: they start on the line of their first child.
func (d *Document) valueAt(line int) (string, int) {
	var path string
	var col int
	walk(d.root, "", func(p string, k, v *yaml.Node) bool {
		block := (v.Kind == yaml.MappingNode || v.Kind == yaml.SequenceNode) && v.Style&yaml.FlowStyle == 0
		if v.Line == line && !block {
			path, col = p, v.Column
			return false
		}
		return true
	})
	return path, col
}

// walk visits every node with its dotted path; k is the mapping key node or nil.
func walk(n *yaml.Node, path string, visit func(path string, k, v *yaml.Node) bool) bool {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if !walk(c, path, visit) {
				return false
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if !visit(p, k, v) || !walk(v, p, visit) {
				return false
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if !visit(p, nil, c) || !walk(c, p, visit) {
				return false
			}
		}
	}
	return true
}
