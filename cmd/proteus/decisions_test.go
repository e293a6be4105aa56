package main

import (
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/store"
)

// Text from evidence (a file name, a log line) cannot forge lines or move the cursor.
func TestDecisionOutputDropsControlCharacters(t *testing.T) {
	d := store.Decision{ID: "x", Verdict: "act", Time: time.Unix(0, 0).UTC(),
		Evidence:        []store.Evidence{{Sensor: "fim", Kind: "file.added", Summary: "file.added: /srv/\x1b[2J\nFAKE LINE", Excerpt: "a\rb\x9bc"}},
		Countermeasures: []store.Countermeasure{{Kind: "quarantine", Target: "e1\n", Error: "boom\x07"}}}
	var b strings.Builder
	if err := writeDecision(&b, d); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\r\x07\u009b") || strings.Contains(out, "\nFAKE LINE") {
		t.Fatalf("control characters reach the terminal: %q", out)
	}
	if !strings.Contains(out, "/srv/[2JFAKE LINE") || countermeasureList(d.Countermeasures) != "quarantine e1 (failed)" {
		t.Fatalf("%q / %q", out, countermeasureList(d.Countermeasures))
	}
}
