package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Evidence appended through the writer lands after the decision it names, even when both are
// queued together; what exceeds MaxEvidence is left out (the decision's own evidence stays),
// and an unknown decision is an error, not a new row.
func TestWriterAppendsEvidence(t *testing.T) {
	s := open(t, t.TempDir())
	w := NewWriter(s, WriterOptions{})
	if _, ok := w.Submit(decision("d1", t0, "203.0.113.7", "web")); !ok {
		t.Fatal("submit")
	}
	for i := range MaxEvidence + 10 {
		if !w.Append("d1", Evidence{Sensor: "gateway", Kind: "redirected", Time: t0.Add(time.Duration(i) * time.Second), Summary: fmt.Sprintf("GET /%d", i)}) {
			t.Fatal("append refused")
		}
	}
	w.Append("nope", Evidence{Sensor: "gateway", Summary: "x"})
	w.Close()
	d, err := s.Get(context.Background(), "d1")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Evidence) != MaxEvidence || d.Evidence[0].Summary != "alert 1" || d.Evidence[1].Summary != "GET /0" ||
		d.Evidence[MaxEvidence-1].Summary != fmt.Sprintf("GET /%d", MaxEvidence-2) {
		t.Fatalf("evidence: %d, first %+v", len(d.Evidence), d.Evidence[:2])
	}
	if w.Failed() != 1 {
		t.Fatalf("failed %d, want 1 (the unknown decision)", w.Failed())
	}
	if err := s.AppendEvidence(context.Background(), "nope", Evidence{Summary: "x"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("AppendEvidence to an unknown decision: %v", err)
	}
}
