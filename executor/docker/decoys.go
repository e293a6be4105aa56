package docker

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/mount"
	"golang.org/x/sys/unix"

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

// dockerSockets are where a container looks for the Docker Engine's socket: each gets a
// decoy socket of the agent's, and a connection to it from inside the container is evidence.
var dockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}

// decoyRoot holds the decoy directories (a tmpfs on most machines: gone at reboot, as the
// containers are).
var decoyRoot = "/run/proteus/decoys"

// decoysUsable reports whether containers get decoys: root, fanotify permission events, a
// data dir, and an engine on this machine (a bind mount names a path on the engine's host).
func (d *Driver) decoysUsable() bool {
	return os.Geteuid() == 0 && d.opts.DataDir != "" && strings.HasPrefix(d.host, "unix://") && decoy.Usable()
}

func (d *Driver) decoyDir(name string) string { return filepath.Join(decoyRoot, d.agent, name) }

// decoySet is what one container's decoys hold open: the fanotify group watching the
// files and the listener of the decoy Docker socket.
type decoySet struct {
	fan  *os.File
	sock *net.UnixListener
}

func (s *decoySet) close() {
	if s.fan != nil {
		s.fan.Close()
	}
	if s.sock != nil {
		s.sock.Close()
	}
}

// makeDecoys builds the decoys for the container name and returns the bind mounts that put
// them in place (the data dir's copy at its path, when it holds any file yet; the decoy
// socket at dockerSockets).
func (d *Driver) makeDecoys(name string) ([]mount.Mount, *decoySet, error) {
	dir := d.decoyDir(name)
	data, err := filepath.Abs(d.opts.DataDir)
	if err != nil {
		return nil, nil, err
	}
	set := &decoySet{}
	fail := func(err error) ([]mount.Mount, *decoySet, error) {
		set.close()
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("decoys: %w", err)
	}
	files := filepath.Join(dir, "data")
	if err := os.MkdirAll(files, 0o755); err != nil {
		return fail(err)
	}
	var mounts []mount.Mount
	made, err := decoy.Make(files, decoy.Plan(data, ""))
	if err != nil {
		return fail(err)
	}
	if len(made) > 0 {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: files, Target: data})
	}
	if sib, sibFiles, err := d.siblingDecoys(dir, data); err != nil {
		return fail(err)
	} else if sib != nil {
		mounts = append(mounts, *sib)
		made = append(made, sibFiles...)
	}
	if len(made) > 0 {
		fd, err := decoy.Arm(made)
		if err != nil {
			return fail(err)
		}
		set.fan = os.NewFile(uintptr(fd), "decoys-"+name)
	}
	sock := filepath.Join(dir, "docker.sock")
	if set.sock, err = net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"}); err != nil {
		return fail(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil { // any user of the container may try it
		return fail(err)
	}
	for _, target := range dockerSockets {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: sock, Target: target})
	}
	return mounts, set, nil
}

// watchDecoys answers the opens of inst's decoys and its decoy socket's connections until
// its container exits or is removed; the first from inside the container is evidence and
// quarantines it.
func (d *Driver) watchDecoys(inst *executor.Instance, set *decoySet) {
	d.mu.Lock()
	d.decoys[inst.ID] = set
	d.mu.Unlock()
	exited := d.Exited(inst)
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
		select {
		case <-exited:
		case <-d.life.Done():
		}
		d.closeDecoys(inst, false)
	}()
	refuse := func(den executor.Denial) {
		if d.denied(inst, den) {
			d.watchers.Add(1) // the calling watcher holds one: the count is not zero
			go func() {       // not on the reader: an open waits for its answer
				defer d.watchers.Done()
				d.quarantineDenied(inst)
			}()
		}
	}
	if set.fan != nil {
		d.watchers.Add(1)
		go func() {
			defer d.watchers.Done()
			decoy.Watch(set.fan, func(o decoy.Open) bool {
				if !inContainer(o.Pid, inst.Handle) {
					return false
				}
				what, by := "", "fanotify (EPERM: a decoy bound at the agent's data dir)"
				if root := d.siblingsRoot(); root != "" && within(o.Path, root) {
					what, by = ", another container's files", "fanotify (EPERM: a decoy of another container's files)"
				}
				refuse(executor.Denial{Reason: executor.DeniedFile,
					Attempted: fmt.Sprintf("open %s for %s%s", o.Path, o.Access, what),
					RefusedBy: by,
					Extra:     map[string]any{"path": o.Path, "access": o.Access, "pid": o.Pid}})
				return true
			})
		}()
	}
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
		for {
			c, err := set.sock.AcceptUnix()
			if err != nil {
				return // closed with the container
			}
			pid := peerPID(c)
			c.Close() // nothing is ever answered
			if !inContainer(pid, inst.Handle) {
				continue
			}
			refuse(executor.Denial{Reason: executor.DeniedFile, Category: "integrity",
				Attempted: "connect to the Docker Engine's socket (" + strings.Join(dockerSockets, " or ") + ")",
				RefusedBy: "a decoy socket of the agent's, closed at once",
				Extra:     map[string]any{"path": dockerSockets[0], "access": "connect", "pid": pid}})
		}
	}()
}

// peerPID is the pid (this host's namespace) of the process at the other end of c, 0 when
// unknown.
func peerPID(c *net.UnixConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	_ = rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// closeDecoys stops watching inst's decoys and, with remove, deletes them (the container is
// gone; a quarantined one keeps its own until it is removed).
func (d *Driver) closeDecoys(inst *executor.Instance, remove bool) {
	d.mu.Lock()
	set := d.decoys[inst.ID]
	delete(d.decoys, inst.ID)
	d.mu.Unlock()
	if set != nil {
		set.close()
	}
	if remove {
		os.RemoveAll(d.decoyDir(inst.ID))
	}
}

// siblingDecoys makes, in dir/siblings, decoys of the running siblings' root file systems
// as this host holds them below the engine's data root (each one's merged directory: a
// bounded copy of its names, decoy.Plan), and returns the read-only bind that puts them at
// the data root's path in the new container: a write there is refused by the read-only
// file system (EROFS, evidence through audit.go), an open for reading by fanotify. None
// when no sibling runs, the data root is unknown, or it overlaps the agent's data dir.
func (d *Driver) siblingDecoys(dir, data string) (*mount.Mount, []string, error) {
	root := d.siblingsRoot()
	if root == "" || within(data, root) || within(root, data) {
		return nil, nil, nil
	}
	d.mu.Lock()
	var roots []string
	for _, inst := range d.running {
		if inst.RootDir != "" && within(inst.RootDir, root) && inst.RootDir != root {
			roots = append(roots, inst.RootDir)
		}
	}
	d.mu.Unlock()
	if len(roots) == 0 {
		return nil, nil, nil
	}
	top := filepath.Join(dir, "siblings")
	var files []string
	for _, r := range roots {
		rel, err := filepath.Rel(root, r)
		if err != nil {
			continue
		}
		at := filepath.Join(top, rel)
		if err := os.MkdirAll(at, 0o755); err != nil {
			return nil, nil, err
		}
		made, err := decoy.Make(at, decoy.Plan(r, ""))
		if err != nil {
			return nil, nil, err
		}
		files = append(files, made...)
	}
	return &mount.Mount{Type: mount.TypeBind, Source: top, Target: root, ReadOnly: true}, files, nil
}

// siblingsRoot is the engine's data root (where it keeps containers' file systems), read
// once; "" when the engine does not say.
func (d *Driver) siblingsRoot() string {
	d.rootOnce.Do(func() {
		ctx, cancel := d.opCtx(d.life)
		defer cancel()
		if info, err := d.cli.Info(ctx); err == nil && filepath.IsAbs(info.DockerRootDir) {
			d.dataRoot = filepath.Clean(info.DockerRootDir)
		}
	})
	return d.dataRoot
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
