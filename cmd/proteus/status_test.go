package main

import "testing"

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
