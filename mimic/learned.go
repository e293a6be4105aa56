package mimic

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/strictjson"
)

// The learned-noise file keeps what the gateway learned across restarts, so a restarted
// gateway does not count the same volatile fields as dissent again (and ask for rebuilds)
// until it has relearned them:
//
//	{"version": 1, "routes": {"default": ["header:X-Request-Id"], "/api/": ["json:/generated_at"]}}
//
// Routes are the route prefixes of Options.Routes and "default"; fields are "header:" plus a
// canonical header name or "json:" plus a JSON pointer, as Gateway.Learned lists them.
type learnedFile struct {
	Version int                 `json:"version"`
	Routes  map[string][]string `json:"routes"`
}

const (
	learnedVersion  = 1
	maxLearnedBytes = 4 << 20
)

// LoadLearned reads a learned-noise file. A missing file is no noise learned yet (nil, nil);
// anything else that is not a valid file is an error naming the file and the problem.
func LoadLearned(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mimic: learned noise: %w", err)
	}
	if len(b) > maxLearnedBytes {
		return nil, fmt.Errorf("mimic: learned noise %s: %d bytes, more than %d", path, len(b), maxLearnedBytes)
	}
	var f learnedFile
	if err := strictjson.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("mimic: learned noise %s: %w", path, err)
	}
	if f.Version != learnedVersion {
		return nil, fmt.Errorf("mimic: learned noise %s: version %d, want %d", path, f.Version, learnedVersion)
	}
	for route, fields := range f.Routes {
		if route != "default" && !strings.HasPrefix(route, "/") {
			return nil, fmt.Errorf("mimic: learned noise %s: route %q is neither \"default\" nor a prefix starting with /", path, route)
		}
		for _, field := range fields {
			if err := validLearnedField(field); err != nil {
				return nil, fmt.Errorf("mimic: learned noise %s: route %q: %w", path, route, err)
			}
		}
	}
	return f.Routes, nil
}

// validLearnedField checks one field as the learner writes it.
func validLearnedField(field string) error {
	if h, ok := strings.CutPrefix(field, headerFieldPrefix); ok {
		if !validName(h) || canonicalName(h) != h {
			return fmt.Errorf("field %q: not a canonical header name", field)
		}
		return nil
	}
	if p, ok := strings.CutPrefix(field, jsonFieldPrefix); ok {
		if p != "" && !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
			return fmt.Errorf("field %q: not a JSON pointer", field)
		}
		return nil
	}
	return fmt.Errorf("field %q: want header:NAME or json:/POINTER", field)
}

// SaveLearned writes learned to path atomically (see atomicfile), so a crash leaves the old
// file or the new one, never half of one.
func SaveLearned(path string, learned map[string][]string) error {
	f := learnedFile{Version: learnedVersion, Routes: map[string][]string{}}
	for route, fields := range learned {
		if len(fields) > 0 {
			f.Routes[route] = append([]string(nil), fields...)
			sort.Strings(f.Routes[route])
		}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("mimic: learned noise: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("mimic: learned noise: %w", err)
	}
	return nil
}

// setAsideBad renames an unreadable learned-noise file so the next save does not overwrite
// it, and returns the new name.
func setAsideBad(path string, now time.Time) (string, error) {
	bad := fmt.Sprintf("%s.bad-%s", path, now.UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, bad); err != nil {
		return "", err
	}
	return bad, nil
}
