package docker

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/proteus-defense/proteus/executor"
)

// Exited returns a channel that is closed when the instance's container stops running (it
// crashed, was killed, or was stopped); a paused (quarantined) container is still running.
// It stays closed until Stop removes the instance. For an instance this driver did not start
// (a leftover from an earlier run) it returns nil.
func (d *Driver) Exited(inst *executor.Instance) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch, ok := d.exits[inst.ID]; ok {
		return ch
	}
	return nil
}

// watchExit waits on the engine for the container to stop running, re-waiting (with a
// bounded back-off) when the connection to the engine breaks, until Close.
func (d *Driver) watchExit(inst *executor.Instance) {
	done := make(chan struct{})
	d.mu.Lock()
	d.exits[inst.ID] = done
	d.running[inst.ID] = inst
	d.mu.Unlock()
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
		backoff := 100 * time.Millisecond
		for {
			waitCh, errCh := d.cli.ContainerWait(d.life, inst.Handle, container.WaitConditionNotRunning)
			select {
			case res := <-waitCh:
				d.exited(inst, done, res.StatusCode)
				return
			case err := <-errCh:
				if d.life.Err() != nil {
					return
				}
				if cerrdefs.IsNotFound(err) {
					d.exited(inst, done, -1)
					return
				}
				d.log.Debug("waiting for container exit failed; retrying", "instance", inst.ID, "err", err, "in", backoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-d.life.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
}

func (d *Driver) exited(inst *executor.Instance, done chan struct{}, code int64) {
	d.log.Debug("container no longer running", "instance", inst.ID, "exit_code", code)
	if code >= 0 {
		d.limitEvidence(inst, code)
	}
	close(done)
}

// limitEvidence publishes executor.denied when the engine says the container was ended by
// its memory limit: an executor that allocates without bound is refused by the kernel, and
// that refusal is evidence, as with the process driver.
func (d *Driver) limitEvidence(inst *executor.Instance, code int64) {
	ctx, cancel := context.WithTimeout(d.life, d.opts.OpTimeout)
	defer cancel()
	info, err := d.cli.ContainerInspect(ctx, inst.Handle)
	if err != nil || info.State == nil || !info.State.OOMKilled {
		return
	}
	d.log.Warn("container killed by its memory limit", "instance", inst.ID, "variant", inst.Variant)
	d.denied(inst, executor.Denial{Reason: executor.DeniedMemory, RefusedBy: "cgroup memory (OOM kill)",
		Attempted: fmt.Sprintf("allocate beyond its memory limit (%d bytes)", d.opts.Memory),
		Extra:     map[string]any{"exit_code": code}}) // the container has ended: nothing to quarantine
}

// forget drops the exit channel, the decoys and the refusal mark of a removed instance.
func (d *Driver) forget(inst *executor.Instance) {
	d.mu.Lock()
	delete(d.exits, inst.ID)
	delete(d.running, inst.ID)
	d.mu.Unlock()
	d.refused.Delete(inst.ID)
	d.closeDecoys(inst, true)
}
