package bearer

import (
	"net/http"
	"testing"
)

func TestNewTokenIsFreshAndLong(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if len(a) != 64 || a == b {
		t.Fatalf("tokens %q, %q: want two different 64-hex-digit tokens", a, b)
	}
}

func TestValid(t *testing.T) {
	const tok = "s3cret"
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"Bearer " + tok, true},
		{"", false},
		{"Bearer", false},
		{"Bearer ", false},
		{"Bearer wrong", false},
		{"Bearer " + tok + "x", false},
		{"bearer " + tok, false},
		{"Basic " + tok, false},
		{tok, false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://localhost/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := Valid(r, tok); got != tc.want {
			t.Errorf("Authorization %q: Valid = %v, want %v", tc.header, got, tc.want)
		}
	}
}

func TestSetIsWhatValidAccepts(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "http://localhost/", nil)
	Set(r, "abc")
	if !Valid(r, "abc") || Valid(r, "abd") {
		t.Fatalf("Set then Valid: header %q", r.Header.Get("Authorization"))
	}
}
