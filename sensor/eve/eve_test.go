package eve

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/sensor"
)

func alertFrom(src string, sid int) string {
	return fmt.Sprintf(`{"timestamp":"2024-03-05T10:12:01.000000+0000","event_type":"alert","src_ip":%q,"src_port":4000,"dest_ip":"192.0.2.10","dest_port":8080,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":%d,"rev":1,"signature":"ET TEST %d","category":"Attempted Information Leak","severity":2}}`, src, sid, sid)
}

type run struct {
	s      *Sensor
	out    chan sensor.Event
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, o Options) *run {
	t.Helper()
	o.Poll = 20 * time.Millisecond
	r := &run{s: New(o), out: make(chan sensor.Event, 64), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.s.Run(ctx, r.out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// next waits for the next event; a missing event fails the test after a generous wait.
func (r *run) next(t *testing.T) sensor.Event {
	t.Helper()
	select {
	case e := <-r.out:
		return e
	case <-time.After(10 * time.Second):
		t.Fatalf("no event; stats %+v", r.s.Stats())
		return sensor.Event{}
	}
}

// waitStats polls until cond holds on the stats.
func (r *run) waitStats(t *testing.T, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(r.s.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats never reached the condition: %+v", r.s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestTailStartsAtEndAndCountsBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eve.json")
	appendTo(t, path, alertFrom("198.51.100.1", 1)+"\n"+alertFrom("198.51.100.2", 2)+"\n")
	r := start(t, Options{Path: path, MaxLine: 2048})
	r.waitStats(t, func(Stats) bool { r.s.mu.Lock(); defer r.s.mu.Unlock(); return r.s.started })
	appendTo(t, path, "garbage\n"+flowLine+"\n"+alertFrom("203.0.113.9", 3)+"\n")
	e := r.next(t)
	if e.SignatureID != 3 || e.Source.String() != "203.0.113.9" {
		t.Fatalf("first event %+v: the old lines must not be read", e)
	}
	// A line written in two parts is one event.
	l := alertFrom("203.0.113.10", 4)
	appendTo(t, path, l[:50])
	r.waitStats(t, func(s Stats) bool { return s.Lines == 3 })
	appendTo(t, path, l[50:]+"\n")
	if e := r.next(t); e.SignatureID != 4 {
		t.Fatalf("split line: %+v", e)
	}
	// Oversized line: counted, skipped, the next line still read.
	appendTo(t, path, `{"event_type":"alert","x":"`+strings.Repeat("A", 3000)+`"}`+"\n"+alertFrom("203.0.113.11", 5)+"\n")
	if e := r.next(t); e.SignatureID != 5 {
		t.Fatalf("after oversized: %+v", e)
	}
	st := r.s.Stats()
	if st.Malformed != 1 || st.Skipped != 1 || st.Oversized != 1 || st.Events != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTailFollowsRotationAndTruncation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "eve.json")
	appendTo(t, path, "")
	r := start(t, Options{Path: path, MaxLine: 2048})
	r.waitStats(t, func(Stats) bool { r.s.mu.Lock(); defer r.s.mu.Unlock(); return r.s.started })
	appendTo(t, path, alertFrom("203.0.113.1", 1)+"\n")
	if e := r.next(t); e.SignatureID != 1 {
		t.Fatalf("%+v", e)
	}
	// logrotate's default: rename, then the writer creates a new file. The line written to
	// the old file just before the rename and a partial line are handled.
	appendTo(t, path, alertFrom("203.0.113.1", 2)+"\n"+`{"event_type":"al`)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, alertFrom("203.0.113.1", 3)+"\n")
	if e := r.next(t); e.SignatureID != 2 {
		t.Fatalf("old file's last line: %+v", e)
	}
	if e := r.next(t); e.SignatureID != 3 {
		t.Fatalf("new file's first line: %+v", e)
	}
	r.waitStats(t, func(s Stats) bool { return s.Rotations == 1 && s.Partial == 1 })
	// copytruncate: the file is cut to zero and written again.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	r.waitStats(t, func(s Stats) bool { return s.Truncations == 1 })
	appendTo(t, path, alertFrom("203.0.113.1", 4)+"\n")
	if e := r.next(t); e.SignatureID != 4 {
		t.Fatalf("after truncation: %+v", e)
	}
	// Removed and recreated later.
	os.Remove(path)
	r.waitStats(t, func(s Stats) bool { return s.Rotations == 2 })
	appendTo(t, path, alertFrom("203.0.113.1", 5)+"\n")
	if e := r.next(t); e.SignatureID != 5 {
		t.Fatalf("after re-creation: %+v", e)
	}
}

func TestTailFromStartAndMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eve.json")
	appendTo(t, path, alertFrom("198.51.100.1", 1)+"\n")
	r := start(t, Options{Path: path, FromStart: true})
	if e := r.next(t); e.SignatureID != 1 {
		t.Fatalf("%+v", e)
	}
	// A file that does not exist yet is waited for and read from its start.
	later := filepath.Join(t.TempDir(), "later.json")
	r2 := start(t, Options{Path: later})
	time.Sleep(50 * time.Millisecond) // let it look for the file at least once
	appendTo(t, later, alertFrom("198.51.100.2", 2)+"\n")
	if e := r2.next(t); e.SignatureID != 2 {
		t.Fatalf("%+v", e)
	}
}

func TestSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "eve.sock")
	r := start(t, Options{Socket: sock, MaxLine: 4096})
	var c net.Conn
	var err error
	for i := 0; i < 500; i++ {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "%s\n{bad\n%s\n%s", alertFrom("203.0.113.5", 7), anomalyLine, `{"partial":`)
	if e := r.next(t); e.SignatureID != 7 {
		t.Fatalf("%+v", e)
	}
	if e := r.next(t); e.Kind != "anomaly" {
		t.Fatalf("%+v", e)
	}
	c.Close()
	r.waitStats(t, func(s Stats) bool { return s.Malformed == 1 && s.Partial == 1 })
}

func TestSocketRefusesNonSocketPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plain")
	appendTo(t, path, "x")
	err := New(Options{Socket: path}).Run(context.Background(), make(chan sensor.Event))
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("err %v", err)
	}
}

// A restart goes on where the last run stopped: nothing replayed, nothing written meanwhile
// skipped; a file rotated while the sensor was down is read whole.
func TestPositionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	path, state := filepath.Join(dir, "eve.json"), filepath.Join(dir, StateFile)
	appendTo(t, path, alertFrom("198.51.100.1", 1)+"\n")
	runOnce := func(want ...int) {
		t.Helper()
		r := start(t, Options{Path: path, FromStart: true, StateFile: state})
		for _, sid := range want {
			if e := r.next(t); e.SignatureID != int64(sid) {
				t.Fatalf("got %d, want %d", e.SignatureID, sid)
			}
		}
		r.cancel()
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
		r.done <- nil // for the cleanup
		select {
		case e := <-r.out:
			t.Fatalf("unexpected event %+v", e)
		default:
		}
	}
	runOnce(1)
	appendTo(t, path, alertFrom("198.51.100.1", 2)+"\n")
	runOnce(2)
	os.Rename(path, path+".1")
	appendTo(t, path, alertFrom("198.51.100.1", 3)+"\n")
	runOnce(3)
}

// The socket reads at most MaxConns connections at once; more are closed at once.
func TestSocketBoundsConnections(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "eve.sock")
	r := start(t, Options{Socket: sock})
	var conns []net.Conn
	for len(conns) < MaxConns {
		c, err := net.Dial("unix", sock)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conns = append(conns, c)
		fmt.Fprintln(c, alertFrom("203.0.113.5", len(conns)))
		r.next(t) // served
	}
	extra, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection over the bound was not closed")
	}
	for _, c := range conns {
		c.Close()
	}
}
