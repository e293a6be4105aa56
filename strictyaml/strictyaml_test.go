package strictyaml

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

type inner struct {
	P    float64   `yaml:"p"`
	List []float64 `yaml:"list"`
}

type outer struct {
	Name  string  `yaml:"name"`
	Items []inner `yaml:"items"`
}

func TestLocateFindsNestedFields(t *testing.T) {
	src := "name: x\nitems:\n  - p: 0.5\n  - p: 1.5\n    list: [1, .nan]\n"
	var o outer
	doc, err := Decode("m.yaml", []byte(src), &o)
	if err != nil {
		t.Fatal(err)
	}
	var p Problems
	for i, it := range o.Items {
		p.Probability(fmt.Sprintf("items[%d].p", i), it.P)
		for j, v := range it.List {
			p.Finite(fmt.Sprintf("items[%d].list[%d]", i, j), v)
		}
	}
	err = doc.Locate(p)
	if err == nil {
		t.Fatal("want problems")
	}
	msg := err.Error()
	for _, want := range []string{"m.yaml:4:8: items[1].p: must be a probability", "m.yaml:5:15: items[1].list[1]: must be a finite number"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q missing %q", msg, want)
		}
	}
	if !errors.Is(err, ErrInvalid) {
		t.Error("not ErrInvalid")
	}
}

func TestDecodeRejectsUnknownAndTypes(t *testing.T) {
	cases := []struct{ src, want string }{
		{"name: x\nbogus: 1\n", "t.yaml:2:1: bogus: unknown field"},
		{"name: x\nitems:\n  - p: hello\n", "t.yaml:3:8: items[0].p: cannot unmarshal str `hello` into float64"},
		{"", "document is empty"},
		{"name: [\n", "t.yaml:"},
	}
	for _, c := range cases {
		var o outer
		_, err := Decode("t.yaml", []byte(c.src), &o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Decode(%q) = %v, want %q", c.src, err, c.want)
		}
	}
}

func TestChecks(t *testing.T) {
	var p Problems
	p.Probability("a", -0.1)
	p.Probability("b", math.Inf(1))
	p.Range("c", 5, 0, 4)
	p.NonNegative("d", -1)
	p.Probability("ok", 0.3)
	if len(p) != 4 {
		t.Fatalf("want 4 problems, got %v", p)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("name: x\nitems:\n  - p: 0.5\n"))
	f.Add([]byte("items: [{p: 1, list: [1,2]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var o outer
		doc, err := Decode("f.yaml", data, &o)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		var p Problems
		p.Addf("items[0].p", "x")
		_ = doc.Locate(p)
	})
}

// Report gives the decode errors and the validation problems together, by line, and leaves
// out a validation problem about a field that did not decode (its value is not the file's).
func TestReportEveryProblem(t *testing.T) {
	src := "name: x\nbogus: 1\nitems:\n  - p: hello\n  - p: 1.5\nextra: 2\n"
	var o outer
	doc, err := Decode("t.yaml", []byte(src), &o)
	if doc == nil || err == nil {
		t.Fatalf("want a document and decode errors, got %v, %v", doc, err)
	}
	var p Problems
	for i, it := range o.Items {
		p.Probability(fmt.Sprintf("items[%d].p", i), it.P)
		p.Addf(fmt.Sprintf("items[%d].p", i), "always")
	}
	p.Addf("missing", "absent field")
	got := doc.Report(err, p)
	if !errors.Is(got, ErrInvalid) {
		t.Fatalf("not ErrInvalid: %v", got)
	}
	want := []string{
		"t.yaml:2:1: bogus: unknown field",
		"t.yaml:4:8: items[0].p: cannot unmarshal",
		"t.yaml:5:8: items[1].p: must be a probability",
		"t.yaml:5:8: items[1].p: always",
		"t.yaml:6:1: extra: unknown field",
		"t.yaml: missing: absent field",
	}
	lines := strings.Split(got.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(lines), len(want), got)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want %q", i, lines[i], w)
		}
	}
	if doc.Report(nil, nil) != nil {
		t.Error("no problems, yet an error")
	}
}
