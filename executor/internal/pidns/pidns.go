// Package pidns tells whether a pid an executor named is outside its PID namespace, as
// both executor drivers judge a signal the namespace refused (ESRCH). It imports only the
// standard library.
package pidns

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// Outside reports whether pid names no process of the PID namespace of the process tid
// (this host's pid), and is above every pid in it: the executor's own /proc, reached
// through tid's root, lists exactly its namespace's processes. Above them, because pids
// are handed out in increasing order: a pid below the highest present may be a child that
// has just exited, which a benign server can still signal by mistake; one above all is a
// pid the namespace has (almost certainly) never given out, so it names something outside.
func Outside(tid int, pid int32) bool {
	dir := filepath.Join("/proc", strconv.Itoa(tid), "root", "proc")
	if _, err := os.Lstat(filepath.Join(dir, strconv.Itoa(int(pid)))); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= int(pid) {
			return false
		}
	}
	return true
}
