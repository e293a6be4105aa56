package process

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeTree makes files (path -> content) below root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// The v2 path, on a tree of plain files laid out as a cgroup v2 mount (this machine's
// kernel binds memory, pids and cpu to v1 hierarchies, so no real v2 hierarchy can have
// them): chosen when no v1 controller is there, at the mount's root (pure v2) or at
// unified/ (hybrid), controllers handed down at every level, limits and counters in v2's
// files.
func TestCgroupV2Chosen(t *testing.T) {
	for _, layout := range []string{"", "unified"} {
		t.Run("mount="+layout, func(t *testing.T) {
			root := t.TempDir()
			mount := filepath.Join(root, layout)
			writeTree(t, mount, map[string]string{
				"cgroup.controllers":                                  "cpuset cpu io memory hugetlb pids",
				"system.slice/proteus.service/cgroup.controllers":     "cpu memory pids",
				"system.slice/proteus.service/cgroup.subtree_control": "",
			})
			cg, why := findCgroupsIn(root, "0::/system.slice/proteus.service\n", "agent1")
			if !cg.v2 || !slices.Equal(cg.names(), []string{"memory", "pids", "cpu"}) {
				t.Fatalf("v2 %v, controllers %v (%v), want v2 memory+pids+cpu", cg.v2, cg.names(), why)
			}
			own := filepath.Join(mount, "system.slice/proteus.service")
			base := filepath.Join(own, "proteus-exec", "agent1")
			if cg.bases["memory"] != base {
				t.Errorf("base %s, want %s", cg.bases["memory"], base)
			}
			// A plain file keeps only the last write; a real one accumulates "+c".
			if got := readFile(t, filepath.Join(own, "cgroup.subtree_control")); got != "+cpu" {
				t.Errorf("agent's group subtree_control %q", got)
			}
			for _, dir := range []string{filepath.Dir(base), base} {
				if got := readFile(t, filepath.Join(dir, "cgroup.subtree_control")); got != "+memory +pids +cpu" {
					t.Errorf("%s: subtree_control %q", dir, got)
				}
			}
			dirs, err := cg.create("e1", limits{memory: 256 << 20, processes: 64, cpu: 0.5})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(dirs, []string{filepath.Join(base, "e1")}) {
				t.Fatalf("dirs %v: v2 has one group per executor", dirs)
			}
			for f, want := range map[string]string{"memory.max": "268435456", "memory.swap.max": "0", "pids.max": "64", "cpu.max": "50000 100000"} {
				if got := readFile(t, filepath.Join(dirs[0], f)); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			writeTree(t, dirs[0], map[string]string{"memory.events": "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n", "pids.events": "max 3\n"})
			if forks, ooms := cg.hits(dirs); forks != 3 || ooms != 2 {
				t.Errorf("hits = %d forks, %d OOM kills; want 3, 2", forks, ooms)
			}
		})
	}
}

// An agent whose v2 group has processes cannot hand controllers down (the kernel refuses
// the write with EBUSY; here a directory stands where the file would be): no cgroups,
// and a reason that says why.
func TestCgroupV2RefusedSaysWhy(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"cgroup.controllers": "memory pids", "a/cgroup.controllers": "memory pids"})
	if err := os.Mkdir(filepath.Join(root, "a", "cgroup.subtree_control"), 0o755); err != nil {
		t.Fatal(err)
	}
	cg, why := findCgroupsIn(root, "0::/a\n", "agent1")
	if cg.v2 || len(cg.names()) > 0 || len(why) != 1 || !strings.Contains(why[0], "agent's own group") {
		t.Fatalf("v2 %v %v, why %q", cg.v2, cg.names(), why)
	}
	if _, err := os.Stat(filepath.Join(root, "a", "proteus-exec")); err == nil {
		t.Error("left a proteus-exec group behind")
	}
}

// v1 wins where it has the controllers, v2 is not looked at.
func TestCgroupV1Chosen(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"memory/x/memory.limit_in_bytes": "", "pids/pids.max": "", "unified/cgroup.controllers": "memory"})
	cg, _ := findCgroupsIn(root, "4:memory:/x\n8:pids:/\n0::/\n", "agent1")
	if cg.v2 || !slices.Equal(cg.names(), []string{"memory", "pids"}) || cg.bases["memory"] != filepath.Join(root, "memory/x/proteus-exec/agent1") {
		t.Fatalf("v2 %v, bases %v", cg.v2, cg.bases)
	}
	if s := cg.settings("memory", limits{memory: 1 << 20}); s[0] != [2]string{"memory.limit_in_bytes", "1048576"} {
		t.Errorf("v1 memory settings %v", s)
	}
}

// This machine's real v2 hierarchy, as the agent would find it if it had no v1 hierarchy:
// used when it has the controllers, else refused with the controllers it has; either way
// nothing is left in it.
func TestCgroupV2OnThisMachine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a probe group")
	}
	mount := cgroupRoot
	if _, err := os.Stat(filepath.Join(cgroupRoot, "unified", "cgroup.controllers")); err == nil {
		mount = filepath.Join(cgroupRoot, "unified")
	}
	avail, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	own := ""
	data, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			own = p
		}
	}
	if own == "" {
		t.Skip("this process is in no v2 group")
	}
	agent := "test-" + filepath.Base(t.TempDir())
	cg, why := findCgroupsIn(cgroupRoot, "0::"+own+"\n", agent)
	t.Logf("v2 at %s, controllers %q: %v %v, %q", mount, strings.TrimSpace(string(avail)), cg.v2, cg.names(), why)
	hasOne := false
	for _, c := range cgroupControllers {
		hasOne = hasOne || slices.Contains(strings.Fields(string(avail)), c)
	}
	if !hasOne && (cg.v2 || len(why) != 1 || !strings.Contains(why[0], "none of memory, pids, cpu")) {
		t.Errorf("got v2 %v, why %q; want no cgroups and why", cg.v2, why)
	}
	if cg.v2 {
		removeCgroups([]string{cg.bases[cg.names()[0]]})
	}
	if _, err := os.Stat(filepath.Join(mount, own, "proteus-exec", agent)); err == nil {
		t.Errorf("left %s behind", filepath.Join(mount, own, "proteus-exec", agent))
	}
}
