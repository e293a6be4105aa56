package enclave

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/proteus-defense/proteus/atomicfile"
)

// TrustFile is the name of the persisted trust table inside the data directory.
const TrustFile = "enclave-trust.json"

// TrustParams shape the reputation of peers (config: enclave.trust).
//
// The model is a beta reputation (Jøsang and Ismail, 2002): each peer has r, the weight of
// its reports that this agent's own evidence confirmed, and s, the weight of its reports
// that this agent's own evidence contradicted plus InvalidWeight per invalid message. Its
// score is the expected value of Beta(r + 2a, s + 2(1−a)): (r + 2a) / (r + s + 2), with a
// the base rate Neutral. Both counts fade by half every HalfLife (the forgetting factor of
// the same paper). A pre-trusted peer (Fides, EigenTrust) adds Prior confirmations that do
// not fade. Nothing another peer says moves a score: agreement between peers is not
// evidence (see docs/model.md, "Enclave trust").
type TrustParams struct {
	Neutral       float64       // base rate a: the score of an unknown peer
	InvalidWeight float64       // negative observations one invalid message counts as
	SilenceWeight float64       // negative observation of one contradicted report (0: 1)
	HalfLife      time.Duration // r and s halve every HalfLife
	// Prior maps pre-trusted peers to their non-decaying confirmations.
	Prior map[string]float64
}

// PeerTrust is one peer's row in the trust table.
type PeerTrust struct {
	Peer  string  `json:"peer"`
	Score float64 `json:"score"` // in (0,1), with r and s decayed to now
	// Positive and Negative are r and s decayed to Updated.
	Positive float64   `json:"positive"`
	Negative float64   `json:"negative"`
	Prior    float64   `json:"prior,omitempty"` // pre-trusted confirmations (not persisted)
	Updated  time.Time `json:"updated"`
	// Counts of what happened, never decayed.
	Confirmed    int `json:"confirmed"`
	Contradicted int `json:"contradicted"`
	Invalid      int `json:"invalid"`
}

// Trust is the per-peer trust table, persisted with atomic writes so a restarted agent
// keeps what it learned. Changes are written at most once per saveEvery by a background
// saver (so a burst of reports costs one fsync, not one per report) and on Close; a crash
// loses at most the last saveEvery of changes. Safe for concurrent use.
type Trust struct {
	mu    sync.Mutex
	path  string // empty: not persisted
	p     TrustParams
	now   func() time.Time
	peers map[string]*PeerTrust

	dirty chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// saveEvery bounds how often the trust table is written.
const saveEvery = time.Second

// trustVersion 2 is the beta reputation; a version 1 table (scores raised by agreement
// between peers) is dropped on load, because that is exactly what no longer earns trust.
const trustVersion = 2

type trustFile struct {
	Version int          `json:"version"`
	Peers   []*PeerTrust `json:"peers"`
}

// OpenTrust loads the table from path (a missing file is an empty table). An empty path
// keeps the table in memory only. now may be nil (time.Now).
func OpenTrust(path string, p TrustParams, now func() time.Time) (*Trust, error) {
	if now == nil {
		now = time.Now
	}
	if p.InvalidWeight < 1 {
		p.InvalidWeight = 1
	}
	if p.SilenceWeight <= 0 {
		p.SilenceWeight = 1
	}
	t := &Trust{path: path, p: p, now: now, peers: map[string]*PeerTrust{}}
	if path == "" {
		return t, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.startSaver()
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("enclave: trust: %w", err)
	}
	var f trustFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("enclave: trust %s: %w", path, err)
	}
	switch f.Version {
	case 1:
		f.Peers = nil // agreement-based scores: start over
	case trustVersion:
	default:
		return nil, fmt.Errorf("enclave: trust %s: version %d, want %d", path, f.Version, trustVersion)
	}
	for _, r := range f.Peers {
		if r == nil || r.Peer == "" || !finiteNonNeg(r.Positive) || !finiteNonNeg(r.Negative) {
			return nil, fmt.Errorf("enclave: trust %s: bad row %+v", path, r)
		}
		r.Prior = 0
		t.peers[r.Peer] = r
	}
	t.startSaver()
	return t, nil
}

func finiteNonNeg(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }

func (t *Trust) startSaver() {
	t.dirty, t.stop, t.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(t.done)
		for {
			select {
			case <-t.stop:
				return
			case <-t.dirty:
				_ = t.Flush() // best effort; Close reports errors
				select {
				case <-t.stop:
					return
				case <-time.After(saveEvery):
				}
			}
		}
	}()
}

// Close stops the background saver and writes the table.
func (t *Trust) Close() error {
	if t.stop == nil {
		return nil
	}
	t.once.Do(func() { close(t.stop) })
	<-t.done
	return t.Flush()
}

// fade is the forgetting factor from r.Updated to now.
func (t *Trust) fade(r *PeerTrust, now time.Time) float64 {
	dt := now.Sub(r.Updated)
	if dt <= 0 || t.p.HalfLife <= 0 {
		return 1
	}
	return math.Exp2(-float64(dt) / float64(t.p.HalfLife))
}

// expectation is the beta reputation's expected value.
func (t *Trust) expectation(pos, neg float64) float64 {
	return (pos + 2*t.p.Neutral) / (pos + neg + 2)
}

func (t *Trust) scoreLocked(peer string, now time.Time) (score, pos float64) {
	prior := t.p.Prior[peer]
	r, ok := t.peers[peer]
	if !ok {
		return t.expectation(prior, 0), prior
	}
	f := t.fade(r, now)
	pos = r.Positive*f + prior
	return t.expectation(pos, r.Negative*f), pos
}

// Score is peer's current trust in (0,1); an unknown peer has the neutral score (or its
// pre-trusted prior).
func (t *Trust) Score(peer string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, _ := t.scoreLocked(peer, t.now())
	return s
}

// Established reports whether peer's score is at least min and rests on at least one
// confirmation (its own or a pre-trusted prior): a score the base rate alone cannot give.
func (t *Trust) Established(peer string, min float64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, pos := t.scoreLocked(peer, t.now())
	return s >= min && pos >= 1
}

// update fades peer's counts to now, applies f and schedules a save.
func (t *Trust) update(peer string, f func(r *PeerTrust)) float64 {
	t.mu.Lock()
	now := t.now()
	r, ok := t.peers[peer]
	if !ok {
		r = &PeerTrust{Peer: peer, Updated: now}
		t.peers[peer] = r
	}
	k := t.fade(r, now)
	r.Positive, r.Negative, r.Updated = r.Positive*k, r.Negative*k, now
	f(r)
	s, _ := t.scoreLocked(peer, now)
	t.mu.Unlock()
	if t.dirty != nil {
		select {
		case t.dirty <- struct{}{}:
		default:
		}
	}
	return s
}

// Confirmed records that this agent's own evidence confirmed one of peer's reports and
// returns the new score.
func (t *Trust) Confirmed(peer string) float64 {
	return t.update(peer, func(r *PeerTrust) { r.Confirmed++; r.Positive++ })
}

// Contradicted records that this agent's own evidence contradicted one of peer's reports
// (its exposure matched and its sensors saw nothing of the target within the window).
func (t *Trust) Contradicted(peer string) float64 {
	return t.update(peer, func(r *PeerTrust) { r.Contradicted++; r.Negative += t.p.SilenceWeight })
}

// Invalid records an invalid message from peer: InvalidWeight contradictions at once.
func (t *Trust) Invalid(peer string) float64 {
	return t.update(peer, func(r *PeerTrust) { r.Invalid++; r.Negative += t.p.InvalidWeight })
}

// Snapshot returns every row (and every pre-trusted peer) with its score at now, sorted by
// peer.
func (t *Trust) Snapshot() []PeerTrust {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	out := make([]PeerTrust, 0, len(t.peers))
	for _, r := range t.peers {
		c := *r
		k := t.fade(r, now)
		c.Positive, c.Negative, c.Prior = r.Positive*k, r.Negative*k, t.p.Prior[r.Peer]
		c.Score, _ = t.scoreLocked(r.Peer, now)
		out = append(out, c)
	}
	for p, prior := range t.p.Prior {
		if _, ok := t.peers[p]; !ok {
			out = append(out, PeerTrust{Peer: p, Prior: prior, Score: t.expectation(prior, 0)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

func (t *Trust) marshalLocked() []byte {
	if t.path == "" {
		return nil
	}
	f := trustFile{Version: trustVersion, Peers: make([]*PeerTrust, 0, len(t.peers))}
	for _, r := range t.peers {
		c := *r
		c.Score, c.Prior = 0, 0
		f.Peers = append(f.Peers, &c)
	}
	sort.Slice(f.Peers, func(i, j int) bool { return f.Peers[i].Peer < f.Peers[j].Peer })
	data, _ := json.MarshalIndent(f, "", "  ")
	return data
}

// saveMu orders concurrent saves so an older table never overwrites a newer one.
var saveMu sync.Mutex

// Flush writes the table now and reports any error.
func (t *Trust) Flush() error {
	t.mu.Lock()
	data := t.marshalLocked()
	t.mu.Unlock()
	if data == nil {
		return nil
	}
	saveMu.Lock()
	defer saveMu.Unlock()
	return atomicfile.Write(t.path, data, 0o600)
}
