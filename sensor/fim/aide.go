package fim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/sensor"
)

// AIDE reports: `aide --check` with report_url=file:FILE and report_format=plain (the
// default) writes what changed since its database was made. The AIDE source reads the report
// each time AIDE rewrites it and turns every added, removed and changed entry into an event
// (sensor "aide"), with the SHA-256 before and after when the report's details give them.

// AIDEStateFile is where, in the data dir, the AIDE source keeps the last report's hash.
const AIDEStateFile = "sensor-aide.pos"

// MaxAIDEReport bounds the report the source reads.
const MaxAIDEReport = 16 << 20

// ErrNotAIDEReport is returned by ParseAIDEReport for input that is not a plain AIDE report.
var ErrNotAIDEReport = errors.New("fim: not an AIDE report")

// AIDEChange is one entry of an AIDE report.
type AIDEChange struct {
	Kind   string // file.added, file.removed, file.changed
	Path   string
	Flags  string // AIDE's attribute summary, e.g. "f > ...     H     "
	OldSHA string // lowercase hex; "" when the report does not say
	NewSHA string
}

// AIDEReport is a parsed report.
type AIDEReport struct {
	Start   string // the "Start timestamp" line
	Changes []AIDEChange
}

// ParseAIDEReport reads a plain-format AIDE report (AIDE 0.17/0.18). A report without
// differences has no changes. Lines it does not know are skipped; an entry line that cannot
// be read is an error.
func ParseAIDEReport(data []byte) (*AIDEReport, error) {
	if len(data) > MaxAIDEReport {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrNotAIDEReport, MaxAIDEReport)
	}
	r := &AIDEReport{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	section := ""
	byPath := map[string]int{}
	var detail *AIDEChange
	var attr string
	var oldv, newv strings.Builder
	flush := func() {
		if detail != nil && attr == "SHA256" {
			detail.OldSHA, detail.NewSHA = b64hex(oldv.String()), b64hex(newv.String())
		}
		attr = ""
		oldv.Reset()
		newv.Reset()
	}
	sawHeader := false
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Start timestamp:"):
			r.Start, sawHeader = trimmed, true
			continue
		case strings.HasPrefix(line, "AIDE found differences") || strings.HasPrefix(line, "AIDE found NO differences"):
			sawHeader = true
			continue
		case strings.HasPrefix(trimmed, "-----"), trimmed == "":
			if section == "detail" && trimmed == "" {
				flush()
			}
			continue
		case trimmed == "Added entries:":
			section = "file.added"
			continue
		case trimmed == "Removed entries:":
			section = "file.removed"
			continue
		case trimmed == "Changed entries:":
			section = "file.changed"
			continue
		case trimmed == "Detailed information about changes:":
			section = "detail"
			continue
		case strings.HasPrefix(trimmed, "The attributes of the"), strings.HasPrefix(trimmed, "End timestamp:"):
			flush()
			section = "end"
			continue
		case strings.HasPrefix(line, "Summary:") || strings.HasPrefix(line, "  "):
			if section == "" || section == "end" {
				continue // the summary counts, the database attributes
			}
		}
		switch section {
		case "file.added", "file.removed", "file.changed":
			i := strings.Index(line, ": /")
			if i < 0 {
				return nil, fmt.Errorf("%w: line %d: entry without \": /path\"", ErrNotAIDEReport, n)
			}
			c := AIDEChange{Kind: section, Flags: line[:i], Path: line[i+2:]}
			if _, dup := byPath[c.Path]; !dup {
				byPath[c.Path] = len(r.Changes)
				r.Changes = append(r.Changes, c)
			}
		case "detail":
			if p, ok := strings.CutPrefix(line, "File: "); ok {
				flush()
				detail = nil
				if i, ok := byPath[p]; ok {
					detail = &r.Changes[i]
				}
				continue
			}
			if strings.HasPrefix(line, "Directory: ") || strings.HasPrefix(line, "Link: ") {
				flush()
				detail = nil
				continue
			}
			left, right, ok := strings.Cut(line, "|")
			if !ok {
				continue
			}
			if name, val, ok := strings.Cut(left, ":"); ok && strings.TrimSpace(name) != "" && !strings.HasPrefix(left, "             ") {
				flush()
				attr = strings.TrimSpace(name)
				left = val
			}
			oldv.WriteString(strings.TrimSpace(left))
			newv.WriteString(strings.TrimSpace(right))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotAIDEReport, err)
	}
	flush()
	if !sawHeader {
		return nil, fmt.Errorf("%w: no \"Start timestamp\" or \"AIDE found\" line", ErrNotAIDEReport)
	}
	return r, nil
}

// b64hex turns AIDE's base64 digest into lowercase hex; "" when it is not base64 of a
// SHA-256.
func b64hex(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return ""
	}
	return hex.EncodeToString(b)
}

// AIDEOptions configure an AIDESource.
type AIDEOptions struct {
	Report    string        // the report file AIDE writes
	StateFile string        // where the SHA-256 of the last report read is kept; "" for memory only
	Poll      time.Duration // fallback poll; default 5s
	Logger    *slog.Logger
}

// AIDESource reads AIDE reports.
type AIDESource struct {
	o                 AIDEOptions
	log               *slog.Logger
	last              string
	reports, rejected atomic.Uint64
}

var _ sensor.Source = (*AIDESource)(nil)

// NewAIDE returns an AIDE report source.
func NewAIDE(o AIDEOptions) *AIDESource {
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &AIDESource{o: o, log: o.Logger.With("component", ID, "aide_report", o.Report)}
	if o.StateFile != "" {
		if b, err := os.ReadFile(o.StateFile); err == nil {
			s.last = strings.TrimSpace(string(b))
		}
	}
	return s
}

// Name implements sensor.Source.
func (s *AIDESource) Name() string { return "aide:" + s.o.Report }

// Run implements sensor.Source.
func (s *AIDESource) Run(ctx context.Context, out chan<- sensor.Event) error {
	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer w.Close()
		if err := w.Add(filepath.Dir(s.o.Report)); err == nil {
			events = w.Events
		}
	}
	tick := time.NewTicker(s.o.Poll)
	defer tick.Stop()
	for {
		s.read(ctx, out)
		select {
		case <-ctx.Done():
			return nil
		case <-events:
			time.Sleep(Settle) // AIDE writes the report in pieces
		case <-tick.C:
		}
	}
}

// read parses the report and emits its changes unless it is the report read last.
func (s *AIDESource) read(ctx context.Context, out chan<- sensor.Event) {
	f, err := os.Open(s.o.Report)
	if err != nil {
		return // not written yet
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxAIDEReport+1))
	f.Close()
	if err != nil {
		return
	}
	r, err := ParseAIDEReport(data)
	if err != nil {
		s.rejected.Add(1)
		s.log.Warn("unreadable AIDE report skipped", "err", err)
		return
	}
	// A report is known by its content: AIDE's timestamps have one-second resolution.
	h := sha256.Sum256(data)
	id := hex.EncodeToString(h[:])
	if id == s.last {
		return
	}
	for _, c := range r.Changes {
		e := sensor.Event{Time: time.Now(), Sensor: "aide", Kind: c.Kind, Path: c.Path,
			Attrs: map[string]string{"aide_flags": strings.TrimSpace(c.Flags)}}
		if c.NewSHA != "" {
			e.Attrs["sha256"], e.Attrs["expected_sha256"] = c.NewSHA, c.OldSHA
		}
		e.Summary = sensor.Excerpt(fmt.Sprintf("AIDE %s: %s", c.Kind, c.Path))
		e.Excerpt = sensor.Excerpt(fmt.Sprintf("%s: %s expected_sha256=%s sha256=%s (%s)", c.Flags, c.Path, orNone(c.OldSHA, c.OldSHA != ""), orNone(c.NewSHA, c.NewSHA != ""), r.Start))
		if !sensor.Send(ctx, out, e) {
			return
		}
	}
	s.reports.Add(1)
	s.last = id
	if s.o.StateFile != "" {
		if err := atomicfile.Write(s.o.StateFile, []byte(id+"\n"), 0o600); err != nil {
			s.log.Warn("cannot keep the last report's identity", "err", err)
		}
	}
}

// Counters are what the source counted (reports read, reports rejected as malformed), for
// status and metrics.
func (s *AIDESource) Counters() map[string]uint64 {
	return map[string]uint64{"reports": s.reports.Load(), "rejected": s.rejected.Load()}
}
