package process

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock, through its three system calls. The go-landlock library restricts every thread
// of the process at once (syscall.AllThreadsSyscall), which Go refuses in cgo and -race
// builds; the helper needs the domain on its one exec'ing thread only, so it calls the
// kernel directly.

// landlockABI returns the kernel's Landlock ABI version, 0 when Landlock is unavailable
// (not built in, not enabled at boot, or filtered).
func landlockABI() int {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0
	}
	return int(v)
}

// fsWriteRights are the file-system rights the ruleset takes away outside the writable
// paths, for ABI version abi: everything that creates, changes or removes a file.
// Reading and executing stay with the ordinary permissions (the executor's own uid) and
// the mount namespace, which hides the agent's directories.
func fsWriteRights(abi int) uint64 {
	r := uint64(unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM)
	if abi >= 2 {
		r |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		r |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	return r
}

// landlockRestrict confines the calling thread (and what it execs): writes only below
// writable (and to character devices below /dev, for /dev/null, and to the decoy files,
// whose opens the fanotify tripwires refuse and report), TCP bind only on port,
// TCP connect nowhere unless connect is set (ABI 4), and no signals or abstract-socket
// connections to processes outside the domain, the agent included (ABI 6).
// no_new_privs must already be set.
func landlockRestrict(abi int, writable, decoys []string, port int, connect bool) error {
	fsRights := fsWriteRights(abi)
	var attr [3]uint64 // handled_access_fs, handled_access_net, scoped
	size := 8
	attr[0] = fsRights
	if abi >= 4 {
		size = 16
		attr[1] = unix.LANDLOCK_ACCESS_NET_BIND_TCP
		if !connect {
			attr[1] |= unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
		}
	}
	if abi >= 6 {
		size = 24
		attr[2] = unix.LANDLOCK_SCOPE_SIGNAL | unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
	}
	rs, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr[0])), uintptr(size), 0)
	if e != 0 {
		return fmt.Errorf("create ruleset: %w", e)
	}
	defer unix.Close(int(rs))
	add := func(path string, rights uint64) error {
		fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("rule for %s: %w", path, err)
		}
		defer unix.Close(fd)
		var pb [12]byte // struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd
		binary.NativeEndian.PutUint64(pb[0:], rights)
		binary.NativeEndian.PutUint32(pb[8:], uint32(fd))
		if _, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, rs, unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&pb[0])), 0, 0, 0); e != 0 {
			return fmt.Errorf("rule for %s: %w", path, e)
		}
		return nil
	}
	for _, p := range writable {
		if err := add(p, fsRights); err != nil {
			return err
		}
	}
	if err := add("/dev", unix.LANDLOCK_ACCESS_FS_WRITE_FILE); err != nil {
		return err
	}
	fileWrite := uint64(unix.LANDLOCK_ACCESS_FS_WRITE_FILE)
	if abi >= 3 {
		fileWrite |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	for _, p := range decoys {
		if err := add(p, fileWrite); err != nil {
			return err
		}
	}
	if abi >= 4 && port > 0 {
		np := struct{ allowed, port uint64 }{unix.LANDLOCK_ACCESS_NET_BIND_TCP, uint64(port)}
		if _, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, rs, landlockRuleNetPort, uintptr(unsafe.Pointer(&np)), 0, 0, 0); e != 0 {
			return fmt.Errorf("bind rule for port %d: %w", port, e)
		}
	}
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, rs, 0, 0); e != 0 {
		return fmt.Errorf("restrict self: %w", e)
	}
	return nil
}

// landlockRuleNetPort is LANDLOCK_RULE_NET_PORT (struct landlock_net_port_attr).
const landlockRuleNetPort = 2
