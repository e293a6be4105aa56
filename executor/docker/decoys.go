package docker

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/mount"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/decoy"
)

// Decoys of the agent's data dir. A container never sees the data dir (nothing of it is
// mounted), so reading api.token from inside fails with ENOENT and nobody knows. As root,
// with a local engine and fanotify permission events, the driver binds a directory of
// decoys at the data dir's path in every container: the same directories and regular files
// (a bounded copy of the names, empty, sparse to the real sizes, 0666), in
// decoyRoot/<agent>/<container name>, each file marked in a fanotify group of that
// container's own. An open of one from inside the container is refused (EPERM) and is
// evidence (executor.denied, reason "file"), and the container is quarantined; an open by
// anything outside it (a host process walking /run) is let through and not counted.

// decoyRoot holds the decoy directories (a tmpfs on most machines: gone at reboot, as the
// containers are).
var decoyRoot = "/run/proteus/decoys"

// decoysUsable reports whether containers get decoys: root, fanotify permission events, a
// data dir, and an engine on this machine (a bind mount names a path on the engine's host).
func (d *Driver) decoysUsable() bool {
	return os.Geteuid() == 0 && d.opts.DataDir != "" && strings.HasPrefix(d.host, "unix://") && decoy.Usable()
}

func (d *Driver) decoyDir(name string) string { return filepath.Join(decoyRoot, d.agent, name) }

// makeDecoys builds the decoys for the container name and returns the bind mount that puts
// them at the data dir's path, and the fanotify group watching them (nil, and no mount,
// when the data dir holds no file yet).
func (d *Driver) makeDecoys(name string) (mount.Mount, *os.File, error) {
	dir := d.decoyDir(name)
	data, err := filepath.Abs(d.opts.DataDir)
	if err != nil {
		return mount.Mount{}, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return mount.Mount{}, nil, fmt.Errorf("decoys: %w", err)
	}
	files, err := decoy.Make(dir, decoy.Plan(data, ""))
	if err == nil && len(files) == 0 {
		os.RemoveAll(dir)
		return mount.Mount{}, nil, nil // nothing to copy: nothing to protect there yet
	}
	var fd int
	if err == nil {
		fd, err = decoy.Arm(files)
	}
	if err != nil {
		os.RemoveAll(dir)
		return mount.Mount{}, nil, fmt.Errorf("decoys: %w", err)
	}
	return mount.Mount{Type: mount.TypeBind, Source: dir, Target: data}, os.NewFile(uintptr(fd), "decoys-"+name), nil
}

// watchDecoys answers the opens of inst's decoys until its container exits or is removed;
// the first open from inside the container is evidence and quarantines it.
func (d *Driver) watchDecoys(inst *executor.Instance, fan *os.File) {
	d.mu.Lock()
	d.decoys[inst.ID] = fan
	d.mu.Unlock()
	exited := d.Exited(inst)
	d.watchers.Add(2)
	go func() {
		defer d.watchers.Done()
		select {
		case <-exited:
		case <-d.life.Done():
		}
		d.closeDecoys(inst, false)
	}()
	go func() {
		defer d.watchers.Done()
		decoy.Watch(fan, func(o decoy.Open) bool {
			if !inContainer(o.Pid, inst.Handle) {
				return false
			}
			first := d.denied(inst, executor.Denial{Reason: executor.DeniedFile,
				Attempted: fmt.Sprintf("open %s for %s", o.Path, o.Access),
				RefusedBy: "fanotify (EPERM: a decoy bound at the agent's data dir)",
				Extra:     map[string]any{"path": o.Path, "access": o.Access, "pid": o.Pid}})
			if first {
				d.watchers.Add(1) // this goroutine holds one: the count is not zero
				go func() {       // not on the reader: the open waits for its answer
					defer d.watchers.Done()
					d.quarantineDenied(inst)
				}()
			}
			return true
		})
	}()
}

// closeDecoys stops watching inst's decoys and, with remove, deletes them (the container is
// gone; a quarantined one keeps its own until it is removed).
func (d *Driver) closeDecoys(inst *executor.Instance, remove bool) {
	d.mu.Lock()
	fan := d.decoys[inst.ID]
	delete(d.decoys, inst.ID)
	d.mu.Unlock()
	if fan != nil {
		fan.Close()
	}
	if remove {
		os.RemoveAll(d.decoyDir(inst.ID))
	}
}

// inContainer reports whether pid runs in the container id (its cgroup path names it, with
// the cgroupfs and the systemd cgroup drivers alike).
func inContainer(pid int, id string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	return err == nil && id != "" && strings.Contains(string(b), id)
}

// denied publishes the first refusal of inst as executor.denied and reports whether it
// was the first (the caller then quarantines it); later ones are dropped, as the process
// driver does.
func (d *Driver) denied(inst *executor.Instance, den executor.Denial) bool {
	if _, dup := d.refused.LoadOrStore(inst.ID, true); dup {
		return false
	}
	den.Variant = inst.Variant
	if den.Extra == nil {
		den.Extra = map[string]any{}
	}
	den.Extra["container"] = inst.Handle
	d.log.Warn("container refused by its confinement: quarantining", "instance", inst.ID, "variant", inst.Variant,
		"reason", den.Reason, "attempted", den.Attempted, "refused_by", den.RefusedBy)
	d.bus.Publish(bus.Event{Kind: executor.EventDenied, Source: "executor/docker", Subject: inst.ID, Attrs: den.Attrs()})
	return true
}

// quarantineDenied freezes, disconnects and keeps a container that was refused; the pool's
// health checks then replace it.
func (d *Driver) quarantineDenied(inst *executor.Instance) {
	if err := d.Quarantine(d.life, inst); err != nil && d.life.Err() == nil {
		d.log.Error("quarantine after a refusal", "instance", inst.ID, "err", err)
	}
}
