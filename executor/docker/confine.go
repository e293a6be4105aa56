package docker

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/netguard"
)

// confine installs the firewall rules for a started container, by its address on the
// driver's network. The container runs a few milliseconds before its rules exist (Docker
// assigns the address at start); what it sends then is not filtered.
func (d *Driver) confine(ctx context.Context, name, id string, outbound bool) error {
	if d.guard == nil {
		return nil
	}
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("inspect for firewall: %w", err)
	}
	var addrs []netip.Addr
	if info.NetworkSettings != nil {
		for _, n := range info.NetworkSettings.Networks {
			for _, s := range []string{n.IPAddress, n.GlobalIPv6Address} {
				if a, err := netip.ParseAddr(s); err == nil {
					addrs = append(addrs, a)
				}
			}
		}
	}
	if len(addrs) == 0 {
		return fmt.Errorf("container %s has no address to filter", shortID(id))
	}
	for _, a := range addrs {
		if err := d.guard.AllowAddr(name, a, outbound); err != nil {
			d.unguard(&executor.Instance{ID: name})
			return err
		}
	}
	return nil
}

func (d *Driver) unguard(inst *executor.Instance) {
	if d.guard == nil {
		return
	}
	if err := d.guard.Remove(func(id string) bool { return id == inst.ID }); err != nil {
		d.log.Warn("firewall rules left", "instance", inst.ID, "err", err)
	}
}

// netPoll is how often a container's counters are read.
const netPoll = 250 * time.Millisecond

// pidsEvents finds the pids.events file of the container's cgroup (v1 pids hierarchy or v2)
// through its first process; "" when the engine does not say or the file is not there.
func (d *Driver) pidsEvents(ctx context.Context, id string) string {
	return pidsEventsOf(d.firstPid(ctx, id))
}

// firstPid is this host's pid of the container's first process (0 when the engine does not
// say).
func (d *Driver) firstPid(ctx context.Context, id string) int {
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil || info.State == nil || info.State.Pid <= 0 {
		return 0
	}
	return info.State.Pid
}

func pidsEventsOf(pid int) string {
	if pid <= 0 {
		return ""
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var p string
		switch {
		case slices.Contains(strings.Split(f[1], ","), "pids"):
			p = filepath.Join("/sys/fs/cgroup/pids", f[2], "pids.events")
		case f[0] == "0" && f[1] == "":
			p = filepath.Join("/sys/fs/cgroup", f[2], "pids.events")
		default:
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// refusedForks reads "max N" from a pids.events file (0 when unreadable).
func refusedForks(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "max "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// watchLimits reads the container's counters until it exits: the first refused connection
// (firewall, or its own loopback's rules) or refused fork (pids limit) is evidence
// (executor.denied, reason "network" or "processes") and the container is quarantined
// (frozen, disconnected, kept); the pool's health checks then replace it.
func (d *Driver) watchLimits(inst *executor.Instance) {
	ctx, cancel := d.opCtx(d.life)
	pid := d.firstPid(ctx, inst.Handle)
	cancel()
	pids := pidsEventsOf(pid)
	var lo *netguard.Loopback
	if d.guard != nil && pid > 0 {
		var err error
		if lo, err = netguard.GuardLoopback(pid); err != nil {
			d.log.Warn("no rules on the container's own loopback: a connection there to a port nothing serves leaves no evidence", "instance", inst.ID, "err", err)
		}
	}
	if d.guard == nil && pids == "" {
		return
	}
	exited := d.Exited(inst)
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
		if lo != nil {
			defer lo.Close()
		}
		t := time.NewTicker(netPoll)
		defer t.Stop()
		for {
			select {
			case <-d.life.Done():
				return
			case <-exited:
				return
			case <-t.C:
			}
			var packets uint64
			if d.guard != nil {
				packets = d.guard.Refused(inst.ID)
			}
			forks := int64(0)
			if pids != "" {
				forks = refusedForks(pids)
			}
			var local uint64
			if lo != nil {
				local = lo.Refused()
			}
			var den executor.Denial
			switch {
			case local > 0:
				den = executor.Denial{Reason: executor.DeniedNetwork,
					RefusedBy: "nftables (table inet " + netguard.Table + " in its own network namespace)",
					Attempted: fmt.Sprintf("connect on its own loopback to a port nothing serves there (%d packets refused)", local)}
			case packets > 0:
				den = executor.Denial{Reason: executor.DeniedNetwork, RefusedBy: "nftables (table inet " + netguard.Table + ")",
					Attempted: fmt.Sprintf("open a connection it may not (%d packets refused)", packets)}
			case forks > 0:
				den = executor.Denial{Reason: executor.DeniedProcesses, RefusedBy: "cgroup pids (fork refused)",
					Attempted: fmt.Sprintf("start processes beyond its limit (%d)", d.opts.PidsLimit)}
			default:
				continue
			}
			den.Extra = map[string]any{"refused_packets": packets + local, "refused_forks": forks}
			if d.denied(inst, den) {
				d.quarantineDenied(inst)
			}
			return
		}
	}()
}
