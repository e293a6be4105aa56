package kaudit

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// setEnabled sets the kernel's audit_enabled (0 or 1); benchmarks only.
func setEnabled(b *testing.B, on uint32) {
	ctl, err := dial(0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(ctl)
	var set [11]uint32
	set[0], set[1] = unix.AUDIT_STATUS_ENABLED, on
	if err := request(ctl, unix.AUDIT_SET, words(set[:]), nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSyscallCost is what syscall auditing costs every process started once it is on:
// a cheap call (getppid) and a path call (open and close a file), with auditing off, on
// without rules, and on with the driver's rules (RefusalRules). Run as root:
//
//	go test -run '^$' -bench SyscallCost -count 5 ./executor/internal/kaudit/
func BenchmarkSyscallCost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	ctl, err := dial(0)
	if err != nil {
		b.Skip(err)
	}
	st, err := status(ctl)
	unix.Close(ctl)
	if err != nil || st.enabled == 2 {
		b.Skip("audit locked or unreadable")
	}
	defer setEnabled(b, st.enabled)
	calls := map[string]func(){
		"getppid": func() { unix.Getppid() },
		"open-close": func() {
			fd, err := unix.Open("/etc/hostname", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
		},
	}
	for _, mode := range []string{"off", "on", "on+rules"} {
		for _, name := range []string{"getppid", "open-close"} {
			b.Run(mode+"/"+name, func(b *testing.B) {
				var w *Watch
				switch mode {
				case "off":
					setEnabled(b, 0)
				case "on":
					setEnabled(b, 1)
				case "on+rules":
					setEnabled(b, 1)
					if w, err = Open("bench", RefusalRules()); err != nil {
						b.Fatal(err)
					}
					defer w.Close()
				}
				call := calls[name]
				for b.Loop() {
					call()
				}
			})
		}
	}
}
