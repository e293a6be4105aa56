package main

import (
	"strings"
	"testing"
)

func TestIsolationGeneral(t *testing.T) {
	for in, want := range map[string]string{
		"full isolation: uid+gid 600123, ns mnt+pid+ipc+uts, seccomp": "full isolation: own uid+gid, ns mnt+pid+ipc+uts, seccomp",
		"degraded isolation (agent runs as uid 1000): seccomp":        "degraded isolation (agent runs as uid 1000): seccomp",
		"off": "off",
		"":    "",
	} {
		if got := isolationGeneral(in); got != want {
			t.Errorf("isolationGeneral(%q) = %q, want %q", in, got, want)
		}
	}
}

// A command group without a subcommand is a usage error (exit 2, the help on stderr); --help
// is not.
func TestNoSubcommandIsAUsageError(t *testing.T) {
	for _, args := range [][]string{nil, {"enclave"}, {"game"}} {
		var out, errb strings.Builder
		if code := run(args, &out, &errb); code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "Usage:") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb strings.Builder
	if code := run([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Usage:") {
		t.Errorf("--help: exit %d, stdout %q", code, out.String())
	}
}
