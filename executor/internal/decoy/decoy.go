// Package decoy makes tripwires out of files an executor must never open: a bounded copy of
// a directory's names (empty files, sparse to the real sizes, mode 0666) made where the
// executor looks for the real ones, and a fanotify group (FAN_OPEN_PERM, one inode mark per
// decoy file, so no other open ever waits) whose events the agent answers FAN_DENY (the
// open fails with EPERM) and takes as evidence. Both executor drivers use it: the process
// driver's helper makes the decoys in its private covers of the data dir and the image,
// the docker driver binds a directory of decoys at the data dir's path. It needs
// CAP_SYS_ADMIN (fanotify_init) and imports only x/sys.
package decoy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Max bounds the decoys made for one directory (files and directories), and MaxPerDir the
// entries taken from any one directory below it: another executor's work dir is that
// executor's to fill, and it must not crowd its siblings out of the decoys.
const (
	Max       = 256
	MaxPerDir = 32
)

// Entry is one entry of a directory to copy, relative to it.
type Entry struct {
	Rel  string
	Dir  bool
	Size int64
}

// Plan lists dir breadth first (so the top level, where api.token lives, always
// fits), at most MaxPerDir entries of each directory, skipping skip (when not empty) (the executor's own work dir, which is bound back) and anything
// neither a directory nor a regular file. It must run before dir is covered.
func Plan(dir, skip string) []Entry {
	// Walked through descriptors, each directory opened below its parent's without following
	// a link: the other executors' work dirs are theirs to change while this runs (a
	// directory swapped for a link to /etc is not listed).
	type item struct {
		rel string
		fd  int
	}
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	var out []Entry
	queue := []item{{"", root}}
	defer func() {
		for _, it := range queue {
			unix.Close(it.fd)
		}
	}()
	for len(queue) > 0 && len(out) < Max {
		it := queue[0]
		queue = queue[1:]
		f := os.NewFile(uintptr(it.fd), filepath.Join(dir, it.rel))
		// A bounded read: one of the other executors' work dirs may hold a million names.
		ents, _ := f.ReadDir(MaxPerDir)
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		descend := func(r, name string) {
			if fd, err := unix.Openat(it.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
				queue = append(queue, item{r, fd})
			}
		}
		for _, e := range ents {
			if len(out) == Max {
				break
			}
			r := filepath.Join(it.rel, e.Name())
			full := filepath.Join(dir, r)
			switch {
			case skip != "" && Within(full, skip): // the own work dir: bound back, not a decoy
			case skip != "" && Within(skip, full): // a parent of it: made for the bind anyway
				if e.IsDir() {
					descend(r, e.Name())
				}
			case e.IsDir():
				out = append(out, Entry{Rel: r, Dir: true})
				descend(r, e.Name())
			case e.Type().IsRegular():
				var st unix.Stat_t
				var size int64
				if unix.Fstatat(it.fd, e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
					size = st.Size
				}
				out = append(out, Entry{Rel: r, Size: size})
			}
		}
		f.Close()
	}
	return out
}

// Make creates plan below dir (a fresh directory, or a cover of the planned one) and
// returns the decoy files' paths.
func Make(dir string, plan []Entry) ([]string, error) {
	var files []string
	for _, d := range plan {
		p := filepath.Join(dir, d.Rel)
		if d.Dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return nil, err
			}
			if err := os.Chmod(p, 0o755); err != nil {
				return nil, err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue // made already for an enclosing hidden directory
		}
		if err != nil {
			return nil, err
		}
		_ = f.Truncate(d.Size) // the size is a sibling's to choose: a refusal is no reason to fail
		if err := errors.Join(f.Chmod(0o666), f.Close()); err != nil {
			return nil, err
		}
		files = append(files, p)
	}
	return files, nil
}

// Arm makes the fanotify group watching files (nonblocking, close-on-exec). It needs
// CAP_SYS_ADMIN.
func Arm(files []string) (int, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_TID,
		unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return -1, fmt.Errorf("fanotify_init: %w", err)
	}
	for _, f := range files {
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM, unix.AT_FDCWD, f); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("fanotify_mark %s: %w", f, err)
		}
	}
	return fd, nil
}

// Open is one open of a decoy, held in the kernel until it is answered.
type Open struct {
	Path   string // as the opener sees it
	Access string // read, write, read-write, or open (unknown)
	Pid    int    // the opening thread, in the agent's PID namespace
}

// Watch answers the opens of the decoys fan watches until fan is closed: FAN_DENY when judge
// says so (it sees each open before the answer), FAN_ALLOW otherwise.
func Watch(fan *os.File, judge func(Open) (deny bool)) {
	buf := make([]byte, 4096)
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for {
		n, err := fan.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+metaLen <= n; {
			m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
			if m.Event_len < uint32(metaLen) || off+int(m.Event_len) > n {
				break
			}
			off += int(m.Event_len)
			if m.Fd < 0 {
				continue // queue overflow: nothing to answer
			}
			path, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(m.Fd)))
			o := Open{Path: path, Access: openAccess(int(m.Pid)), Pid: int(m.Pid)}
			answer := uint32(unix.FAN_ALLOW)
			if judge(o) {
				answer = unix.FAN_DENY
			}
			resp := unix.FanotifyResponse{Fd: m.Fd, Response: answer}
			_, _ = fan.Write((*[unsafe.Sizeof(resp)]byte)(unsafe.Pointer(&resp))[:])
			unix.Close(int(m.Fd))
		}
	}
}

// openAccess tells from a thread blocked in open(2) how it opens the file: "read",
// "write" or "read-write" ("open" when the call cannot be read).
func openAccess(tid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/syscall")
	if err != nil {
		return "open"
	}
	f := strings.Fields(string(b))
	arg := func(i int) (uint64, bool) {
		if len(f) <= i+1 {
			return 0, false
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(f[i+1], "0x"), 16, 64)
		return v, err == nil
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return "open"
	}
	var flags uint64
	var ok bool
	switch nr {
	case unix.SYS_OPEN:
		flags, ok = arg(1)
	case unix.SYS_OPENAT:
		flags, ok = arg(2)
	case unix.SYS_CREAT:
		return "write"
	}
	if !ok {
		return "open"
	}
	switch {
	case flags&unix.O_ACCMODE == unix.O_RDWR:
		return "read-write"
	case flags&unix.O_ACCMODE == unix.O_WRONLY || flags&(unix.O_TRUNC|unix.O_CREAT) != 0:
		return "write"
	}
	return "read"
}

// Usable reports whether this kernel gives fanotify permission events to this process.
func Usable() bool {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// Within reports whether path is dir or below it (both clean and absolute).
func Within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}
