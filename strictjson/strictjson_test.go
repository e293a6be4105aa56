package strictjson

import (
	"errors"
	"strings"
	"testing"
)

func TestUnmarshal(t *testing.T) {
	type T struct {
		A int `json:"a"`
	}
	for _, c := range []struct {
		in   string
		want string // "" = no error
	}{
		{`{"a": 1}`, ""},
		{" {\"a\": 1}\n", ""},
		{`{"a": 1, "b": 2}`, `unknown field "b"`},
		{`{"a": 1} {}`, ErrTrailingData.Error()},
		{`{"a": 1} x`, ErrTrailingData.Error()},
		{`{"a": "1"}`, "cannot unmarshal"},
		{`{"a": 1`, "unexpected EOF"},
		{``, "EOF"},
	} {
		var v T
		err := Unmarshal([]byte(c.in), &v)
		if c.want == "" {
			if err != nil || v.A != 1 {
				t.Errorf("%q: %v, %+v", c.in, err, v)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
	if err := Unmarshal([]byte(`1 2`), new(int)); !errors.Is(err, ErrTrailingData) {
		t.Errorf("trailing value: %v", err)
	}
}
