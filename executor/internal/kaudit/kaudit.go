// Package kaudit reads the Linux kernel's audit records of system calls that failed in a
// way that is evidence: it installs exit-filter rules, each tagged with a key of its owner,
// through the audit netlink socket (AUDIT_ADD_RULE_DATA), and reads the records from the
// audit subsystem's read-only multicast group (AUDIT_NLGRP_READLOG), so it never takes the
// place of auditd or keeps it from receiving anything. Rules name the calls, the error they
// failed with and, optionally, argument bits or the caller's uid; the kernel then writes a
// record only for a call that matched, and Read assembles each event's records (SYSCALL,
// CWD, PATH, SOCKADDR) into one Event.
//
// The executor drivers use it for what their confinement refuses without telling anyone: a
// container signalling a process outside its PID namespace (ESRCH), writing its read-only
// root or a path its user may not write (EROFS, EACCES, EPERM). It needs CAP_AUDIT_CONTROL
// and CAP_AUDIT_READ (root), turns syscall auditing on when it is off (it cannot be turned
// on when an administrator has locked it: ErrLocked), and imports only x/sys.
package kaudit

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrLocked: the audit configuration is locked (enabled=2, `auditctl -e 2`); no rule can be
// added until reboot.
var ErrLocked = errors.New("kaudit: the audit configuration is locked (auditctl -e 2)")

// ErrUnsupported: this architecture is not one the rules are written for.
var ErrUnsupported = errors.New("kaudit: unsupported architecture " + runtime.GOARCH)

// KeyPrefix starts every key this package sets; Read passes on only events of such keys.
const KeyPrefix = "proteus-exec"

// Field is one more condition of a rule, in the kernel's terms (AUDIT_* field, operator
// and value of struct audit_rule_data).
type Field struct {
	Kind, Op, Value uint32
}

// ArgMask matches a call whose argument i (0..3) has any bit of mask set.
func ArgMask(i int, mask uint32) Field {
	return Field{Kind: unix.AUDIT_ARG0 + uint32(i), Op: unix.AUDIT_BIT_MASK, Value: mask}
}

// UIDRange matches a caller whose uid is in [lo, hi].
func UIDRange(lo, hi uint32) []Field {
	return []Field{
		{Kind: unix.AUDIT_UID, Op: unix.AUDIT_GREATER_THAN_OR_EQUAL, Value: lo},
		{Kind: unix.AUDIT_UID, Op: unix.AUDIT_LESS_THAN_OR_EQUAL, Value: hi},
	}
}

// Rule records the calls of Syscalls (this architecture's numbers) that fail with Exit,
// when every Field also matches.
type Rule struct {
	Syscalls []int
	Exit     syscall.Errno
	Fields   []Field
}

func nativeArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, ErrUnsupported
}

// encode is struct audit_rule_data for r on the exit filter list, with key.
func (r Rule) encode(arch uint32, key string) ([]byte, error) {
	const max = unix.AUDIT_MAX_FIELDS
	fields := append([]Field{
		{Kind: unix.AUDIT_ARCH, Op: unix.AUDIT_EQUAL, Value: arch},
		{Kind: unix.AUDIT_EXIT, Op: unix.AUDIT_EQUAL, Value: uint32(-int32(r.Exit))},
	}, r.Fields...)
	fields = append(fields, Field{Kind: unix.AUDIT_FILTERKEY, Op: unix.AUDIT_EQUAL, Value: uint32(len(key))})
	if len(fields) > max {
		return nil, fmt.Errorf("kaudit: rule with %d fields, at most %d", len(fields), max)
	}
	if len(r.Syscalls) == 0 {
		return nil, errors.New("kaudit: rule names no system call")
	}
	le := binary.NativeEndian
	const maskOff, fieldsOff = 12, 12 + 4*unix.AUDIT_BITMASK_SIZE
	valuesOff, flagsOff := fieldsOff+4*max, fieldsOff+8*max
	buflenOff := fieldsOff + 12*max
	b := make([]byte, buflenOff+4+len(key))
	le.PutUint32(b[0:], unix.AUDIT_FILTER_EXIT)
	le.PutUint32(b[4:], unix.AUDIT_ALWAYS)
	le.PutUint32(b[8:], uint32(len(fields)))
	for _, nr := range r.Syscalls {
		if nr < 0 || nr >= 32*unix.AUDIT_BITMASK_SIZE {
			return nil, fmt.Errorf("kaudit: system call number %d out of range", nr)
		}
		off := maskOff + 4*(nr/32)
		le.PutUint32(b[off:], le.Uint32(b[off:])|1<<(nr%32))
	}
	for i, f := range fields {
		le.PutUint32(b[fieldsOff+4*i:], f.Kind)
		le.PutUint32(b[valuesOff+4*i:], f.Value)
		le.PutUint32(b[flagsOff+4*i:], f.Op)
	}
	le.PutUint32(b[buflenOff:], uint32(len(key)))
	copy(b[buflenOff+4:], key)
	return b, nil
}

// Watch is a set of installed rules and the multicast socket their records arrive on.
type Watch struct {
	key     string
	rules   [][]byte
	mc      *os.File
	once    sync.Once
	Enabled bool // Open turned syscall auditing on (it was off); it stays on after Close
}

// Open turns syscall auditing on if it is off, installs rules under the key
// KeyPrefix+":"+owner (replacing rules a crashed predecessor with the same owner left) and
// joins the multicast group. Close removes the rules.
func Open(owner string, rules []Rule) (*Watch, error) {
	arch, err := nativeArch()
	if err != nil {
		return nil, err
	}
	key := KeyPrefix + ":" + owner
	if len(key) > 256 {
		return nil, fmt.Errorf("kaudit: key %q too long", key)
	}
	w := &Watch{key: key}
	for _, r := range rules {
		b, err := r.encode(arch, key)
		if err != nil {
			return nil, err
		}
		w.rules = append(w.rules, b)
	}
	ctl, err := dial(0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(ctl)
	st, err := status(ctl)
	if err != nil {
		return nil, err
	}
	switch st.enabled {
	case 2:
		return nil, ErrLocked
	case 0:
		var set [11]uint32
		set[0], set[1] = unix.AUDIT_STATUS_ENABLED, 1
		if err := request(ctl, unix.AUDIT_SET, words(set[:]), nil); err != nil {
			return nil, fmt.Errorf("kaudit: enable auditing: %w", err)
		}
		w.Enabled = true
	}
	mc, err := dial(unix.AUDIT_NLGRP_READLOG)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(mc, true); err != nil {
		unix.Close(mc)
		return nil, fmt.Errorf("kaudit: %w", err)
	}
	w.mc = os.NewFile(uintptr(mc), "audit-multicast")
	for i, b := range w.rules {
		_ = request(ctl, unix.AUDIT_DEL_RULE, b, nil) // a crashed predecessor's
		// EEXIST: another owner of the same key added it meanwhile.
		if err := request(ctl, unix.AUDIT_ADD_RULE, b, nil); err != nil && !errors.Is(err, unix.EEXIST) {
			w.rules = w.rules[:i]
			w.Close()
			return nil, fmt.Errorf("kaudit: add rule %d: %w", i, err)
		}
	}
	return w, nil
}

// Key is the key the watch's rules carry.
func (w *Watch) Key() string { return w.key }

// Stop stops Read and leaves the rules in place (for rules several owners share).
func (w *Watch) Stop() error { return w.end(false) }

// Close removes the rules and stops Read.
func (w *Watch) Close() error { return w.end(true) }

// end stops Read and, when removeRules, deletes the rules; only the first call (of Stop and
// Close, from any goroutine) does anything.
func (w *Watch) end(removeRules bool) error {
	var err error
	w.once.Do(func() {
		w.mc.Close()
		if !removeRules {
			return
		}
		ctl, derr := dial(0)
		if derr != nil {
			err = derr
			return
		}
		defer unix.Close(ctl)
		for _, b := range w.rules {
			if e := request(ctl, unix.AUDIT_DEL_RULE, b, nil); e != nil && !errors.Is(e, unix.ENOENT) {
				err = errors.Join(err, fmt.Errorf("kaudit: delete rule: %w", e))
			}
		}
	})
	return err
}

func dial(groups uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return -1, fmt.Errorf("kaudit: netlink audit socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("kaudit: bind netlink audit socket (groups %d): %w", groups, err)
	}
	return fd, nil
}

func words(w []uint32) []byte {
	b := make([]byte, 4*len(w))
	for i, v := range w {
		binary.NativeEndian.PutUint32(b[4*i:], v)
	}
	return b
}

type auditStatus struct{ enabled uint32 }

func status(fd int) (auditStatus, error) {
	var st auditStatus
	err := request(fd, unix.AUDIT_GET, nil, func(typ uint16, p []byte) {
		if typ == unix.AUDIT_GET && len(p) >= 8 {
			st.enabled = binary.NativeEndian.Uint32(p[4:])
		}
	})
	return st, err
}

var seq struct {
	sync.Mutex
	n uint32
}

// request sends one message with an acknowledgement asked for and reads the answers until
// the acknowledgement (reply sees every other message of the same sequence number).
func request(fd int, typ uint16, payload []byte, reply func(uint16, []byte)) error {
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	msg := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	le := binary.NativeEndian
	le.PutUint32(msg[0:], uint32(len(msg)))
	le.PutUint16(msg[4:], typ)
	le.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	le.PutUint32(msg[8:], n)
	copy(msg[unix.NLMSG_HDRLEN:], payload)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	acked, got := false, reply == nil
	buf := make([]byte, 1<<16)
	for !acked || !got {
		k, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:k])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != n {
				continue
			}
			if m.Header.Type == unix.NLMSG_ERROR {
				if len(m.Data) < 4 {
					return errors.New("short netlink error message")
				}
				if code := int32(le.Uint32(m.Data)); code != 0 {
					return syscall.Errno(-code)
				}
				acked = true
				continue
			}
			if reply != nil {
				reply(m.Header.Type, m.Data)
				got = true
			}
		}
	}
	return nil
}

// Path is one PATH record of an event: a name the call looked up.
type Path struct {
	Name     string
	NameType string // NORMAL, PARENT, CREATE, DELETE, UNKNOWN
}

// Event is one audited system call.
type Event struct {
	Serial    uint64
	Syscall   int
	Exit      int // the return value: -errno for a failure
	Args      [4]uint64
	PID, PPID int // in the initial PID namespace
	UID       int
	Comm, Exe string
	Key       string
	Cwd       string
	Paths     []Path
	Sockaddr  []byte // the SOCKADDR record's address (struct sockaddr), when there is one
}

// Path is the name the call was refused on: the first looked-up name that is not a parent
// directory's, made absolute with the caller's working directory ("" when none).
func (e Event) Path() string {
	var name string
	for _, p := range e.Paths {
		if p.Name == "" {
			continue
		}
		if name == "" || p.NameType != "PARENT" {
			name = p.Name
			if p.NameType != "PARENT" {
				break
			}
		}
	}
	if name != "" && !strings.HasPrefix(name, "/") && e.Cwd != "" {
		name = strings.TrimSuffix(e.Cwd, "/") + "/" + name
	}
	return name
}

// InParent reports whether the only name the event holds is a parent directory's: a call
// that failed to create a file records its directory, not the new name (Path is then the
// directory).
func (e Event) InParent() bool {
	for _, p := range e.Paths {
		if p.Name != "" && p.NameType != "PARENT" {
			return false
		}
	}
	return len(e.Paths) > 0
}

// maxPending bounds the events being assembled (a record stream without EOE records).
const maxPending = 64

// Read calls fn with each assembled event whose key starts with KeyPrefix, until Close.
func (w *Watch) Read(fn func(Event)) {
	var a assembler
	buf := make([]byte, 1<<16)
	for {
		n, err := w.mc.Read(buf)
		if err != nil {
			return
		}
		// One record per message; the kernel does not pad the last one to the alignment
		// syscall.ParseNetlinkMessage insists on.
		if n < unix.NLMSG_HDRLEN {
			continue
		}
		end := min(n, int(binary.NativeEndian.Uint32(buf)))
		if end < unix.NLMSG_HDRLEN {
			continue
		}
		if e, ok := a.add(binary.NativeEndian.Uint16(buf[4:]), buf[unix.NLMSG_HDRLEN:end]); ok && strings.HasPrefix(e.Key, KeyPrefix) {
			fn(e)
		}
	}
}

// assembler joins the records of one event (one serial number), from its SYSCALL record to
// its EOE; at most maxPending events are open at once (the oldest is dropped).
type assembler struct {
	pending map[uint64]*Event
	order   []uint64
}

// add takes one record and returns the event it completes.
func (a *assembler) add(typ uint16, data []byte) (Event, bool) {
	serial, kv, ok := parseRecord(data)
	if !ok {
		return Event{}, false
	}
	if a.pending == nil {
		a.pending = map[uint64]*Event{}
	}
	e := a.pending[serial]
	if e == nil && typ == unix.AUDIT_SYSCALL {
		e = &Event{Serial: serial}
		a.pending[serial] = e
		a.order = append(a.order, serial)
		if len(a.order) > maxPending {
			delete(a.pending, a.order[0])
			a.order = a.order[1:]
		}
	}
	if e == nil {
		return Event{}, false
	}
	switch typ {
	case unix.AUDIT_SYSCALL:
		e.fromSyscall(kv)
	case unix.AUDIT_CWD:
		e.Cwd = value(kv["cwd"])
	case unix.AUDIT_PATH:
		if len(e.Paths) < maxPaths {
			e.Paths = append(e.Paths, Path{Name: value(kv["name"]), NameType: kv["nametype"]})
		}
	case unix.AUDIT_SOCKADDR:
		e.Sockaddr, _ = hex.DecodeString(kv["saddr"])
	case unix.AUDIT_EOE:
		delete(a.pending, serial)
		a.order = slices.DeleteFunc(a.order, func(s uint64) bool { return s == serial })
		return *e, true
	}
	return Event{}, false
}

// maxPaths bounds the PATH records kept per event (a rename has four).
const maxPaths = 8

func (e *Event) fromSyscall(kv map[string]string) {
	num := func(k string) int { v, _ := strconv.Atoi(kv[k]); return v }
	e.Syscall, e.Exit, e.PID, e.PPID, e.UID = num("syscall"), num("exit"), num("pid"), num("ppid"), num("uid")
	for i := range e.Args {
		e.Args[i], _ = strconv.ParseUint(kv["a"+strconv.Itoa(i)], 16, 64)
	}
	e.Comm, e.Exe, e.Key = value(kv["comm"]), value(kv["exe"]), value(kv["key"])
}

// parseRecord reads "audit(SECONDS.MS:SERIAL): k=v k=v ..." into the serial and fields.
func parseRecord(b []byte) (uint64, map[string]string, bool) {
	b = bytes.TrimRight(b, "\x00\n")
	rest, ok := bytes.CutPrefix(b, []byte("audit("))
	if !ok {
		return 0, nil, false
	}
	head, body, ok := bytes.Cut(rest, []byte("): "))
	if !ok {
		head, ok = bytes.CutSuffix(rest, []byte("):"))
		if !ok {
			return 0, nil, false
		}
	}
	_, s, ok := bytes.Cut(head, []byte(":"))
	if !ok {
		return 0, nil, false
	}
	serial, err := strconv.ParseUint(string(s), 10, 64)
	if err != nil {
		return 0, nil, false
	}
	kv := map[string]string{}
	for len(body) > 0 {
		body = bytes.TrimLeft(body, " ")
		eq := bytes.IndexByte(body, '=')
		if eq <= 0 {
			break
		}
		k := string(body[:eq])
		body = body[eq+1:]
		var v []byte
		if len(body) > 0 && body[0] == '"' {
			end := bytes.IndexByte(body[1:], '"')
			if end < 0 {
				return 0, nil, false
			}
			v, body = body[:end+2], body[end+2:]
		} else if sp := bytes.IndexByte(body, ' '); sp >= 0 {
			v, body = body[:sp], body[sp:]
		} else {
			v, body = body, nil
		}
		if _, dup := kv[k]; !dup {
			kv[k] = string(v)
		}
	}
	return serial, kv, true
}

// value decodes a field value: "quoted" as it is, (null) and (none) as "", anything else
// as the hex the kernel writes a name in when it holds a space, a quote or a control
// character (left as it is when it is not hex).
func value(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	if v == "(null)" || v == "(none)" {
		return ""
	}
	if b, err := hex.DecodeString(v); err == nil && len(v) > 0 {
		return string(b)
	}
	return v
}
