package process

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroups places each executor in its own cgroup per controller, below the agent's own
// cgroup (so the agent's limits still cover its executors) in proteus-exec/<agent>/<id>,
// <agent> naming the driver's data dir so that drivers sharing a cgroup never clean up each
// other's groups: cgroup v1 hierarchies
// memory, pids and cpu where they are mounted, else the v2 hierarchy where it delegates
// those controllers. Which ones work is found at start-up by creating a probe group.
type cgroups struct {
	v2    bool
	bases map[string]string // controller -> directory holding the executors' groups
}

// cgroupRoot is where cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupControllers are the ones the driver uses: memory, process count and CPU time.
var cgroupControllers = []string{"memory", "pids", "cpu"}

// findCgroups returns the usable controllers (none is not an error: rlimits remain).
func findCgroups(agent string) (*cgroups, []string) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, []string{"no /proc/self/cgroup"}
	}
	return findCgroupsIn(cgroupRoot, string(own), agent)
}

// findCgroupsIn chooses the hierarchies below root (where cgroup file systems are mounted)
// for a process whose /proc/self/cgroup is own: the v1 hierarchies of memory, pids and cpu
// where at least one can hold the executors' groups, else the v2 hierarchy (at root on a
// pure v2 machine, at root/unified on a hybrid one) when its controllers include one of
// them. A controller bound to a v1 hierarchy is never in the v2 one (the kernel gives each
// controller to one hierarchy), so on a hybrid machine v2 serves only when v1 cannot.
func findCgroupsIn(root, own, agent string) (*cgroups, []string) {
	v1 := map[string]string{} // controller -> own path
	v2path := ""
	for _, line := range strings.Split(strings.TrimSpace(own), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			v2path = f[2]
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			v1[c] = f[2]
		}
	}
	cg := &cgroups{bases: map[string]string{}}
	var why []string
	for _, c := range cgroupControllers {
		p, ok := v1[c]
		if !ok {
			continue
		}
		base := filepath.Join(root, c, p, "proteus-exec", agent)
		if err := probeCgroupDir(base); err != nil {
			why = append(why, fmt.Sprintf("cgroup v1 %s: %v", c, err))
			continue
		}
		cg.bases[c] = base
	}
	if len(cg.bases) > 0 || v2path == "" {
		return cg, why
	}
	// cgroup v2: one directory, controllers enabled for children through subtree_control.
	mount := root
	if _, err := os.Stat(filepath.Join(root, "unified", "cgroup.controllers")); err == nil {
		mount = filepath.Join(root, "unified")
	}
	parent := filepath.Join(mount, v2path)
	avail, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return cg, append(why, fmt.Sprintf("cgroup v2: %v", err))
	}
	var enable []string
	for _, c := range cgroupControllers {
		if slices.Contains(strings.Fields(string(avail)), c) {
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) == 0 {
		return cg, append(why, fmt.Sprintf("cgroup v2 at %s: none of memory, pids, cpu among its controllers (%q): they are bound to cgroup v1 hierarchies or not delegated",
			parent, strings.TrimSpace(string(avail))))
	}
	// The agent's own group must hand them down too; v2 lets it only while no process is
	// in it (the root group excepted), so an agent in a group of its own with processes
	// cannot, and says so.
	enabled, _ := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	for _, c := range enable {
		if slices.Contains(strings.Fields(string(enabled)), c[1:]) {
			continue
		}
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte(c), 0); err != nil {
			return cg, append(why, fmt.Sprintf("cgroup v2: enable %s in the agent's own group %s: %v (a v2 group with processes cannot hand controllers to children: run the agent in a leaf of a delegated subtree)", c, parent, err))
		}
	}
	base := filepath.Join(parent, "proteus-exec", agent)
	if err := probeCgroupDir(base); err != nil {
		return cg, append(why, fmt.Sprintf("cgroup v2: %v", err))
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return cg, append(why, fmt.Sprintf("cgroup v2: %v", err))
	}
	// Each level below the agent's own group hands the controllers down.
	for _, dir := range []string{filepath.Dir(base), base} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0); err != nil {
			removeEmpty(base)
			return cg, append(why, fmt.Sprintf("cgroup v2: enable %v in %s: %v", enable, dir, err))
		}
	}
	cg.v2 = true
	for _, c := range enable {
		cg.bases[c[1:]] = base
	}
	return cg, why
}

// probeCgroupDir creates base (if needed) and a throwaway child in it, and removes both
// again (the base unless other executors are in it).
func probeCgroupDir(base string) error {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	defer removeEmpty(base)
	probe := filepath.Join(base, fmt.Sprintf("probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Remove(probe)
}

// names lists the controllers in use, for the isolation summary.
func (cg *cgroups) names() []string {
	var out []string
	for _, c := range cgroupControllers {
		if cg != nil && cg.bases[c] != "" {
			out = append(out, c)
		}
	}
	return out
}

// limits are what one executor's groups enforce (0: none).
type limits struct {
	memory    int64
	processes int
	cpu       float64
}

// create makes the executor's groups, sets their limits and returns their directories
// (one per hierarchy), which the helper joins before it execs.
func (cg *cgroups) create(id string, l limits) ([]string, error) {
	if cg == nil || len(cg.bases) == 0 {
		return nil, nil
	}
	var dirs []string
	seen := map[string]bool{}
	fail := func(err error) ([]string, error) {
		removeCgroups(dirs)
		return nil, err
	}
	for _, c := range cgroupControllers {
		base := cg.bases[c]
		if base == "" {
			continue
		}
		dir := filepath.Join(base, id)
		if !seen[dir] {
			// The base may have just been removed by another driver's last Stop: recreate it.
			if err := os.MkdirAll(base, 0o755); err != nil {
				return fail(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				return fail(err)
			}
			seen[dir] = true
			dirs = append(dirs, dir)
		}
		for _, w := range cg.settings(c, l) {
			if err := os.WriteFile(filepath.Join(dir, w[0]), []byte(w[1]), 0); err != nil {
				return fail(fmt.Errorf("%s: %w", w[0], err))
			}
		}
	}
	return dirs, nil
}

// settings are the files and values that set limit l for controller c.
func (cg *cgroups) settings(c string, l limits) [][2]string {
	const period = 100000 // µs
	switch {
	case c == "memory" && l.memory > 0 && cg.v2:
		return [][2]string{{"memory.max", strconv.FormatInt(l.memory, 10)}, {"memory.swap.max", "0"}}
	case c == "memory" && l.memory > 0:
		s := [][2]string{{"memory.limit_in_bytes", strconv.FormatInt(l.memory, 10)}}
		if _, err := os.Stat(filepath.Join(cg.bases[c], "memory.memsw.limit_in_bytes")); err == nil {
			s = append(s, [2]string{"memory.memsw.limit_in_bytes", strconv.FormatInt(l.memory, 10)}) // no swap either
		}
		return s
	case c == "pids" && l.processes > 0:
		return [][2]string{{"pids.max", strconv.Itoa(l.processes)}}
	case c == "cpu" && l.cpu > 0 && cg.v2:
		return [][2]string{{"cpu.max", fmt.Sprintf("%d %d", int64(l.cpu*period), period)}}
	case c == "cpu" && l.cpu > 0:
		return [][2]string{{"cpu.cfs_period_us", strconv.Itoa(period)}, {"cpu.cfs_quota_us", strconv.FormatInt(int64(l.cpu*period), 10)}}
	}
	return nil
}

// hits reads how often the executor's groups refused it: processes it could not fork and
// processes the OOM killer ended. A limit hit is what the executor did, seen by the kernel.
func (cg *cgroups) hits(dirs []string) (forks, ooms int64) {
	for _, dir := range dirs {
		forks += counter(filepath.Join(dir, "pids.events"), "max")
		if cg.v2 {
			ooms += counter(filepath.Join(dir, "memory.events"), "oom_kill")
		} else {
			ooms += counter(filepath.Join(dir, "memory.oom_control"), "oom_kill")
		}
	}
	return forks, ooms
}

// counter reads "key N" from a flat-keyed cgroup file (0 when absent).
func counter(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// removeCgroups kills whatever is still in the groups and removes them (bounded wait for
// the processes to go: a group with members cannot be removed).
func removeCgroups(dirs []string) error {
	var errs []error
	for _, dir := range dirs {
		var err error
		for range 200 {
			killMembers(dir)
			if err = os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		}
		removeEmpty(filepath.Dir(dir))
	}
	return errors.Join(errs...)
}

func killMembers(dir string) {
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeEmpty removes a driver's base group and the shared proteus-exec group above it
// once they are empty (removing a cgroup directory with children fails harmlessly), so
// nothing is left in the agent's own cgroup.
func removeEmpty(base string) {
	if os.Remove(base) == nil {
		_ = os.Remove(filepath.Dir(base))
	}
}
