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
type TrustParams struct {
	Neutral        float64       // score of an unknown peer; scores decay toward it
	Reward         float64       // a corroborated report closes this fraction of the gap to 1
	Penalty        float64       // a report that never materializes loses this fraction of the score
	InvalidPenalty float64       // an invalid message loses this fraction of the score
	HalfLife       time.Duration // the distance to Neutral halves every HalfLife
}

// PeerTrust is one peer's row in the trust table.
type PeerTrust struct {
	Peer         string    `json:"peer"`
	Score        float64   `json:"score"`   // in [0,1], decayed to Updated
	Updated      time.Time `json:"updated"` // when Score was last changed
	Corroborated int       `json:"corroborated"`
	Unconfirmed  int       `json:"unconfirmed"`
	Invalid      int       `json:"invalid"`
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
	if f.Version != 1 {
		return nil, fmt.Errorf("enclave: trust %s: version %d, want 1", path, f.Version)
	}
	for _, r := range f.Peers {
		if r == nil || r.Peer == "" || math.IsNaN(r.Score) || r.Score < 0 || r.Score > 1 {
			return nil, fmt.Errorf("enclave: trust %s: bad row %+v", path, r)
		}
		t.peers[r.Peer] = r
	}
	t.startSaver()
	return t, nil
}

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

// decayed is r's score decayed from r.Updated to now.
func (t *Trust) decayed(r *PeerTrust, now time.Time) float64 {
	dt := now.Sub(r.Updated)
	if dt <= 0 || t.p.HalfLife <= 0 {
		return r.Score
	}
	f := math.Exp2(-float64(dt) / float64(t.p.HalfLife))
	return t.p.Neutral + (r.Score-t.p.Neutral)*f
}

// Score is peer's current trust in [0,1]; an unknown peer has the neutral score.
func (t *Trust) Score(peer string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.peers[peer]
	if !ok {
		return t.p.Neutral
	}
	return t.decayed(r, t.now())
}

// update decays peer's score to now, applies f and saves the table.
func (t *Trust) update(peer string, f func(r *PeerTrust, s float64) float64) float64 {
	t.mu.Lock()
	now := t.now()
	r, ok := t.peers[peer]
	if !ok {
		r = &PeerTrust{Peer: peer, Score: t.p.Neutral, Updated: now}
		t.peers[peer] = r
	}
	s := math.Min(1, math.Max(0, f(r, t.decayed(r, now))))
	r.Score, r.Updated = s, now
	t.mu.Unlock()
	if t.dirty != nil {
		select {
		case t.dirty <- struct{}{}:
		default:
		}
	}
	return s
}

// Corroborated records that one of peer's reports was confirmed and returns the new score.
func (t *Trust) Corroborated(peer string) float64 {
	return t.update(peer, func(r *PeerTrust, s float64) float64 {
		r.Corroborated++
		return s + t.p.Reward*(1-s)
	})
}

// Unconfirmed records that one of peer's reports never materialized within its window.
func (t *Trust) Unconfirmed(peer string) float64 {
	return t.update(peer, func(r *PeerTrust, s float64) float64 {
		r.Unconfirmed++
		return s * (1 - t.p.Penalty)
	})
}

// Invalid records an invalid message from peer.
func (t *Trust) Invalid(peer string) float64 {
	return t.update(peer, func(r *PeerTrust, s float64) float64 {
		r.Invalid++
		return s * (1 - t.p.InvalidPenalty)
	})
}

// Snapshot returns every row with its score decayed to now, sorted by peer.
func (t *Trust) Snapshot() []PeerTrust {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	out := make([]PeerTrust, 0, len(t.peers))
	for _, r := range t.peers {
		c := *r
		c.Score = t.decayed(r, now)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

func (t *Trust) marshalLocked() []byte {
	if t.path == "" {
		return nil
	}
	f := trustFile{Version: 1, Peers: make([]*PeerTrust, 0, len(t.peers))}
	for _, r := range t.peers {
		c := *r
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
