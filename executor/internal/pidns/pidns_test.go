package pidns

import (
	"os"
	"os/exec"
	"testing"
)

func TestOutside(t *testing.T) {
	self := os.Getpid()
	if Outside(self, int32(self)) {
		t.Error("its own pid is outside its namespace")
	}
	// A child that has exited: below the highest pid, so a slip, not an attack.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Skip(err)
	}
	if Outside(self, int32(child.Process.Pid)) && child.Process.Pid < self {
		t.Errorf("an exited child %d below this process %d is outside", child.Process.Pid, self)
	}
	if !Outside(self, 1<<30) {
		t.Error("a pid above every pid of the namespace is not outside")
	}
	if Outside(1<<30, 1<<30) {
		t.Error("a pid is outside the namespace of a process that does not exist")
	}
}
