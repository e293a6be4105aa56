package docker

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
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

// netPoll is how often a container's refused-packet counter is read.
const netPoll = 250 * time.Millisecond

// watchNet reads the container's refused-packet counter until it exits: the first refused
// connection is evidence (executor.denied, reason "network") and the container is
// quarantined (frozen, disconnected, kept); the pool's health checks then replace it.
func (d *Driver) watchNet(inst *executor.Instance) {
	exited := d.Exited(inst)
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
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
			n := d.guard.Refused(inst.ID)
			if n == 0 {
				continue
			}
			d.log.Warn("container tried a connection its firewall refused: quarantining", "instance", inst.ID, "variant", inst.Variant, "packets", n)
			d.bus.Publish(bus.Event{Kind: executor.EventDenied, Source: "executor/docker", Subject: inst.ID,
				Attrs: map[string]any{"variant": inst.Variant, "reason": "network", "refused_packets": n, "container": inst.Handle}})
			if err := d.Quarantine(d.life, inst); err != nil {
				d.log.Error("quarantine after a refused connection", "instance", inst.ID, "err", err)
			}
			return
		}
	}()
}
