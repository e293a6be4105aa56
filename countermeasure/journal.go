package countermeasure

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/strictjson"
)

const journalVersion = 1

// maxJournalSize bounds what load reads (a journal of live actions is small).
const maxJournalSize = 64 << 20

type journalFile struct {
	Version int      `json:"version"`
	Actions []Action `json:"actions"`
}

// journal is the on-disk list of active actions.
type journal struct {
	dir        string
	beforeSave func() // test hook: runs at the start of every save
}

func (j *journal) path() string { return filepath.Join(j.dir, JournalFile) }

// load reads the journal. A missing file is an empty journal. An unreadable one is moved
// aside to .bad and reported with ErrJournalCorrupt.
func (j *journal) load() ([]Action, error) {
	data, err := os.ReadFile(j.path())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("countermeasure: journal: %w", err)
	}
	actions, perr := parseJournal(data)
	if perr == nil {
		return actions, nil
	}
	if err := os.Rename(j.path(), j.path()+".bad"); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (and keeping a .bad copy failed: %v)", ErrJournalCorrupt, j.path(), perr, err)
	}
	return nil, fmt.Errorf("%w: %s: %v", ErrJournalCorrupt, j.path(), perr)
}

func parseJournal(data []byte) ([]Action, error) {
	if len(data) > maxJournalSize {
		return nil, fmt.Errorf("%d bytes, max %d", len(data), maxJournalSize)
	}
	var f journalFile
	if err := strictjson.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Version != journalVersion {
		return nil, fmt.Errorf("version %d, want %d", f.Version, journalVersion)
	}
	seen := map[string]bool{}
	for i, a := range f.Actions {
		switch {
		case a.ID == "" || a.Actuator == "":
			return nil, fmt.Errorf("actions[%d]: id and actuator are required", i)
		case seen[a.ID]:
			return nil, fmt.Errorf("actions[%d]: duplicate id %q", i, a.ID)
		case a.Kind != KindBlock && a.Kind != KindVigilance && a.Kind != KindRedirect:
			return nil, fmt.Errorf("actions[%d]: kind %q", i, a.Kind)
		case a.Expires.IsZero():
			return nil, fmt.Errorf("actions[%d]: no expiry", i)
		}
		seen[a.ID] = true
	}
	return f.Actions, nil
}

// save writes the journal atomically: temp file in the same dir, fsync, rename, fsync dir.
func (j *journal) save(actions []Action) error {
	if j.beforeSave != nil {
		j.beforeSave()
	}
	if actions == nil {
		actions = []Action{}
	}
	data, err := json.Marshal(journalFile{Version: journalVersion, Actions: actions})
	if err != nil {
		return fmt.Errorf("countermeasure: journal: %w", err)
	}
	if err := atomicfile.Write(j.path(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("countermeasure: journal: %w", err)
	}
	return nil
}
