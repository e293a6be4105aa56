package eve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/sensor"
)

// ID is the registry ID of the EVE sensor.
const ID = "sensor.eve"

func init() {
	sensor.Register(ID, func(env sensor.Env) ([]sensor.Source, error) {
		c := env.Config.EVE
		if c == nil {
			return nil, nil
		}
		abs := func(p string) string {
			if p == "" || filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(env.BaseDir, p)
		}
		o := Options{Path: abs(c.Path), Socket: abs(c.Socket), FromStart: c.FromStart, MaxLine: c.MaxLine, Logger: env.Logger}
		if env.DataDir != "" && o.Path != "" {
			o.StateFile = filepath.Join(env.DataDir, StateFile)
		}
		return []sensor.Source{New(o)}, nil
	})
}

// Options configure a Sensor. Exactly one of Path and Socket is set.
type Options struct {
	Path      string
	Socket    string
	FromStart bool
	MaxLine   int           // default config.DefaultEVEMaxLine
	Poll      time.Duration // fallback poll of the file when no inotify event comes; default 1s
	// StateFile keeps the read position (inode and offset) across agent restarts, so a
	// restart neither replays the log nor skips what was written while the agent was down.
	// Empty: the position lives in memory only.
	StateFile string
	Logger    *slog.Logger
}

// MaxConns bounds the connections the socket reads at once (Suricata holds one).
const MaxConns = 8

// StateFile is the position file's name in the data dir.
const StateFile = "sensor-eve.pos"

type position struct {
	Path   string `json:"path"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// Stats counts what the sensor read.
type Stats struct {
	Lines       uint64 `json:"lines"`
	Events      uint64 `json:"events"`
	Skipped     uint64 `json:"skipped"`   // well-formed records of unused types
	Malformed   uint64 `json:"malformed"` // not JSON, or not a valid alert/anomaly
	Partial     uint64 `json:"partial"`   // a line cut by rotation, truncation or a closed connection
	Oversized   uint64 `json:"oversized"` // longer than MaxLine
	Rotations   uint64 `json:"rotations"`
	Truncations uint64 `json:"truncations"`
}

// Sensor is the EVE source.
type Sensor struct {
	o   Options
	log *slog.Logger

	lines, events, skipped, malformed, partial, oversized, rotations, truncations atomic.Uint64

	// File position kept across restarts by the supervisor: the same file resumes where it
	// was.
	mu      sync.Mutex
	started bool
	ino     uint64
	offset  int64
	saved   time.Time
}

// loadPosition reads the kept position; ok is false when there is none for Path.
func (s *Sensor) loadPosition() (position, bool) {
	if s.o.StateFile == "" {
		return position{}, false
	}
	b, err := os.ReadFile(s.o.StateFile)
	if err != nil {
		return position{}, false
	}
	var p position
	if err := json.Unmarshal(b, &p); err != nil || p.Path != s.o.Path || p.Offset < 0 {
		s.log.Warn("ignoring unreadable position file", "file", s.o.StateFile, "err", err)
		return position{}, false
	}
	return p, true
}

// savePosition writes the position, at most every 200 ms unless force.
func (s *Sensor) savePosition(force bool) {
	if s.o.StateFile == "" {
		return
	}
	s.mu.Lock()
	if !force && time.Since(s.saved) < 200*time.Millisecond {
		s.mu.Unlock()
		return
	}
	s.saved = time.Now()
	b, _ := json.Marshal(position{Path: s.o.Path, Inode: s.ino, Offset: s.offset})
	s.mu.Unlock()
	if err := atomicfile.Write(s.o.StateFile, b, 0o600); err != nil {
		s.log.Warn("cannot keep the read position", "file", s.o.StateFile, "err", err)
	}
}

var _ sensor.Source = (*Sensor)(nil)

// New returns an EVE sensor.
func New(o Options) *Sensor {
	if o.MaxLine <= 0 {
		o.MaxLine = config.DefaultEVEMaxLine
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sensor{o: o, log: o.Logger.With("component", ID)}
}

// Name implements sensor.Source.
func (s *Sensor) Name() string {
	if s.o.Socket != "" {
		return "eve:" + s.o.Socket
	}
	return "eve:" + s.o.Path
}

// Stats returns the counters.
func (s *Sensor) Stats() Stats {
	return Stats{Lines: s.lines.Load(), Events: s.events.Load(), Skipped: s.skipped.Load(), Malformed: s.malformed.Load(),
		Partial: s.partial.Load(), Oversized: s.oversized.Load(), Rotations: s.rotations.Load(), Truncations: s.truncations.Load()}
}

// Counters are the Stats by name, for metrics.
func (s *Sensor) Counters() map[string]uint64 {
	st := s.Stats()
	return map[string]uint64{"lines": st.Lines, "events": st.Events, "skipped": st.Skipped, "malformed": st.Malformed,
		"partial": st.Partial, "oversized": st.Oversized, "rotations": st.Rotations, "truncations": st.Truncations}
}

// Run implements sensor.Source.
func (s *Sensor) Run(ctx context.Context, out chan<- sensor.Event) error {
	if s.o.Socket != "" {
		return s.runSocket(ctx, out)
	}
	return s.runFile(ctx, out)
}

// handle parses one complete line and sends its event.
func (s *Sensor) handle(ctx context.Context, out chan<- sensor.Event, line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	s.lines.Add(1)
	e, err := Parse(line)
	switch {
	case errors.Is(err, ErrSkipped):
		s.skipped.Add(1)
	case err != nil:
		s.malformed.Add(1)
		s.log.Debug("malformed line skipped", "err", err)
	default:
		if sensor.Send(ctx, out, e) {
			s.events.Add(1)
		}
	}
}

// splitter cuts a byte stream into lines of at most max bytes; a longer line is counted
// once and skipped up to its newline.
type splitter struct {
	s       *Sensor
	max     int
	pending []byte
	skip    bool // inside an oversized line
}

func (sp *splitter) feed(ctx context.Context, out chan<- sensor.Event, data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if !sp.skip {
				sp.pending = append(sp.pending, data...)
				if len(sp.pending) > sp.max {
					sp.s.oversized.Add(1)
					sp.pending, sp.skip = sp.pending[:0], true
				}
			}
			return
		}
		chunk := data[:i]
		data = data[i+1:]
		if sp.skip {
			sp.skip = false
			continue
		}
		if len(sp.pending)+len(chunk) > sp.max {
			sp.s.oversized.Add(1)
			sp.pending = sp.pending[:0]
			continue
		}
		if len(sp.pending) > 0 {
			sp.pending = append(sp.pending, chunk...)
			chunk = sp.pending
		}
		sp.s.handle(ctx, out, chunk)
		sp.pending = sp.pending[:0]
	}
}

// cut drops a pending partial line (the stream it belonged to ended), counting it.
func (sp *splitter) cut() {
	if len(sp.pending) > 0 || sp.skip {
		sp.s.partial.Add(1)
	}
	sp.pending, sp.skip = sp.pending[:0], false
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// runFile tails the file at Path.
func (s *Sensor) runFile(ctx context.Context, out chan<- sensor.Event) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("inotify unavailable; polling", "err", err)
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(s.o.Path)); err != nil {
			s.log.Warn("cannot watch the log's directory; polling", "dir", filepath.Dir(s.o.Path), "err", err)
		}
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	tick := time.NewTicker(s.o.Poll)
	defer tick.Stop()
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-events:
		case err := <-errs:
			s.log.Debug("inotify", "err", err)
		case <-tick.C:
		}
		return true
	}
	sp := &splitter{s: s, max: s.o.MaxLine}
	buf := make([]byte, 64<<10)
	for {
		f, err := s.open()
		if errors.Is(err, os.ErrNotExist) {
			// A file that appears later is new: read from its start.
			s.mu.Lock()
			s.started = true
			s.mu.Unlock()
			if !wait() {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("eve: %w", err)
		}
		err = s.follow(ctx, f, sp, buf, out, wait)
		f.Close()
		s.savePosition(true)
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// open opens Path and positions it: at the end on the first open of an existing file
// (unless FromStart), at the kept offset when it is still the same file, else at 0.
func (s *Sensor) open() (*os.File, error) {
	f, err := os.Open(s.o.Path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ino := inode(fi)
	var off int64
	kept, haveKept := position{}, false
	if !s.started {
		kept, haveKept = s.loadPosition()
	}
	switch {
	case haveKept && kept.Inode == ino && kept.Offset <= fi.Size():
		off = kept.Offset // the file the last run read: go on where it stopped
	case haveKept:
		off = 0 // rotated while the agent was down: the new file is read whole
	case !s.started && !s.o.FromStart:
		off = fi.Size()
	case s.started && ino == s.ino && s.offset <= fi.Size():
		off = s.offset
	}
	s.started, s.ino, s.offset = true, ino, off
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// follow reads f until it is rotated away (returns nil to reopen Path) or ctx ends.
func (s *Sensor) follow(ctx context.Context, f *os.File, sp *splitter, buf []byte, out chan<- sensor.Event, wait func() bool) error {
	for {
		n, err := f.Read(buf)
		if n > 0 {
			sp.feed(ctx, out, buf[:n])
			s.mu.Lock()
			s.offset += int64(n)
			s.mu.Unlock()
			s.savePosition(false)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("eve: read %s: %w", s.o.Path, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		// At the end: rotated, truncated, or just quiet?
		cur, err := f.Stat()
		if err != nil {
			return fmt.Errorf("eve: stat %s: %w", s.o.Path, err)
		}
		s.mu.Lock()
		off := s.offset
		s.mu.Unlock()
		if cur.Size() < off {
			s.truncations.Add(1)
			sp.cut()
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("eve: %w", err)
			}
			s.mu.Lock()
			s.offset = 0
			s.mu.Unlock()
			continue
		}
		if fi, err := os.Stat(s.o.Path); err != nil || inode(fi) != inode(cur) {
			// Rotated (renamed or removed): what was written to the old file before the
			// rename has been read (we are at its end); a new file at Path starts at 0.
			if n, _ := f.Read(buf); n > 0 {
				sp.feed(ctx, out, buf[:n])
				continue
			}
			s.rotations.Add(1)
			sp.cut()
			s.mu.Lock()
			s.ino, s.offset = 0, 0
			s.mu.Unlock()
			return nil
		}
		if !wait() {
			return nil
		}
	}
}

// runSocket listens on Socket for Suricata's unix_stream output and reads every connection.
func (s *Sensor) runSocket(ctx context.Context, out chan<- sensor.Event) error {
	if fi, err := os.Lstat(s.o.Socket); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("eve: %s exists and is not a socket", s.o.Socket)
		}
		_ = os.Remove(s.o.Socket) // a stale socket of an earlier run
	}
	ln, err := net.Listen("unix", s.o.Socket)
	if err != nil {
		return fmt.Errorf("eve: %w", err)
	}
	if err := os.Chmod(s.o.Socket, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("eve: %w", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("eve: accept: %w", err)
		}
		mu.Lock()
		if len(conns) >= MaxConns {
			mu.Unlock()
			s.log.Warn("too many connections to the EVE socket; refusing one", "max", MaxConns)
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { mu.Lock(); delete(conns, c); mu.Unlock(); c.Close() }()
			sp := &splitter{s: s, max: s.o.MaxLine}
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					sp.feed(ctx, out, buf[:n])
				}
				if err != nil {
					sp.cut()
					return
				}
			}
		}()
	}
}
