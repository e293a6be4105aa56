package mimic

import "syscall"

const (
	syscallStop = syscall.SIGSTOP
	syscallCont = syscall.SIGCONT
)
