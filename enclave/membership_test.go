package enclave

import (
	"bufio"
	"bytes"
	"testing"
)

func TestCertFraming(t *testing.T) {
	var buf bytes.Buffer
	for _, c := range [][]byte{nil, []byte(`{"version":1}`), bytes.Repeat([]byte("c"), MaxCertificateSize)} {
		buf.Reset()
		if err := writeCert(&buf, c); err != nil {
			t.Fatal(err)
		}
		got, err := readCert(bufio.NewReader(&buf))
		if err != nil || !bytes.Equal(got, c) {
			t.Fatalf("round trip of %d bytes: %v", len(c), err)
		}
	}
	buf.Reset()
	_ = writeCert(&buf, bytes.Repeat([]byte("c"), MaxCertificateSize+1))
	if _, err := readCert(bufio.NewReader(&buf)); err == nil {
		t.Error("accepted an oversized certificate")
	}
	if _, err := readCert(bufio.NewReader(bytes.NewReader([]byte{5, 'a'}))); err == nil {
		t.Error("accepted a truncated certificate")
	}
}

// FuzzReadCert: the /proteus/enclave/cert/1.0.0 framing never panics and never returns
// more than MaxCertificateSize bytes.
func FuzzReadCert(f *testing.F) {
	var buf bytes.Buffer
	_ = writeCert(&buf, []byte(`{"version":1}`))
	f.Add(buf.Bytes())
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := readCert(bufio.NewReader(bytes.NewReader(data)))
		if err == nil && len(raw) > MaxCertificateSize {
			t.Fatalf("returned %d bytes", len(raw))
		}
	})
}
