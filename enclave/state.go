package enclave

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/stix"
)

// The enclave state journal keeps what the enclave must remember across a restart: the
// replay guard (seen indicator versions with their expiry and target), the report table
// with revocations, confirmations and contradictions, and what is applied per target.
//
// It is two files. StateFile is a snapshot of everything, written with an atomic replace;
// StateLog holds the changes since that snapshot, appended (one fsync per batch) at most
// once per saveEvery while something changed, and at Close. So a flush costs what changed,
// not the whole table: each new report, replay key or target decision is written once.
// When the log outgrows the snapshot (compactFactor, at least compactMin bytes) the next
// flush writes a new snapshot and starts a new log.
//
// Crash safety. Each log line is `CRC32 JSON`; the first names the snapshot generation it
// follows. On load, the log is applied over the snapshot; at the first line that does not
// check (a write torn by a crash: only the batch after the last fsync can be), the log is
// cut there, so what was flushed survives and a half-written batch is dropped. A log of
// another generation than the snapshot (a crash between a compaction's snapshot and its new
// log) is ignored: the snapshot already holds it. A crash loses at most the last saveEvery
// of changes.
const (
	StateFile = "enclave-state.json"
	StateLog  = "enclave-state.log"
)

const stateVersion = 1

// compactMin is a var only so that a test can make compaction happen.
var compactMin int64 = 1 << 20

const compactFactor = 2

type stateFile struct {
	Version   int                `json:"version"`
	Gen       int64              `json:"gen,omitempty"` // the log that follows it carries the same
	Saved     time.Time          `json:"saved"`
	Replay    []stix.ReplayEntry `json:"replay"`
	Reports   []savedReport      `json:"reports"`
	Targets   []savedTarget      `json:"targets"`
	Vigilance time.Time          `json:"vigilance,omitzero"`
}

// stateRecord is one line of the log: exactly one field is set.
type stateRecord struct {
	Log       *logHeader        `json:"log,omitempty"`
	Replay    *stix.ReplayEntry `json:"replay,omitempty"`
	Report    *savedReport      `json:"report,omitempty"`
	Target    *savedTarget      `json:"target,omitempty"`
	Vigilance *time.Time        `json:"vigilance,omitempty"`
}

type logHeader struct {
	Version int   `json:"version"`
	Gen     int64 `json:"gen"`
}

type savedReport struct {
	Reporter     string         `json:"reporter"`
	Group        string         `json:"group,omitempty"`
	Local        bool           `json:"local,omitempty"`
	Sighting     *stix.Sighting `json:"sighting"`
	Received     time.Time      `json:"received"`
	Deadline     time.Time      `json:"deadline"`
	Relevant     bool           `json:"relevant"`
	Why          string         `json:"why,omitempty"`
	Settled      bool           `json:"settled,omitempty"`
	Confirmed    bool           `json:"confirmed,omitempty"`
	Contradicted bool           `json:"contradicted,omitempty"`
	Revoked      bool           `json:"revoked,omitempty"`
}

// savedTarget is what is applied on a target; a zero Decision means nothing is.
type savedTarget struct {
	Key      string    `json:"key"`
	Decision Decision  `json:"decision"`
	Until    time.Time `json:"until,omitzero"`
}

func savedOf(r *report) savedReport {
	return savedReport{Reporter: r.reporter, Group: r.group, Local: r.local, Sighting: r.s,
		Received: r.received, Deadline: r.deadline, Relevant: r.relevant, Why: r.why, Settled: r.settled,
		Confirmed: r.confirmed, Contradicted: r.contradicted, Revoked: r.revoked}
}

// dirtyReportLocked marks r changed (n.mu held): the next flush logs it.
func (n *Node) dirtyReportLocked(r *report) { n.dirtyReports[r] = struct{}{} }

// dirtyTargetLocked marks what is applied on key changed (n.mu held).
func (n *Node) dirtyTargetLocked(key string) { n.dirtyTargets[key] = struct{}{} }

// dirtyReplay queues a replay-guard key the validator just admitted.
func (n *Node) dirtyReplay(e stix.ReplayEntry) {
	n.replayMu.Lock()
	n.newReplay = append(n.newReplay, e)
	n.replayMu.Unlock()
}

// saveState flushes what changed when saveEvery has passed since the last flush (or now,
// with force): appended to the log, or, when the log is due for compaction (or unusable
// after an error), as a new snapshot and log.
func (n *Node) saveState(force bool) error {
	if n.dataDir == "" {
		return nil
	}
	now := time.Now()
	n.saveMu.Lock()
	defer n.saveMu.Unlock()
	if !force && now.Sub(n.lastSave) < saveEvery {
		return nil
	}
	n.replayMu.Lock()
	replay := n.newReplay
	n.newReplay = nil
	n.replayMu.Unlock()
	recs := make([]stateRecord, 0, len(replay)+len(n.dirtyReports)+len(n.dirtyTargets)+1)
	for i := range replay {
		recs = append(recs, stateRecord{Replay: &replay[i]})
	}
	n.mu.Lock()
	for r := range n.dirtyReports {
		sr := savedOf(r)
		recs = append(recs, stateRecord{Report: &sr})
	}
	clear(n.dirtyReports)
	for k := range n.dirtyTargets {
		recs = append(recs, stateRecord{Target: &savedTarget{Key: k, Decision: n.state[k], Until: n.until[k]}})
	}
	clear(n.dirtyTargets)
	vig := n.vigUntil
	n.mu.Unlock()
	if !vig.Equal(n.loggedVig) {
		recs = append(recs, stateRecord{Vigilance: &vig})
	}
	if len(recs) == 0 {
		return nil
	}
	n.lastSave = now
	var err error
	if n.stateLog == nil || n.logBytes > max(compactMin, compactFactor*n.snapBytes) {
		err = n.compactLocked()
	} else {
		err = n.appendLocked(recs)
	}
	if err != nil {
		// What was taken from the dirty sets is in no file for sure: the next flush writes
		// a whole snapshot, which holds it.
		n.closeLogLocked()
		return fmt.Errorf("enclave: state: %w", err)
	}
	n.loggedVig = vig
	return nil
}

// appendLocked writes recs to the log as one write and one fsync.
func (n *Node) appendLocked(recs []stateRecord) error {
	var buf bytes.Buffer
	for _, r := range recs {
		if err := appendLine(&buf, r); err != nil {
			return err
		}
	}
	if _, err := n.stateLog.Write(buf.Bytes()); err != nil {
		return err
	}
	if err := n.stateLog.Sync(); err != nil {
		return err
	}
	n.logBytes += int64(buf.Len())
	return nil
}

// compactLocked writes a snapshot of everything under the next generation, then a new log
// that follows it.
func (n *Node) compactLocked() error {
	n.closeLogLocked()
	gen := n.stateGen + 1
	f := stateFile{Version: stateVersion, Gen: gen, Saved: n.now().UTC(), Replay: n.replay.Entries()}
	n.mu.Lock()
	for _, rs := range n.targets {
		for _, r := range rs {
			f.Reports = append(f.Reports, savedOf(r))
		}
	}
	for k, d := range n.state {
		f.Targets = append(f.Targets, savedTarget{Key: k, Decision: d, Until: n.until[k]})
	}
	f.Vigilance = n.vigUntil
	n.mu.Unlock()
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(n.dataDir, StateFile), data, 0o600); err != nil {
		return err
	}
	var hdr bytes.Buffer
	if err := appendLine(&hdr, stateRecord{Log: &logHeader{Version: stateVersion, Gen: gen}}); err != nil {
		return err
	}
	path := filepath.Join(n.dataDir, StateLog)
	if err := atomicfile.Write(path, hdr.Bytes(), 0o600); err != nil {
		return err
	}
	lf, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	n.stateLog, n.stateGen, n.snapBytes, n.logBytes = lf, gen, int64(len(data)), int64(hdr.Len())
	return nil
}

func (n *Node) closeLogLocked() {
	if n.stateLog != nil {
		_ = n.stateLog.Close()
		n.stateLog = nil
	}
}

// closeState flushes what is pending and closes the log.
func (n *Node) closeState() error {
	err := n.saveState(true)
	n.saveMu.Lock()
	n.closeLogLocked()
	n.saveMu.Unlock()
	return err
}

// appendLine writes r as one log line: 8 hex digits of the CRC-32 (IEEE) of the JSON, a
// space, the JSON, a newline.
func appendLine(buf *bytes.Buffer, r stateRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Fprintf(buf, "%08x ", crc32.ChecksumIEEE(b))
	buf.Write(b)
	buf.WriteByte('\n')
	return nil
}

// parseLine reads one log line (without its newline); ok is false for a line that does not
// check.
func parseLine(line []byte) (stateRecord, bool) {
	var r stateRecord
	if len(line) < 10 || line[8] != ' ' {
		return r, false
	}
	sum, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil || uint32(sum) != crc32.ChecksumIEEE(line[9:]) {
		return r, false
	}
	if err := json.Unmarshal(line[9:], &r); err != nil {
		return r, false
	}
	return r, true
}

// loadState restores the snapshot and the log written by a previous run (missing files are
// a first start). Entries already expired are dropped.
func (n *Node) loadState() error {
	path := filepath.Join(n.dataDir, StateFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("enclave: state: %w", err)
	default:
		var f stateFile
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("enclave: state %s: %w", path, err)
		}
		if f.Version != stateVersion {
			return fmt.Errorf("enclave: state %s: version %d, want %d", path, f.Version, stateVersion)
		}
		n.stateGen, n.snapBytes = f.Gen, int64(len(data))
		now := n.now()
		n.replay.Restore(f.Replay, now)
		n.mu.Lock()
		for i := range f.Reports {
			if err := n.restoreReportLocked(f.Reports[i], now); err != nil {
				n.mu.Unlock()
				return fmt.Errorf("enclave: state %s: report %d: %w", path, i, err)
			}
		}
		for _, t := range f.Targets {
			n.restoreTargetLocked(t)
		}
		n.vigUntil = f.Vigilance
		n.mu.Unlock()
	}
	if err := n.loadLog(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	for k, d := range n.state {
		if _, ok := n.targets[k]; !ok {
			delete(n.state, k)
			delete(n.until, k)
			continue
		}
		if u := n.until[k]; d == Defer && u.After(now) {
			n.deferred[k] = u
		}
	}
	n.loggedVig = n.vigUntil
	return nil
}

// loadLog applies the log over the snapshot, cuts a torn tail, and opens it for appending.
// A missing log, or one of another generation, leaves stateLog nil: the first flush writes a
// new snapshot and log.
func (n *Node) loadLog() error {
	path := filepath.Join(n.dataDir, StateLog)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("enclave: state log: %w", err)
	}
	good, lines := 0, 0
	now := n.now()
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			break // a last line without its newline: torn
		}
		r, ok := parseLine(data[off : off+end])
		if !ok {
			break
		}
		if lines == 0 {
			if r.Log == nil || r.Log.Version != stateVersion || r.Log.Gen != n.stateGen {
				n.log.Info("enclave state log does not follow the snapshot: ignored (the snapshot holds it)", "file", path)
				return nil
			}
		} else if err := n.applyRecord(r, now); err != nil {
			return fmt.Errorf("enclave: state log %s: line %d: %w", path, lines+1, err)
		}
		lines++
		off += end + 1
		good = off
	}
	if lines == 0 {
		return nil // not even a whole header: the snapshot is all there is
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("enclave: state log: %w", err)
	}
	if good < len(data) {
		n.log.Warn("enclave state log: a torn last write cut off", "file", path, "kept_bytes", good, "dropped_bytes", len(data)-good)
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return fmt.Errorf("enclave: state log: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("enclave: state log: %w", err)
		}
	}
	n.stateLog, n.logBytes = f, int64(good)
	return nil
}

// applyRecord applies one log record over the state loaded so far.
func (n *Node) applyRecord(r stateRecord, now time.Time) error {
	switch {
	case r.Replay != nil:
		n.replay.Restore([]stix.ReplayEntry{*r.Replay}, now)
	case r.Report != nil:
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.restoreReportLocked(*r.Report, now)
	case r.Target != nil:
		n.mu.Lock()
		defer n.mu.Unlock()
		n.restoreTargetLocked(*r.Target)
	case r.Vigilance != nil:
		n.mu.Lock()
		defer n.mu.Unlock()
		n.vigUntil = *r.Vigilance
	default:
		return errors.New("empty record")
	}
	return nil
}

// restoreReportLocked adds a saved report, or updates the one held under its key (a later
// log line is a later state of it); expired ones are skipped.
func (n *Node) restoreReportLocked(sr savedReport, now time.Time) error {
	s := sr.Sighting
	if s == nil || sr.Reporter == "" || !s.Target.Valid() || s.ID == "" {
		return errors.New("incomplete report")
	}
	rk := reportKey(sr.Reporter, s.ID)
	if r, ok := n.byID[rk]; ok {
		if targetKey(r.s.Target) != targetKey(s.Target) {
			return fmt.Errorf("report %s changes its target", s.ID)
		}
		r.group, r.local, r.s, r.received, r.deadline = sr.Group, sr.Local, s, sr.Received, sr.Deadline
		r.relevant, r.why, r.settled, r.confirmed = sr.Relevant, sr.Why, sr.Settled, sr.Confirmed
		r.contradicted, r.revoked = sr.Contradicted, sr.Revoked
		return nil
	}
	if !now.Before(s.ValidUntil) {
		return nil
	}
	r := &report{reporter: sr.Reporter, group: sr.Group, local: sr.Local, s: s, received: sr.Received,
		deadline: sr.Deadline, relevant: sr.Relevant, why: sr.Why, settled: sr.Settled, confirmed: sr.Confirmed,
		contradicted: sr.Contradicted, revoked: sr.Revoked}
	n.byID[rk] = r
	key := targetKey(s.Target)
	n.targets[key] = append(n.targets[key], r)
	n.perReporter[r.reporter]++
	return nil
}

func (n *Node) restoreTargetLocked(t savedTarget) {
	if t.Decision == "" {
		delete(n.state, t.Key)
		delete(n.until, t.Key)
		return
	}
	n.state[t.Key] = t.Decision
	if t.Until.IsZero() {
		delete(n.until, t.Key)
	} else {
		n.until[t.Key] = t.Until
	}
}
