package enclave

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/proteus-defense/proteus/stix"
)

// logRecords reads the state log's records (failing on a line that does not check).
func logRecords(t *testing.T, dir string) []stateRecord {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, StateLog))
	if err != nil {
		t.Fatal(err)
	}
	var out []stateRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, ok := parseLine(sc.Bytes())
		if !ok {
			t.Fatalf("log line %d does not check: %q", len(out)+1, sc.Text())
		}
		out = append(out, r)
	}
	return out
}

func witness(t *testing.T, n *testNode, addr string) {
	t.Helper()
	if _, err := n.Witness(stix.AddrTarget(mustAddr(addr)), "test", time.Hour); err != nil {
		t.Fatal(err)
	}
}

func (tn *testNode) decisionOn(addr string) Decision {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.state[addr]
}

// restartable returns the data dir of one member and a function that starts it there (the
// same identity each time), to stop and start it again as a restart does.
func restartable(t *testing.T) (string, func() *testNode) {
	t.Helper()
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	dir := t.TempDir()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return dir, func() *testNode { return e.start(dir, key, cfg) }
}

// A flush writes what changed, not the whole table: after the first snapshot, each new
// report goes to the log once, and the snapshot is not rewritten. A restart reads both.
func TestStateJournalAppendsChanges(t *testing.T) {
	dir, start := restartable(t)
	n := start()
	witness(t, n, "203.0.113.1")
	if err := n.saveState(true); err != nil {
		t.Fatal(err)
	}
	snap, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	before := len(logRecords(t, dir))
	for _, a := range []string{"203.0.113.2", "203.0.113.3"} {
		witness(t, n, a)
		if err := n.saveState(true); err != nil {
			t.Fatal(err)
		}
	}
	if now, _ := os.ReadFile(filepath.Join(dir, StateFile)); !bytes.Equal(now, snap) {
		t.Error("the snapshot was rewritten by a flush of two new reports")
	}
	recs := logRecords(t, dir)[before:]
	var reports []string
	for _, r := range recs {
		if r.Report != nil {
			reports = append(reports, r.Report.Sighting.Target.String())
		}
	}
	if strings.Join(reports, ",") != "203.0.113.2,203.0.113.3" {
		t.Errorf("appended reports %v, want the two new ones only", reports)
	}
	if err := n.saveState(true); err != nil {
		t.Fatal(err)
	}
	if got := len(logRecords(t, dir)); got != before+len(recs) {
		t.Errorf("a flush with nothing changed appended %d records", got-before-len(recs))
	}
	n.close(t)

	m := start()
	defer m.close(t)
	for _, a := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		if d := m.decisionOn(a); d != Act {
			t.Errorf("after a restart %s is %q, want act", a, d)
		}
	}
}

// A crash in the middle of an append leaves a torn last line: the restart keeps every
// record before it, cuts it off, and appends after the cut. (A real kill -9 cannot be timed
// to land inside the write, so the torn bytes are written by hand into the real file.)
func TestStateJournalSurvivesATornWrite(t *testing.T) {
	dir, start := restartable(t)
	n := start()
	witness(t, n, "203.0.113.1")
	_ = n.saveState(true)
	witness(t, n, "203.0.113.2")
	n.close(t)

	logPath := filepath.Join(dir, StateLog)
	good, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// Half of a valid line for a third report, as a crash mid-write leaves it.
	var line bytes.Buffer
	s := &stix.Sighting{ID: "local--test--203.0.113.3/32", ReporterName: "x", Target: stix.AddrTarget(mustAddr("203.0.113.3")),
		Action: stix.ActionBlock, Confidence: 100, Count: 1, Created: time.Now(), ValidUntil: time.Now().Add(time.Hour)}
	if err := appendLine(&line, stateRecord{Report: &savedReport{Reporter: "x", Local: true, Sighting: s, Relevant: true}}); err != nil {
		t.Fatal(err)
	}
	torn := append(append([]byte{}, good...), line.Bytes()[:line.Len()/2]...)
	if err := os.WriteFile(logPath, torn, 0o600); err != nil {
		t.Fatal(err)
	}

	m := start()
	if m.decisionOn("203.0.113.1") != Act || m.decisionOn("203.0.113.2") != Act || m.decisionOn("203.0.113.3") != "" {
		t.Errorf("after a torn write: %q %q %q", m.decisionOn("203.0.113.1"), m.decisionOn("203.0.113.2"), m.decisionOn("203.0.113.3"))
	}
	if now, _ := os.ReadFile(logPath); !bytes.Equal(now, good) {
		t.Errorf("torn tail not cut: %d bytes, want %d", len(now), len(good))
	}
	witness(t, m, "203.0.113.4")
	m.close(t)
	logRecords(t, dir) // every line checks: the append went after the cut

	k := start()
	defer k.close(t)
	if k.decisionOn("203.0.113.4") != Act || k.decisionOn("203.0.113.1") != Act {
		t.Errorf("after appending past the cut: %q %q", k.decisionOn("203.0.113.4"), k.decisionOn("203.0.113.1"))
	}
}

// When the log outgrows the snapshot, a flush writes a new snapshot and log (the next
// generation); a log left from the previous generation (a crash between the two writes) is
// ignored, since the snapshot holds it.
func TestStateJournalCompacts(t *testing.T) {
	old := compactMin
	compactMin = 1 // compact whenever the log is larger than twice the snapshot
	defer func() { compactMin = old }()
	dir, start := restartable(t)
	n := start()
	var gens []int64
	for i := range 12 {
		witness(t, n, fmt.Sprintf("203.0.113.%d", 10+i))
		if err := n.saveState(true); err != nil {
			t.Fatal(err)
		}
		n.saveMu.Lock()
		gens = append(gens, n.stateGen)
		n.saveMu.Unlock()
	}
	if gens[len(gens)-1] < 2 {
		t.Errorf("generations %v: never compacted", gens)
	}
	staleLog, _ := os.ReadFile(filepath.Join(dir, StateLog))
	n.close(t)

	// A crash right after a compaction's snapshot: the log on disk is the previous
	// generation's, with records the snapshot already holds.
	m := start()
	if err := m.saveState(true); err != nil {
		t.Fatal(err)
	}
	witness(t, m, "198.51.100.1")
	m.saveMu.Lock()
	m.closeLogLocked()
	err := m.compactLocked() // the snapshot of the next generation, then
	m.saveMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	m.close(t)
	if err := os.WriteFile(filepath.Join(dir, StateLog), staleLog, 0o600); err != nil { // ... the old log back
		t.Fatal(err)
	}
	k := start()
	defer k.close(t)
	if k.decisionOn("198.51.100.1") != Act || k.decisionOn("203.0.113.10") != Act {
		t.Errorf("after a crash mid-compaction: %q %q", k.decisionOn("198.51.100.1"), k.decisionOn("203.0.113.10"))
	}
}
