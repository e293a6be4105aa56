package enclave

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/stix"
)

// StateFile is the journal of what the enclave must remember across a restart: the replay
// guard (seen indicator versions with their expiry and target), the report table with
// revocations and contradictions, and what is applied per target. It is written with
// atomic replaces at most once per saveEvery while something changed, and on Close; a
// crash loses at most the last saveEvery of changes.
const StateFile = "enclave-state.json"

const stateVersion = 1

type stateFile struct {
	Version   int                `json:"version"`
	Saved     time.Time          `json:"saved"`
	Replay    []stix.ReplayEntry `json:"replay"`
	Reports   []savedReport      `json:"reports"`
	Targets   []savedTarget      `json:"targets"`
	Vigilance time.Time          `json:"vigilance,omitzero"`
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

type savedTarget struct {
	Key      string    `json:"key"`
	Decision Decision  `json:"decision"`
	Until    time.Time `json:"until,omitzero"`
}

// dirtyLocked marks the report table changed (n.mu held).
func (n *Node) dirtyLocked() { n.stateDirty.Store(true) }

// dirtyReplay marks the replay guard changed.
func (n *Node) dirtyReplay() { n.stateDirty.Store(true) }

// saveState writes the journal when something changed and saveEvery has passed since the
// last write (or always, with force).
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
	if !n.stateDirty.Swap(false) && !force {
		return nil
	}
	n.lastSave = now
	f := stateFile{Version: stateVersion, Saved: n.now().UTC(), Replay: n.replay.Entries()}
	n.mu.Lock()
	for _, rs := range n.targets {
		for _, r := range rs {
			f.Reports = append(f.Reports, savedReport{Reporter: r.reporter, Group: r.group, Local: r.local, Sighting: r.s,
				Received: r.received, Deadline: r.deadline, Relevant: r.relevant, Why: r.why, Settled: r.settled,
				Confirmed: r.confirmed, Contradicted: r.contradicted, Revoked: r.revoked})
		}
	}
	for k, d := range n.state {
		f.Targets = append(f.Targets, savedTarget{Key: k, Decision: d, Until: n.until[k]})
	}
	f.Vigilance = n.vigUntil
	n.mu.Unlock()
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("enclave: state: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(n.dataDir, StateFile), data, 0o600); err != nil {
		n.stateDirty.Store(true)
		return fmt.Errorf("enclave: state: %w", err)
	}
	return nil
}

// loadState restores the journal written by a previous run (a missing file is a first
// start). Entries already expired are dropped.
func (n *Node) loadState() error {
	path := filepath.Join(n.dataDir, StateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("enclave: state: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("enclave: state %s: %w", path, err)
	}
	if f.Version != stateVersion {
		return fmt.Errorf("enclave: state %s: version %d, want %d", path, f.Version, stateVersion)
	}
	now := n.now()
	n.replay.Restore(f.Replay, now)
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, sr := range f.Reports {
		s := sr.Sighting
		if s == nil || sr.Reporter == "" || !s.Target.Valid() || s.ID == "" {
			return fmt.Errorf("enclave: state %s: report %d is incomplete", path, i)
		}
		if !now.Before(s.ValidUntil) {
			continue
		}
		rk := reportKey(sr.Reporter, s.ID)
		if _, dup := n.byID[rk]; dup {
			continue
		}
		r := &report{reporter: sr.Reporter, group: sr.Group, local: sr.Local, s: s, received: sr.Received,
			deadline: sr.Deadline, relevant: sr.Relevant, why: sr.Why, settled: sr.Settled, confirmed: sr.Confirmed,
			contradicted: sr.Contradicted, revoked: sr.Revoked}
		n.byID[rk] = r
		key := targetKey(s.Target)
		n.targets[key] = append(n.targets[key], r)
		n.perReporter[r.reporter]++
	}
	for _, t := range f.Targets {
		if _, ok := n.targets[t.Key]; !ok {
			continue
		}
		n.state[t.Key] = t.Decision
		if !t.Until.IsZero() {
			n.until[t.Key] = t.Until
		}
		if t.Decision == Defer && t.Until.After(now) {
			n.deferred[t.Key] = t.Until
		}
	}
	n.vigUntil = f.Vigilance
	return nil
}
