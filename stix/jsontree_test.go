package stix

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// toAny converts a parsed tree to what encoding/json (with UseNumber) decodes into an any.
func toAny(v *jvalue) any {
	switch v.kind {
	case jNull:
		return nil
	case jBool:
		return v.b
	case jNumber:
		return json.Number(v.s)
	case jString:
		return v.s
	case jObject:
		m := map[string]any{}
		for i := range v.members {
			m[v.members[i].key] = toAny(&v.members[i].val)
		}
		return m
	default:
		a := []any{}
		for i := range v.members {
			a = append(a, toAny(&v.members[i].val))
		}
		return a
	}
}

func TestParseJSONStrict(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{`{"a":1,"b":{"c":1,"c":2}}`, `duplicate key "c"`},
		{`{"a":1,"\u0041":2}`, "lower case"},
		{`{"Type":"bundle"}`, "lower case"},
		{"{\"a\":\"\xff\"}", "invalid UTF-8"},
		{`{"a":"\ud800"}`, "lone surrogate"},
		{`{"a":"\udc00\ud800"}`, "surrogate"},
		{"{\"a\":\"x\ty\"}", "invalid character"},
		{`{"a":01}`, "invalid character"},
		{`{"a":1.}`, "after decimal point"},
		{`{"a":-}`, "in numeric literal"},
		{`{"a":1e}`, "in exponent"},
		{`{"a":tru}`, "in literal true"},
		{`{"a":1,}`, "looking for beginning of object key"},
		{`[1,]`, "looking for beginning of value"},
		{`{"a":1} x`, "trailing data"},
		{`{"a":1}{}`, "trailing data"},
		{`{"a":`, "unexpected EOF"},
		{`"abc`, "unexpected EOF"},
		{``, "unexpected EOF"},
		{strings.Repeat("[", 17) + strings.Repeat("]", 17), "nested deeper than 16"},
	} {
		if _, err := parseJSON([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("parseJSON(%q) = %v, want an error containing %q", c.in, err, c.err)
		}
	}
	for _, in := range []string{`{}`, `[]`, ` {"a":[1,-0.5e+3,true,false,null,"\u00e9\ud83d\ude00\n\"\\\/"]} `,
		strings.Repeat("[", 16) + strings.Repeat("]", 16), `{"a":{"a":{"a":1}}}`, `{"é":"ü"}`} {
		v, err := parseJSON([]byte(in))
		if err != nil {
			t.Errorf("parseJSON(%q): %v", in, err)
			continue
		}
		dec := json.NewDecoder(strings.NewReader(in))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if got := toAny(&v); !reflect.DeepEqual(got, want) {
			t.Errorf("parseJSON(%q) = %#v, encoding/json says %#v", in, got, want)
		}
	}
}

// FuzzParseJSON: whatever the strict parser accepts is valid JSON and means the same as
// encoding/json's reading of it.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"a":[1,2,{"b":"c"}],"d":null,"e":true,"f":-1.5e3}`))
	f.Add([]byte(`"\u00e9\ud83d\ude00"`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseJSON(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("parseJSON accepted invalid JSON %q", data)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if got := toAny(&v); !reflect.DeepEqual(got, want) {
			t.Fatalf("parseJSON(%q) = %#v, encoding/json says %#v", data, got, want)
		}
	})
}
