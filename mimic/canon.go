package mimic

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
)

// errNotJSON is returned for a body that is not exactly one JSON value.
var errNotJSON = errors.New("mimic: body is not one JSON value")

// parseJSON decodes exactly one JSON value, keeping numbers as their text. An object with a
// key twice is refused: decoders disagree on which one counts (encoding/json takes the last,
// others the first), so such a body is compared as it was sent and cannot hide in the vote.
func parseJSON(src []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, errNotJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotJSON
	}
	return v, nil
}

// maxJSONDepth bounds nesting, so a hostile body cannot exhaust the stack.
const maxJSONDepth = 512

// decodeValue reads one value from dec's token stream.
func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errNotJSON
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	switch d {
	case '[':
		arr := []any{}
		for dec.More() {
			e, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, e)
		}
		_, err := dec.Token() // ]
		return arr, err
	case '{':
		obj := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			if _, dup := obj[k]; dup {
				return nil, errNotJSON
			}
			if obj[k], err = decodeValue(dec, depth+1); err != nil {
				return nil, err
			}
		}
		_, err := dec.Token() // }
		return obj, err
	}
	return nil, errNotJSON
}

// canonicalJSON appends to dst the canonical form of the JSON document src: object members
// sorted by key, no insignificant whitespace, numbers in shortest form, strings escaped one
// way, and the members or elements at the ignored JSON pointers (RFC 6901) left out.
func canonicalJSON(dst, src []byte, ignore map[string]bool) ([]byte, error) {
	v, err := parseJSON(src)
	if err != nil {
		return dst, err
	}
	return appendCanonical(dst, v, "", ignore), nil
}

// appendCanonical writes v at pointer ptr; ptr is only tracked when ignore is non-empty.
func appendCanonical(dst []byte, v any, ptr string, ignore map[string]bool) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, x)
	case json.Number:
		return appendNumber(dst, string(x))
	case string:
		return appendString(dst, x)
	case []any:
		dst = append(dst, '[')
		first := true
		for i, e := range x {
			var p string
			if len(ignore) > 0 {
				p = ptr + "/" + strconv.Itoa(i)
				if ignore[p] {
					continue
				}
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendCanonical(dst, e, p, ignore)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		first := true
		for _, k := range keys {
			var p string
			if len(ignore) > 0 {
				p = ptr + "/" + escapePointer(k)
				if ignore[p] {
					continue
				}
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendCanonical(dst, x[k], p, ignore)
		}
		return append(dst, '}')
	}
	return dst
}

// appendNumber writes integers as given (without a negative zero) and other numbers in the
// shortest float64 form, so 1.0, 1.00 and 1e0 compare equal.
func appendNumber(dst []byte, s string) []byte {
	if !strings.ContainsAny(s, ".eE") {
		if s == "-0" {
			s = "0"
		}
		return append(dst, s...)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return append(dst, s...)
	}
	if f == 0 {
		f = 0 // drop the sign of -0.0
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string: only '"', '\\' and control characters escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// escapePointer escapes one JSON pointer reference token.
func escapePointer(k string) string {
	if !strings.ContainsAny(k, "~/") {
		return k
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(k)
}

// flattenJSON maps every leaf of v (scalars, empty objects and arrays) to its canonical
// text, keyed by JSON pointer. It is used only on the slow path, to find which fields differ.
func flattenJSON(v any, ptr string, out map[string]string) {
	switch x := v.(type) {
	case []any:
		if len(x) == 0 {
			out[ptr] = "[]"
		}
		for i, e := range x {
			flattenJSON(e, ptr+"/"+strconv.Itoa(i), out)
		}
	case map[string]any:
		if len(x) == 0 {
			out[ptr] = "{}"
		}
		for k, e := range x {
			flattenJSON(e, ptr+"/"+escapePointer(k), out)
		}
	default:
		out[ptr] = string(appendCanonical(nil, v, "", nil))
	}
}

// foldHTML appends src to dst with every run of ASCII white space folded into one space,
// white space between two tags removed, and leading and trailing white space dropped.
func foldHTML(dst, src []byte) []byte {
	start := len(dst)
	i := 0
	for i < len(src) {
		c := src[i]
		if !isSpace(c) {
			dst = append(dst, c)
			i++
			continue
		}
		j := i
		for j < len(src) && isSpace(src[j]) {
			j++
		}
		atStart := len(dst) == start
		atEnd := j == len(src)
		betweenTags := !atStart && !atEnd && dst[len(dst)-1] == '>' && src[j] == '<'
		if !atStart && !atEnd && !betweenTags {
			dst = append(dst, ' ')
		}
		i = j
	}
	return dst
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }
