// Package store is Proteus's embedded audit store: every decision the engine takes, with the
// evidence behind it (bounded excerpts), the numbers (Pr(attack), α, β), the verdict, the
// attack stage, the game's chosen strategy and signal with its payoffs, and the
// countermeasures with their revert times. It is one SQLite database in the data dir
// (DATA-DIR/audit.db, WAL, synchronous=FULL) through the pure-Go driver modernc.org/sqlite,
// with versioned migrations and a retention sweep. Decisions stay after their
// countermeasures expire.
//
// Writes go through Writer, a bounded asynchronous queue: Submit never blocks (a full queue
// drops and counts the decision), and a decision whose done channel reported nil is
// committed and survives a kill -9.
//
// It imports the standard library and the SQLite driver only; it must not import engine.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers "sqlite"
)

// File is the database's name inside the data dir.
const File = "audit.db"

// Bounds on what one decision may hold.
const (
	MaxEvidence        = 64
	MaxExcerpt         = 2048
	MaxSummary         = 512
	MaxCountermeasures = 32
	MaxDetail          = 256 << 10
)

// ErrNotFound is returned by Get for an unknown ID.
var ErrNotFound = errors.New("store: decision not found")

// Decision is one decision of the engine: the JSON of `proteus decisions`.
type Decision struct {
	ID              string           `json:"id"`
	Time            time.Time        `json:"time"`
	Asset           string           `json:"asset"`
	Source          string           `json:"source"`
	Verdict         string           `json:"verdict"` // act, defer, ignore
	Probability     float64          `json:"probability"`
	Alpha           float64          `json:"alpha"`
	Beta            float64          `json:"beta"`
	Stage           int              `json:"stage"` // 1-based model stage; 0 when none
	StageID         string           `json:"stage_id,omitempty"`
	Attack          string           `json:"attack,omitempty"`
	Strategy        string           `json:"strategy,omitempty"`
	Signal          string           `json:"signal,omitempty"`
	Countermeasures []Countermeasure `json:"countermeasures"`
	Evidence        []Evidence       `json:"evidence"`
	// Reverts are the countermeasures an operator reverted before they expired, oldest first
	// (Get fills them; List leaves them out).
	Reverts []Revert `json:"reverts,omitempty"`
	// Detail is the rest of the story as JSON (the game's solution for the stage, the live
	// parameters, payoffs); shown by `proteus decisions show`.
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Countermeasure is one action a decision took.
type Countermeasure struct {
	Kind    string    `json:"kind"`
	Target  string    `json:"target,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	ID      string    `json:"id,omitempty"` // the countermeasure manager's action ID
	Error   string    `json:"error,omitempty"`
}

// Revert is an operator's early revert of one of a decision's countermeasures.
type Revert struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"` // the countermeasure's action ID (Countermeasure.ID)
	By     string    `json:"by"`     // who asked, as the API saw it (e.g. "dashboard session 1a2b3c4d from 127.0.0.1")
}

// MaxRevertBy bounds Revert.By.
const MaxRevertBy = 256

// Evidence is one event behind a decision.
type Evidence struct {
	Sensor  string    `json:"sensor"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind,omitempty"`
	Summary string    `json:"summary"`
	Excerpt string    `json:"excerpt,omitempty"`
}

// Store is an open audit database.
type Store struct {
	db   *sql.DB
	path string
}

// Open opens (creating if needed) DATA-DIR/audit.db and migrates it to the current schema.
func Open(dataDir string) (*Store, error) {
	path := filepath.Join(dataDir, File)
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(5000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serializes writes anyway
	s := &Store{db: db, path: path}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// migrations are applied in order; migration i brings the schema to version i+1. Never edit
// one that has shipped: append.
var migrations = []string{
	`CREATE TABLE decisions (
		id TEXT PRIMARY KEY,
		time_ns INTEGER NOT NULL,
		asset TEXT NOT NULL,
		source TEXT NOT NULL,
		verdict TEXT NOT NULL CHECK (verdict IN ('act','defer','ignore')),
		probability REAL NOT NULL,
		alpha REAL NOT NULL,
		beta REAL NOT NULL,
		stage INTEGER NOT NULL,
		stage_id TEXT NOT NULL,
		attack TEXT NOT NULL,
		strategy TEXT NOT NULL,
		signal TEXT NOT NULL,
		countermeasures TEXT NOT NULL,
		evidence TEXT NOT NULL,
		detail TEXT NOT NULL
	);
	CREATE INDEX decisions_time ON decisions(time_ns);
	CREATE INDEX decisions_source ON decisions(source, time_ns);
	CREATE INDEX decisions_asset ON decisions(asset, time_ns);`,
	`CREATE TABLE reverts (
		decision_id TEXT NOT NULL,
		action_id TEXT NOT NULL,
		time_ns INTEGER NOT NULL,
		by TEXT NOT NULL
	);
	CREATE INDEX reverts_decision ON reverts(decision_id, time_ns);`,
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
	case err != nil:
		return fmt.Errorf("store: migrate: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("store: %s has schema version %d; this build knows up to %d", s.path, v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store: migration %d: %w", v+1, err)
		}
	}
	return nil
}

// Version is the database's schema version.
func (s *Store) Version(ctx context.Context) (int, error) {
	var v int
	if err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return v, nil
}

// bound cuts what a decision holds to the store's limits and checks the rest.
func bound(d *Decision) error {
	switch {
	case d.ID == "" || len(d.ID) > 128:
		return fmt.Errorf("store: decision id %q", d.ID)
	case d.Verdict != "act" && d.Verdict != "defer" && d.Verdict != "ignore":
		return fmt.Errorf("store: decision %s: verdict %q", d.ID, d.Verdict)
	case len(d.Detail) > MaxDetail:
		return fmt.Errorf("store: decision %s: detail of %d bytes (max %d)", d.ID, len(d.Detail), MaxDetail)
	}
	if len(d.Detail) > 0 && !json.Valid(d.Detail) {
		return fmt.Errorf("store: decision %s: detail is not JSON", d.ID)
	}
	// Copy before cutting: the caller keeps its decision as it was.
	if len(d.Evidence) > MaxEvidence {
		d.Evidence = d.Evidence[len(d.Evidence)-MaxEvidence:] // the latest
	}
	d.Evidence = append([]Evidence(nil), d.Evidence...)
	for i := range d.Evidence {
		d.Evidence[i].Summary = cut(d.Evidence[i].Summary, MaxSummary)
		d.Evidence[i].Excerpt = cut(d.Evidence[i].Excerpt, MaxExcerpt)
	}
	if len(d.Countermeasures) > MaxCountermeasures {
		d.Countermeasures = d.Countermeasures[:MaxCountermeasures]
	}
	return nil
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Put writes decisions in one transaction and returns once they are committed.
func (s *Store) Put(ctx context.Context, ds ...Decision) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO decisions
		(id, time_ns, asset, source, verdict, probability, alpha, beta, stage, stage_id, attack, strategy, signal, countermeasures, evidence, detail)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer stmt.Close()
	for _, d := range ds {
		if err := bound(&d); err != nil {
			return err
		}
		cm, _ := json.Marshal(nonNil(d.Countermeasures))
		ev, _ := json.Marshal(nonNil(d.Evidence))
		detail := string(d.Detail)
		if detail == "" {
			detail = "{}"
		}
		if _, err := stmt.ExecContext(ctx, d.ID, d.Time.UnixNano(), d.Asset, d.Source, d.Verdict, d.Probability, d.Alpha, d.Beta,
			d.Stage, d.StageID, d.Attack, d.Strategy, d.Signal, string(cm), string(ev), detail); err != nil {
			return fmt.Errorf("store: put %s: %w", d.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// AppendEvidence adds evs to decision id's evidence, in one transaction: what a redirected
// client did after its decision. Evidence beyond MaxEvidence is left out (the first events,
// those the decision was made on, stay).
func (s *Store) AppendEvidence(ctx context.Context, id string, evs ...Evidence) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer tx.Rollback()
	var raw string
	if err := tx.QueryRowContext(ctx, `SELECT evidence FROM decisions WHERE id = ?`, id).Scan(&raw); err != nil {
		return fmt.Errorf("store: append evidence to %s: %w", id, err)
	}
	d := Decision{ID: id, Verdict: "ignore"}
	if err := json.Unmarshal([]byte(raw), &d.Evidence); err != nil {
		return fmt.Errorf("store: decision %s: evidence: %w", id, err)
	}
	// The evidence the decision was made on stays: what comes after fills the room left.
	d.Evidence = append(d.Evidence, evs[:min(len(evs), max(MaxEvidence-len(d.Evidence), 0))]...)
	if err := bound(&d); err != nil {
		return err
	}
	ev, _ := json.Marshal(nonNil(d.Evidence))
	if _, err := tx.ExecContext(ctx, `UPDATE decisions SET evidence = ? WHERE id = ?`, string(ev), id); err != nil {
		return fmt.Errorf("store: append evidence to %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Brief drops the detail and the evidence excerpts of ds in place: what the lists show (the
// API's and `proteus decisions`), where one decision's page has the whole story.
func Brief(ds []Decision) {
	for i := range ds {
		ds[i].Detail = nil
		for j := range ds[i].Evidence {
			ds[i].Evidence[j].Excerpt = ""
		}
	}
}

// Filter selects decisions for List. Zero fields select everything.
type Filter struct {
	Since   time.Time
	Source  string
	Asset   string
	Verdict string // act, defer or ignore
	Limit   int    // default 1000
}

const columns = `id, time_ns, asset, source, verdict, probability, alpha, beta, stage, stage_id, attack, strategy, signal, countermeasures, evidence, detail`

// List returns the decisions f selects, oldest first (the newest Limit of them).
func (s *Store) List(ctx context.Context, f Filter) ([]Decision, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where, args = append(where, "time_ns >= ?"), append(args, f.Since.UnixNano())
	}
	if f.Source != "" {
		where, args = append(where, "source = ?"), append(args, f.Source)
	}
	if f.Asset != "" {
		where, args = append(where, "asset = ?"), append(args, f.Asset)
	}
	if f.Verdict != "" {
		where, args = append(where, "verdict = ?"), append(args, f.Verdict)
	}
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	q := `SELECT ` + columns + ` FROM decisions`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q = `SELECT * FROM (` + q + ` ORDER BY time_ns DESC, id DESC LIMIT ?) ORDER BY time_ns, id`
	args = append(args, f.Limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	defer rows.Close()
	out := []Decision{}
	for rows.Next() {
		d, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	return out, nil
}

// Get returns one decision.
func (s *Store) Get(ctx context.Context, id string) (Decision, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM decisions WHERE id = ?`, id)
	if err != nil {
		return Decision{}, fmt.Errorf("store: get: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Decision{}, fmt.Errorf("store: get: %w", err)
		}
		return Decision{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	d, err := scan(rows)
	if err != nil {
		return Decision{}, err
	}
	rows.Close()
	if d.Reverts, err = s.reverts(ctx, id); err != nil {
		return Decision{}, err
	}
	return d, nil
}

// PutRevert records that r.Action of decision id was reverted; the decision must exist and
// hold a countermeasure with that action ID.
func (s *Store) PutRevert(ctx context.Context, id string, r Revert) error {
	d, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	found := false
	for _, c := range d.Countermeasures {
		found = found || (c.ID != "" && c.ID == r.Action)
	}
	if !found {
		return fmt.Errorf("%w: decision %s has no countermeasure %q", ErrNotFound, id, r.Action)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO reverts (decision_id, action_id, time_ns, by) VALUES (?,?,?,?)`,
		id, r.Action, r.Time.UnixNano(), cut(r.By, MaxRevertBy)); err != nil {
		return fmt.Errorf("store: revert of %s: %w", id, err)
	}
	return nil
}

// reverts loads the reverts of decision id, oldest first.
func (s *Store) reverts(ctx context.Context, id string) ([]Revert, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT action_id, time_ns, by FROM reverts WHERE decision_id = ? ORDER BY time_ns, rowid`, id)
	if err != nil {
		return nil, fmt.Errorf("store: reverts of %s: %w", id, err)
	}
	defer rows.Close()
	var out []Revert
	for rows.Next() {
		var r Revert
		var ns int64
		if err := rows.Scan(&r.Action, &ns, &r.By); err != nil {
			return nil, fmt.Errorf("store: reverts of %s: %w", id, err)
		}
		r.Time = time.Unix(0, ns).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

func scan(rows *sql.Rows) (Decision, error) {
	var d Decision
	var ns int64
	var cm, ev, detail string
	if err := rows.Scan(&d.ID, &ns, &d.Asset, &d.Source, &d.Verdict, &d.Probability, &d.Alpha, &d.Beta, &d.Stage, &d.StageID,
		&d.Attack, &d.Strategy, &d.Signal, &cm, &ev, &detail); err != nil {
		return Decision{}, fmt.Errorf("store: scan: %w", err)
	}
	d.Time = time.Unix(0, ns).UTC()
	if err := json.Unmarshal([]byte(cm), &d.Countermeasures); err != nil {
		return Decision{}, fmt.Errorf("store: decision %s: countermeasures: %w", d.ID, err)
	}
	if err := json.Unmarshal([]byte(ev), &d.Evidence); err != nil {
		return Decision{}, fmt.Errorf("store: decision %s: evidence: %w", d.ID, err)
	}
	if detail != "{}" {
		d.Detail = json.RawMessage(detail)
	}
	return d, nil
}

// Bucket is one interval of a Timeline: the decisions in it by verdict, and the
// countermeasures they took.
type Bucket struct {
	Start           time.Time `json:"start"`
	Act             int       `json:"act"`
	Defer           int       `json:"defer"`
	Ignore          int       `json:"ignore"`
	Countermeasures int       `json:"countermeasures"`
}

// SourceCount is one source address of a Timeline's top sources.
type SourceCount struct {
	Source    string    `json:"source"`
	Decisions int       `json:"decisions"`
	Acts      int       `json:"acts"`
	Last      time.Time `json:"last"`
}

// Timeline is the decisions of [Since, Until) in n equal buckets, and the sources with the
// most decisions in that span.
type Timeline struct {
	Since      time.Time     `json:"since"`
	Until      time.Time     `json:"until"`
	Bucket     float64       `json:"bucket_s"` // each bucket's length in seconds
	Buckets    []Bucket      `json:"buckets"`
	TopSources []SourceCount `json:"top_sources"`
}

// Timeline counts the decisions of [since, until) in n buckets (1 to 1000) and lists the top
// sources (at most top of them, most decisions first).
func (s *Store) Timeline(ctx context.Context, since, until time.Time, n, top int) (Timeline, error) {
	if n < 1 || n > 1000 || !until.After(since) {
		return Timeline{}, fmt.Errorf("store: timeline of %d buckets over [%s, %s)", n, since, until)
	}
	width := until.Sub(since).Nanoseconds() / int64(n)
	if width < 1 {
		width = 1
	}
	tl := Timeline{Since: since.UTC(), Until: since.Add(time.Duration(width * int64(n))).UTC(), Bucket: float64(width) / 1e9,
		Buckets: make([]Bucket, n), TopSources: []SourceCount{}}
	for i := range tl.Buckets {
		tl.Buckets[i].Start = since.Add(time.Duration(width * int64(i))).UTC()
	}
	lo, hi := since.UnixNano(), tl.Until.UnixNano()
	rows, err := s.db.QueryContext(ctx, `SELECT (time_ns - ?) / ?, verdict, count(*), sum(json_array_length(countermeasures))
		FROM decisions WHERE time_ns >= ? AND time_ns < ? GROUP BY 1, 2`, lo, width, lo, hi)
	if err != nil {
		return Timeline{}, fmt.Errorf("store: timeline: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b int64
		var verdict string
		var count, cms int
		if err := rows.Scan(&b, &verdict, &count, &cms); err != nil {
			return Timeline{}, fmt.Errorf("store: timeline: %w", err)
		}
		if b < 0 || b >= int64(n) {
			continue
		}
		k := &tl.Buckets[b]
		switch verdict {
		case "act":
			k.Act += count
		case "defer":
			k.Defer += count
		case "ignore":
			k.Ignore += count
		}
		k.Countermeasures += cms
	}
	if err := rows.Err(); err != nil {
		return Timeline{}, fmt.Errorf("store: timeline: %w", err)
	}
	rows.Close()
	if top <= 0 {
		return tl, nil
	}
	srcs, err := s.db.QueryContext(ctx, `SELECT source, count(*), sum(verdict = 'act'), max(time_ns) FROM decisions
		WHERE time_ns >= ? AND time_ns < ? AND source != '' GROUP BY source ORDER BY 2 DESC, 4 DESC LIMIT ?`, lo, hi, top)
	if err != nil {
		return Timeline{}, fmt.Errorf("store: top sources: %w", err)
	}
	defer srcs.Close()
	for srcs.Next() {
		var c SourceCount
		var last int64
		if err := srcs.Scan(&c.Source, &c.Decisions, &c.Acts, &last); err != nil {
			return Timeline{}, fmt.Errorf("store: top sources: %w", err)
		}
		c.Last = time.Unix(0, last).UTC()
		tl.TopSources = append(tl.TopSources, c)
	}
	if err := srcs.Err(); err != nil {
		return Timeline{}, fmt.Errorf("store: top sources: %w", err)
	}
	return tl, nil
}

// DeleteBefore removes decisions older than t and returns how many.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	r, err := s.db.ExecContext(ctx, `DELETE FROM decisions WHERE time_ns < ?`, t.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: retention: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM reverts WHERE decision_id NOT IN (SELECT id FROM decisions)`); err != nil {
		return 0, fmt.Errorf("store: retention: %w", err)
	}
	return r.RowsAffected()
}

// OpenExisting opens DATA-DIR/audit.db only if it exists (readers such as `proteus
// decisions` must not create an empty store where the agent keeps none).
func OpenExisting(dataDir string) (*Store, error) {
	path := filepath.Join(dataDir, File)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("store: no audit store in %s (the agent writes one when engine.model is set): %w", dataDir, err)
	}
	return Open(dataDir)
}
