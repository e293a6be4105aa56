package enclave

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := []Envelope{
		{Version: 1, Enclave: "lab", Kind: KindSighting, Bundle: []byte(`{"type":"bundle"}`)},
		{Version: 1, Enclave: "lab", Kind: KindRevocation, Cert: []byte(`{"version":1}`), Bundle: []byte("x")},
		{Version: 1, Enclave: strings.Repeat("e", maxEnclaveName), Kind: KindSighting, Bundle: bytes.Repeat([]byte("b"), 300)},
	}
	for _, e := range tests {
		got, err := DecodeEnvelope(e.Encode(), 4096)
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if got.Enclave != e.Enclave || got.Kind != e.Kind || !bytes.Equal(got.Cert, e.Cert) || !bytes.Equal(got.Bundle, e.Bundle) {
			t.Errorf("round trip: got %+v, want %+v", got, e)
		}
	}
}

func TestDecodeEnvelopeRejects(t *testing.T) {
	good := (&Envelope{Version: 1, Enclave: "lab", Kind: KindSighting, Bundle: []byte("{}")}).Encode()
	tests := []struct {
		name string
		data []byte
		max  int
		want string
	}{
		{"empty", nil, 100, "missing magic"},
		{"magic", append([]byte("XX"), good[2:]...), 100, "missing magic"},
		{"version", append([]byte{'P', 'E', 2}, good[3:]...), 100, "version 2"},
		{"kind", append([]byte{'P', 'E', 1, 9}, good[4:]...), 100, "unknown kind"},
		{"too large", good, 5, "limit 5"},
		{"trailing", append(append([]byte(nil), good...), 0), 100, "trailing"},
		{"truncated", good[:len(good)-1], 100, "exceeds limit or input"},
		{"no bundle", (&Envelope{Version: 1, Enclave: "lab", Kind: KindSighting}).Encode(), 100, "empty bundle"},
		{"no enclave", (&Envelope{Version: 1, Kind: KindSighting, Bundle: []byte("x")}).Encode(), 100, "empty enclave"},
		{"long enclave", (&Envelope{Version: 1, Enclave: strings.Repeat("e", 64), Kind: KindSighting, Bundle: []byte("x")}).Encode(), 200, "enclave length"},
		{"non-minimal varint", []byte{'P', 'E', 1, 1, 0x83, 0x00, 'l', 'a', 'b', 0, 1, 'x'}, 100, "non-minimal"},
		{"varint overflow", append([]byte{'P', 'E', 1, 1}, bytes.Repeat([]byte{0xff}, 11)...), 100, "bad enclave length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeEnvelope(tt.data, tt.max)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrEnvelope) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want ErrEnvelope containing %q", err, tt.want)
			}
		})
	}
}

// FuzzDecodeEnvelope: the decoder never panics, respects its bound, and whatever it
// accepts re-encodes to exactly the input (one wire form per envelope).
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add((&Envelope{Version: 1, Enclave: "lab", Kind: KindSighting, Bundle: []byte(`{"type":"bundle"}`)}).Encode())
	f.Add((&Envelope{Version: 1, Enclave: "lab", Kind: KindRevocation, Cert: []byte("c"), Bundle: []byte("b")}).Encode())
	f.Add([]byte("PE\x01\x01\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 4096
		e, err := DecodeEnvelope(data, limit)
		if err != nil {
			if !errors.Is(err, ErrEnvelope) {
				t.Fatalf("error does not wrap ErrEnvelope: %v", err)
			}
			return
		}
		if len(data) > limit {
			t.Fatalf("accepted %d bytes over limit %d", len(data), limit)
		}
		if again := e.Encode(); !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, again)
		}
	})
}
