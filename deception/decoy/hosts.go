package decoy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"

	"github.com/proteus-defense/proteus/config"
)

// ErrHostCollision is upHosts' refusal of a fake host address this host already has.
var ErrHostCollision = errors.New("decoy: fake host address collides with a real one")

// upHosts gives this host the fake hosts' addresses on a dummy interface of their own (as
// CyberChaff's fake hosts: addresses nothing real uses, where only decoys listen), or on the
// loopback interface when Interface is lo (see upLoopback), and returns what removes them. An address an interface of this host already has is refused
// (ErrHostCollision): taking it over would hijack a real service's address. A dummy interface
// of that name left by an earlier run is replaced; any other interface of that name is an
// error.
func upHosts(ctx context.Context, h config.DecoyHosts) (func(), error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("decoy: hosts on %s need root (CAP_NET_ADMIN)", h.Interface)
	}
	run := func(args ...string) ([]byte, error) {
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("decoy: ip %v: %w: %s", args, err, bytes.TrimSpace(out))
		}
		return out, nil
	}
	if h.Interface == "lo" {
		return upLoopback(ctx, h, run)
	}
	if _, err := net.InterfaceByName(h.Interface); err == nil {
		out, err := run("-d", "link", "show", "dev", h.Interface)
		if err != nil {
			return nil, err
		}
		if !bytes.Contains(out, []byte(" dummy ")) {
			return nil, fmt.Errorf("decoy: hosts: interface %s exists and is not a dummy: refusing to touch it", h.Interface)
		}
		if _, err := run("link", "del", "dev", h.Interface); err != nil { // an earlier run's
			return nil, err
		}
	}
	if err := CheckHosts(h); err != nil {
		return nil, err
	}
	if _, err := run("link", "add", h.Interface, "type", "dummy"); err != nil {
		return nil, err
	}
	down := func() { _, _ = exec.Command("ip", "link", "del", "dev", h.Interface).CombinedOutput() }
	for _, a := range h.Addresses {
		ip := netip.MustParseAddr(a) // validated with the config
		if _, err := run("addr", "add", netip.PrefixFrom(ip, ip.BitLen()).String(), "dev", h.Interface); err != nil {
			down()
			return nil, err
		}
	}
	if _, err := run("link", "set", h.Interface, "up"); err != nil {
		down()
		return nil, err
	}
	return down, nil
}

// loLabel marks the fake hosts' addresses on the loopback interface as the decoys'.
const loLabel = "lo:chaff"

// upLoopback puts the fake hosts' addresses on the loopback interface (labelled loLabel), for
// a kernel without the dummy interface type (or a network namespace of their own, whose lo
// answers only what is routed to it), and returns what removes them.
func upLoopback(ctx context.Context, h config.DecoyHosts, run func(args ...string) ([]byte, error)) (func(), error) {
	ours, err := labelled(ctx)
	if err != nil {
		return nil, err
	}
	if err := CheckHosts(h); err != nil {
		return nil, err
	}
	var added []string
	down := func() {
		for _, p := range added {
			_, _ = exec.Command("ip", "addr", "del", p, "dev", "lo").CombinedOutput()
		}
	}
	for _, a := range h.Addresses {
		ip := netip.MustParseAddr(a) // validated with the config
		p := netip.PrefixFrom(ip, ip.BitLen()).String()
		if ours[ip] { // an earlier run's
			added = append(added, p)
			continue
		}
		args := []string{"addr", "add", p, "dev", "lo"}
		if ip.Is4() {
			args = append(args, "label", loLabel)
		}
		if _, err := run(args...); err != nil {
			down()
			return nil, err
		}
		added = append(added, p)
	}
	return down, nil
}

// labelled returns the addresses on lo that carry loLabel (an earlier run's fake hosts).
func labelled(ctx context.Context) (map[netip.Addr]bool, error) {
	out, err := exec.CommandContext(ctx, "ip", "-o", "addr", "show", "dev", "lo", "label", loLabel).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("decoy: ip addr show dev lo: %w: %s", err, bytes.TrimSpace(out))
	}
	m := map[netip.Addr]bool{}
	for _, line := range bytes.Split(out, []byte("\n")) {
		f := bytes.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if string(f[i]) == "inet" {
				if p, err := netip.ParsePrefix(string(f[i+1])); err == nil {
					m[p.Addr()] = true
				}
			}
		}
	}
	return m, nil
}

// CheckHosts refuses a fake host address that an interface of this host has (the agent runs
// it before starting anything, so such a config stops it instead of a sensor retrying).
func CheckHosts(h config.DecoyHosts) error {
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("decoy: hosts: %w", err)
	}
	var ours map[netip.Addr]bool // on lo: an earlier run's, by label
	if h.Interface == "lo" {
		if ours, err = labelled(context.Background()); err != nil {
			return err
		}
	}
	want := map[netip.Addr]bool{}
	for _, a := range h.Addresses {
		want[netip.MustParseAddr(a)] = true
	}
	for _, ifc := range ifs {
		if ifc.Name == h.Interface && h.Interface != "lo" {
			continue // an earlier run's fake hosts (upHosts replaces it only if it is a dummy)
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && want[p.Addr().Unmap()] && !ours[p.Addr().Unmap()] {
				return fmt.Errorf("%w: %s is an address of interface %s", ErrHostCollision, p.Addr(), ifc.Name)
			}
		}
	}
	return nil
}
