package kaudit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		in     string
		serial uint64
		kv     map[string]string
		ok     bool
	}{
		{`audit(1796195746.996:4): arch=c000003e syscall=62 exit=-3 a0=f423f comm="sh" key="proteus-exec:x"`, 4,
			map[string]string{"arch": "c000003e", "syscall": "62", "exit": "-3", "a0": "f423f", "comm": `"sh"`, "key": `"proteus-exec:x"`}, true},
		{`audit(1.2:99): cwd="/srv"`, 99, map[string]string{"cwd": `"/srv"`}, true},
		{`audit(1.2:7): `, 7, map[string]string{}, true},
		{`audit(1.2:7):`, 7, map[string]string{}, true},
		{`audit(1.2:x): a=b`, 0, nil, false},
		{`type=SYSCALL msg=audit(1.2:3): a=b`, 0, nil, false},
		{`audit(1.2:3): name="unterminated`, 0, nil, false},
		{`audit(1.2:3): item=0 name=2F746D702F61206220 nametype=CREATE item=1`, 3, map[string]string{"item": "0", "name": "2F746D702F61206220", "nametype": "CREATE"}, true},
	}
	for _, tt := range tests {
		serial, kv, ok := parseRecord([]byte(tt.in))
		if ok != tt.ok || serial != tt.serial {
			t.Errorf("parseRecord(%q) = %d, %v; want %d, %v", tt.in, serial, ok, tt.serial, tt.ok)
			continue
		}
		for k, v := range tt.kv {
			if kv[k] != v {
				t.Errorf("parseRecord(%q)[%s] = %q, want %q", tt.in, k, kv[k], v)
			}
		}
		if ok && len(kv) != len(tt.kv) {
			t.Errorf("parseRecord(%q) = %v, want %v", tt.in, kv, tt.kv)
		}
	}
	for in, want := range map[string]string{`"a b"`: "a b", "2F746D702F61206220": "/tmp/a b ", "(null)": "", "zz": "zz"} {
		if got := value(in); got != want {
			t.Errorf("value(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{`audit(1.2:3): a=b c="d e" f=00`, `audit(1.2:3):`, `audit(`, `audit(1:2): ="`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, kv, ok := parseRecord(b)
		if !ok {
			return
		}
		for k := range kv {
			if k == "" || strings.ContainsAny(k, " =") {
				t.Fatalf("key %q from %q", k, b)
			}
		}
	})
}

func TestEventPath(t *testing.T) {
	tests := []struct {
		e    Event
		want string
	}{
		{Event{Paths: []Path{{"/etc/", "PARENT"}, {"/etc/passwd", "CREATE"}}}, "/etc/passwd"},
		{Event{Paths: []Path{{"/httpserver", "NORMAL"}}}, "/httpserver"},
		{Event{Cwd: "/srv", Paths: []Path{{"x", "NORMAL"}}}, "/srv/x"},
		{Event{Paths: []Path{{"/var/", "PARENT"}}}, "/var/"},
		{Event{}, ""},
	}
	for _, tt := range tests {
		if got := tt.e.Path(); got != tt.want {
			t.Errorf("%+v.Path() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestRuleEncode(t *testing.T) {
	if _, err := (Rule{Exit: unix.EROFS}).encode(unix.AUDIT_ARCH_X86_64, "k"); err == nil {
		t.Error("a rule without calls encoded")
	}
	if _, err := (Rule{Syscalls: []int{5000}, Exit: unix.EROFS}).encode(unix.AUDIT_ARCH_X86_64, "k"); err == nil {
		t.Error("call 5000 encoded")
	}
	many := make([]Field, 63)
	if _, err := (Rule{Syscalls: []int{1}, Exit: unix.EROFS, Fields: many}).encode(unix.AUDIT_ARCH_X86_64, "k"); err == nil {
		t.Error("66 fields encoded")
	}
}

// TestRefusalsRecorded: the kernel reports what a process of the watched uid was refused,
// and nothing it was allowed.
func TestRefusalsRecorded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)")
	}
	const nobody = 65534
	w, err := Open("kaudit-test", RefusalRules(UIDRange(nobody, nobody)...))
	if err != nil {
		t.Skipf("no kernel audit here: %v", err)
	}
	defer w.Close()
	events := make(chan Event, 16)
	go w.Read(func(e Event) { events <- e })
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "owned")
	// Allowed first (it must leave nothing), then refused: a write and a signal.
	script := "cat /etc/hostname >/dev/null; kill -0 $$; echo x > " + target + "; kill -0 999999"
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, _ := cmd.CombinedOutput()
	t.Logf("%s", out)
	var write, signal bool
	guard := time.After(time.Minute) // bounds a kernel that never reports
	for !write || !signal {
		select {
		case e := <-events:
			t.Logf("%+v", e)
			if e.UID != nobody || !strings.HasPrefix(e.Key, KeyPrefix) {
				t.Fatalf("event of uid %d key %q", e.UID, e.Key)
			}
			switch {
			case e.Exit == -int(unix.EACCES) && e.IsWrite() && e.Path() == target:
				write = true
			case e.Exit == -int(unix.ESRCH) && e.Args[0] == 999999:
				signal = true
			default:
				t.Fatalf("unexpected event %+v", e)
			}
		case <-guard:
			t.Fatalf("no record (write %v, signal %v)", write, signal)
		}
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("nobody wrote the file")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAssembler(t *testing.T) {
	var a assembler
	recs := []struct {
		typ  uint16
		text string
	}{
		{unix.AUDIT_PATH, `audit(1.0:9): item=0 name="/orphan"`}, // no SYSCALL record before it: dropped
		{unix.AUDIT_SYSCALL, `audit(1.0:10): arch=c000003e syscall=257 success=no exit=-30 a0=ffffff9c a1=5 a2=241 a3=1b6 ppid=1 pid=42 uid=65534 comm="srv" exe="/srv" key="proteus-exec:a"`},
		{unix.AUDIT_CWD, `audit(1.0:10): cwd="/"`},
		{unix.AUDIT_PATH, `audit(1.0:10): item=0 name="/httpserver" inode=5 nametype=NORMAL`},
		{unix.AUDIT_PROCTITLE, `audit(1.0:10): proctitle=737276`},
		{unix.AUDIT_EOE, `audit(1.0:10): `},
	}
	var got []Event
	for _, r := range recs {
		if e, ok := a.add(r.typ, []byte(r.text)); ok {
			got = append(got, e)
		}
	}
	if len(got) != 1 {
		t.Fatalf("events %+v", got)
	}
	e := got[0]
	if e.Serial != 10 || e.Syscall != 257 || e.Exit != -30 || e.PID != 42 || e.UID != 65534 || e.Args[2] != 0x241 || e.Key != "proteus-exec:a" || e.Path() != "/httpserver" || !e.IsWrite() {
		t.Fatalf("event %+v", e)
	}
	for i := range maxPending + 10 { // events never ended are forgotten, not kept
		a.add(unix.AUDIT_SYSCALL, []byte("audit(1.0:"+strconv.Itoa(100+i)+"): syscall=62"))
	}
	if len(a.pending) != maxPending || len(a.order) != maxPending {
		t.Fatalf("%d pending, %d in order", len(a.pending), len(a.order))
	}
}

func TestInParent(t *testing.T) {
	if !(Event{Paths: []Path{{"/ro/tmp/", "PARENT"}}}).InParent() {
		t.Error("a lone parent record is not InParent")
	}
	if (Event{Paths: []Path{{"/ro/", "PARENT"}, {"/ro/x", "CREATE"}}}).InParent() || (Event{}).InParent() {
		t.Error("InParent with a named file, or with no record")
	}
}
