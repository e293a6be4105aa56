package kaudit

import "golang.org/x/sys/unix"

// The x86-64 calls that later architectures only have in their *at form.
var (
	legacyWriteCalls = []int{unix.SYS_MKDIR, unix.SYS_MKNOD, unix.SYS_RMDIR, unix.SYS_UNLINK,
		unix.SYS_RENAME, unix.SYS_LINK, unix.SYS_SYMLINK, unix.SYS_CHMOD, unix.SYS_CHOWN,
		unix.SYS_LCHOWN, unix.SYS_UTIME, unix.SYS_UTIMES, unix.SYS_FUTIMESAT}
	legacyOpenCalls = map[int]int{unix.SYS_OPEN: 1, unix.SYS_CREAT: -1}
	legacyCallNames = map[int]string{unix.SYS_OPEN: "open", unix.SYS_CREAT: "creat", unix.SYS_MKDIR: "mkdir",
		unix.SYS_MKNOD: "mknod", unix.SYS_RMDIR: "rmdir", unix.SYS_UNLINK: "unlink", unix.SYS_RENAME: "rename",
		unix.SYS_LINK: "link", unix.SYS_SYMLINK: "symlink", unix.SYS_CHMOD: "chmod", unix.SYS_CHOWN: "chown",
		unix.SYS_LCHOWN: "lchown", unix.SYS_UTIME: "utime", unix.SYS_UTIMES: "utimes", unix.SYS_FUTIMESAT: "futimesat"}
)
