package config

import (
	"github.com/proteus-defense/proteus/strictyaml"
)

// Sensors is the sensors: section: the evidence sources the engine reads. A source that is
// not given is not run.
type Sensors struct {
	EVE *EVE `yaml:"eve"`
	FIM *FIM `yaml:"fim"`
	// Decoy runs listeners that present service banners following the game's signal; see
	// Decoy.
	Decoy *Decoy `yaml:"decoy"`
}

// EVE reads Suricata's EVE JSON log: a file it tails (path:) or a unix stream socket that
// Suricata's `filetype: unix_stream` output connects to (socket:). Relative paths are
// relative to the config file.
type EVE struct {
	Path   string `yaml:"path"`
	Socket string `yaml:"socket"`
	// FromStart reads an existing file from its beginning; by default tailing starts at its
	// end (old alerts were handled by whoever ran before).
	FromStart bool `yaml:"from_start"`
	// MaxLine bounds one EVE line in bytes (default 65536); longer lines are counted and
	// skipped.
	MaxLine int `yaml:"max_line"`
}

// FIM watches files for changes: the running executors' work dirs (always, when fim: is
// given), the host paths listed, and the report file `aide --check` writes (report_url=file:
// with the plain report format), read each time AIDE rewrites it.
type FIM struct {
	Paths      []string `yaml:"paths"`
	AIDEReport string   `yaml:"aide_report"`
}

// Bounds of sensors.eve.max_line.
const (
	DefaultEVEMaxLine = 64 << 10
	maxEVEMaxLine     = 16 << 20
)

func (s *Sensors) applyDefaults() {
	if s.EVE != nil && s.EVE.MaxLine == 0 {
		s.EVE.MaxLine = DefaultEVEMaxLine
	}
	if s.Decoy != nil {
		s.Decoy.applyDefaults()
	}
}

func (s *Sensors) validate(field string, p *strictyaml.Problems) {
	if e := s.EVE; e != nil {
		f := field + ".eve"
		switch {
		case e.Path == "" && e.Socket == "":
			p.Addf(f, "give path: (a file to tail) or socket: (a unix socket Suricata writes to)")
		case e.Path != "" && e.Socket != "":
			p.Addf(f, "give one of path: and socket:, not both")
		}
		if e.Socket != "" && e.FromStart {
			p.Addf(f+".from_start", "only applies to path:")
		}
		if e.MaxLine < 1024 || e.MaxLine > maxEVEMaxLine {
			p.Addf(f+".max_line", "must be in [1024, %d] bytes, got %d", maxEVEMaxLine, e.MaxLine)
		}
	}
	if d := s.Decoy; d != nil {
		d.validate(field+".decoy", p)
	}
	if x := s.FIM; x != nil {
		for i, path := range x.Paths {
			if path == "" {
				p.Addf(indexed(field+".fim.paths", i), "must not be empty")
			}
		}
	}
}
