//go:build linux

package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/network"
)

// vnetAdd is azure-vnet ADD:
//
//  1. a committed endpoint for this container+interface whose veth still
//     exists: print the stored result, change nothing;
//  2. read the address source (no lock: may be HTTP);
//  3. lock: allocate the address, record the endpoint as pending; unlock;
//  4. remove leftovers of an earlier attempt, plumb the pod (no lock);
//  5. lock: mark the endpoint committed with its result; unlock;
//  6. print the result.
//
// A crash after 3 leaves a pending endpoint that the retried ADD, DEL or
// GC completes or removes; the kernel objects carry the same identity in
// their names and aliases, so nothing can leak unnoticed.
func (r *runner) vnetAdd() error {
	a, cfg := r.Args, r.Cfg
	k := cnicmd.Key(a.ContainerID, a.IfName)

	vs, _ := readVnet(r.paths)
	if ep := vs.Endpoints[k]; ep != nil && ep.Status == StatusCommitted && ep.Result != nil && ep.Netns == a.Netns {
		if _, err := r.nl.LinkByName(ep.HostVeth); err == nil {
			r.Note(zap.Bool("repeated", true))
			r.mark("stored-result")
			return r.PrintStored(ep.Result)
		}
	}
	r.mark("read-state")

	var allocs []*ipam.Allocation
	var podIPs []*net.IPNet
	var pending Endpoint
	pools, err := r.allocate(func(t *tx, pools []*ipam.Pool) error {
		// Another ADD of the same container interface still running (a
		// runtime retrying after its own timeout): plumbing it twice at
		// once would tear down the first; retrying later helps.
		if ep := t.Vnet.Endpoints[k]; ep != nil && ep.Status == StatusPending && ep.PID != os.Getpid() && processAlive(ep.PID) {
			return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("an ADD of %s/%s is in progress (pid %d)", a.ContainerID, a.IfName, ep.PID), "")
		}
		als, err := r.allocateIn(t, pools)
		if err != nil {
			return err
		}
		allocs, podIPs = als, nil
		for i, al := range als {
			podIPs = append(podIPs, podAddress(al.IP, pools[i], cfg.Mode))
		}
		pending = Endpoint{
			ContainerID: a.ContainerID, IfName: a.IfName, Network: cfg.Name, Netns: a.Netns,
			PodName: r.PodName, PodNamespace: r.PodNamespace, Mode: cfg.Mode,
			HostVeth: network.HostVethName(a.ContainerID, a.IfName), IP: network.JoinCIDRs(podIPs),
			Status: StatusPending, PID: os.Getpid(), Updated: r.now,
		}
		t.Vnet.Endpoints[k] = &pending
		t.DirtyVnet = true
		return nil
	})
	if err != nil {
		return err
	}
	r.mark("allocate")
	r.Note(zap.String("ip", cnicmd.AllocatedIPs(allocs)))
	if err := r.At("add:allocated"); err != nil {
		return r.undoAdd(err)
	}

	// An earlier attempt killed half-way may have left the veth.
	if _, err := network.Teardown(r.nl, a.ContainerID, a.IfName, ""); err != nil {
		return r.undoAdd(err)
	}

	spec := network.Spec{ContainerID: a.ContainerID, IfName: a.IfName, Netns: a.Netns, Mode: cfg.Mode,
		IPs: podIPs, ViaHost: cfg.RoutedViaHost}
	primary := pools[0]
	var br *network.Bridge
	switch cfg.Mode {
	case config.ModeBridge:
		br, err = network.EnsureBridge(r.nl, cfg.Bridge, cfg.Master, r.paths.bridgeLock, r.paths.bridgePlan, r.Hook)
		if err != nil {
			return r.undoAdd(err)
		}
		// A policy engine's FORWARD rules see bridged traffic only with this.
		if err := network.EnsureBridgeNetfilter(); err != nil {
			r.Log.Warn("cannot enable bridge-nf-call-iptables", zap.Error(err))
		}
		spec.BridgeIndex, spec.HostIP, spec.MTU = br.Index, br.HostIP, br.MTU
		for _, pool := range pools {
			spec.Gateways = append(spec.Gateways, pool.Gateway)
		}
	case config.ModeTransparent:
		if err := network.EnsureSysctl(network.SysctlIPForward, "1"); err != nil {
			return r.undoAdd(fmt.Errorf("enable ip_forward: %w", err))
		}
		var m netlink.Link
		if cfg.Master != "" || primary.Overlay {
			// Overlay: the block is not on any NIC; the master is the
			// named one or the one holding the default route.
			m, err = network.MasterLink(r.nl, cfg.Master)
		} else {
			m, err = network.LinkToward(r.nl, primary.Gateway)
		}
		if err != nil {
			return r.undoAdd(config.Invalid("master interface: %v", err))
		}
		spec.MTU = m.Attrs().MTU
		spec.Gateways = gatewaysFor(cfg.Mode, podIPs)
		if slices.Contains(cfg.IPAM.IPFamilies, config.IPv6) {
			if err := network.EnsureIPv6Forwarding(m.Attrs().Name); err != nil {
				return r.undoAdd(fmt.Errorf("enable IPv6 forwarding: %w", err))
			}
		}
		if primary.Overlay {
			if err := network.EnsureOverlaySNAT(r.snatRules(pools), r.paths.overlayLock, r.paths.overlayMarker); err != nil {
				return r.undoAdd(err)
			}
		}
	}
	r.mark("node")

	if err := network.Setup(r.nl, spec, r.Hook); err != nil {
		return r.undoAdd(err)
	}
	r.mark("netlink")

	res := r.resultFor(a.ContainerID, a.IfName, a.Netns, cfg.Mode, podIPs, spec.Gateways, br)
	raw, err := json.Marshal(res)
	if err != nil {
		return r.undoAdd(err)
	}
	err = r.lockedVnet(func(t *tx) error {
		ep := t.Vnet.Endpoints[k]
		if ep == nil { // state rebuilt meanwhile: record it again
			ep = &pending
			t.Vnet.Endpoints[k] = ep
		}
		ep.Status, ep.PID, ep.Result, ep.Updated = StatusCommitted, 0, raw, time.Now()
		t.DirtyVnet = true
		return nil
	})
	if err != nil {
		return r.undoAdd(err)
	}
	r.mark("commit")
	if err := r.At("add:committed"); err != nil {
		return err
	}
	return r.Print(res)
}

// snatRules are the overlay SNAT rules of the node's blocks: one per
// family that ipam.snatFamilies (default: all) says is SNATed.
func (r *runner) snatRules(pools []*ipam.Pool) []network.SNATRule {
	var out []network.SNATRule
	for _, p := range pools {
		if r.Cfg.IPAM.SNAT(p.Family()) {
			out = append(out, network.SNATRule{Block: p.Subnet, Cluster: r.Cfg.IPAM.ClusterCIDRFor(p.Family())})
		}
	}
	return out
}

// undoAdd removes what a failed ADD made (veth, allocation, endpoint) and
// returns the original error.
func (r *runner) undoAdd(cause error) error {
	a := r.Args
	if _, err := network.Teardown(r.nl, a.ContainerID, a.IfName, a.Netns); err != nil {
		r.Log.Error("undo ADD: teardown", zap.Error(err))
	}
	err := r.locked(func(t *tx) error {
		t.Release(a.ContainerID, a.IfName)
		return nil
	})
	if err != nil {
		r.Log.Error("undo ADD: release", zap.Error(err))
	}
	return cause
}

// vnetDel is azure-vnet DEL: remove whatever exists in the kernel (found by
// the derived veth name, so it works without state), then release the
// address and forget the endpoint. Unknown or half-created containers and
// repeated DELs succeed.
func (r *runner) vnetDel() error {
	a := r.Args
	k := cnicmd.Key(a.ContainerID, a.IfName)
	vs, _ := readVnet(r.paths)
	ep := vs.Endpoints[k]
	netnsPath := a.Netns
	if netnsPath == "" && ep != nil {
		netnsPath = ep.Netns
	}
	removed, err := network.Teardown(r.nl, a.ContainerID, a.IfName, netnsPath)
	if err != nil {
		return err
	}
	r.Note(zap.Bool("removedVeth", removed))
	r.mark("netlink")
	if err := r.At("del:kernel"); err != nil {
		return err
	}
	// Skip the lock when neither file knows the container (a DEL of
	// something never added, or a repeated DEL).
	is, ierr := readIPAM(r.paths)
	if ep == nil && ierr == nil && is.Find(a.ContainerID, a.IfName) == nil {
		r.mark("nothing-to-release")
		return nil
	}
	err = r.locked(func(t *tx) error {
		if rel := t.Release(a.ContainerID, a.IfName); len(rel) > 0 {
			r.Note(zap.String("released", rel[0].IP))
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.mark("release")
	return r.At("del:released")
}

// vnetCheck is azure-vnet CHECK: the state knows the endpoint, IPAM holds
// its address, and the kernel matches prevResult.
func (r *runner) vnetCheck() error {
	a, cfg := r.Args, r.Cfg
	prev, err := r.PrevResult()
	if err != nil {
		return err
	}
	vs, _ := readVnet(r.paths)
	ep := vs.Endpoints[cnicmd.Key(a.ContainerID, a.IfName)]
	if ep == nil || ep.Status != StatusCommitted {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("no endpoint for container %s interface %s", a.ContainerID, a.IfName), "")
	}
	is, err := readIPAM(r.paths)
	if err != nil {
		return err
	}
	ipns, err := network.ParseCIDRs(ep.IP)
	if err != nil {
		return fmt.Errorf("state has a bad address %q: %w", ep.IP, err)
	}
	held := is.FindAll(a.ContainerID, a.IfName)
	for _, ipn := range ipns {
		if !slices.ContainsFunc(held, func(al *ipam.Allocation) bool { return al.IP == ipn.IP.String() }) {
			return types.NewError(ErrCheckFailed, fmt.Sprintf("address %s of %s/%s is not allocated to it", ipn.IP, a.ContainerID, a.IfName), "")
		}
	}
	exp := network.Expect{Spec: network.Spec{ContainerID: a.ContainerID, IfName: a.IfName, Netns: a.Netns, Mode: ep.Mode, IPs: ipns}}
	if ep.Mode == config.ModeBridge {
		l, err := r.nl.LinkByName(cfg.Bridge)
		if err != nil {
			return types.NewError(ErrCheckFailed, fmt.Sprintf("bridge %s: %v", cfg.Bridge, err), "")
		}
		exp.BridgeIndex = l.Attrs().Index
	}
	for i, ifc := range prev.Interfaces {
		if ifc.Name == a.IfName && ifc.Sandbox != "" {
			exp.PodMAC = ifc.Mac
			for _, ipc := range prev.IPs {
				if ipc.Interface != nil && *ipc.Interface == i {
					n := ipc.Address
					exp.Addresses = append(exp.Addresses, &n)
				}
			}
		}
	}
	if len(exp.Addresses) == 0 {
		for _, ipc := range prev.IPs {
			n := ipc.Address
			exp.Addresses = append(exp.Addresses, &n)
		}
	}
	if network.JoinCIDRs(exp.Addresses) != network.JoinCIDRs(ipns) {
		return types.NewError(ErrCheckFailed, fmt.Sprintf("prevResult has addresses %s, the endpoint has %s", network.JoinCIDRs(exp.Addresses), ep.IP), "")
	}
	exp.Routes = prev.Routes
	r.mark("state")
	if cfg.IPAM.Environment == config.EnvOverlay {
		pools, err := r.pools(-1)
		if err != nil {
			return err
		}
		for _, ipn := range ipns {
			if !slices.ContainsFunc(pools, func(p *ipam.Pool) bool { return p.Subnet.Contains(ipn.IP) }) {
				return types.NewError(ErrCheckFailed, fmt.Sprintf("address %s is not in the node's pod blocks", ipn.IP), "")
			}
		}
		if err := network.CheckOverlaySNAT(r.snatRules(pools)); err != nil {
			return types.NewError(ErrCheckFailed, err.Error(), "")
		}
	}
	if err := network.Check(r.nl, exp); err != nil {
		var ne *network.NetnsError
		if errors.As(err, &ne) {
			return err
		}
		return types.NewError(ErrCheckFailed, err.Error(), "")
	}
	r.mark("kernel")
	return nil
}

// vnetGC is azure-vnet GC: every endpoint, veth and address of this
// network that is not in the valid-attachments list goes, except pending
// ones whose plugin process still runs (an ADD in flight).
func (r *runner) vnetGC() error {
	atts, ok := r.Cfg.Attachments()
	if !ok {
		r.Note(zap.String("skipped", "no cni.dev/valid-attachments in the request"))
		return nil
	}
	valid := map[string]bool{}
	for _, at := range atts {
		valid[cnicmd.Key(at.ContainerID, at.IfName)] = true
	}
	inFlight := func(ep *Endpoint) bool { return ep != nil && ep.Status == StatusPending && processAlive(ep.PID) }
	var errs []error
	// The kernel is listed before the state is read: an ADD records its
	// pending endpoint before it creates the veth, so every veth listed
	// here is either in the state read below or an orphan.
	owned, err := network.ListOwned(r.nl)
	if err != nil {
		errs = append(errs, err)
	}
	vs, _ := readVnet(r.paths)
	removed := 0
	// Kernel first (no lock): endpoints in the state, then veths known
	// only to the kernel (state lost or rebuilt).
	for k, ep := range vs.Endpoints {
		if valid[k] || ep.Network != r.Cfg.Name || inFlight(ep) {
			continue
		}
		if ok, err := network.Teardown(r.nl, ep.ContainerID, ep.IfName, ""); err != nil {
			errs = append(errs, err)
		} else if ok {
			removed++
		}
	}
	for _, o := range owned {
		k := cnicmd.Key(o.ContainerID, o.IfName)
		ep := vs.Endpoints[k]
		if valid[k] || inFlight(ep) || (ep != nil && ep.Network != r.Cfg.Name) {
			continue
		}
		if err := network.DeleteLink(r.nl, o.HostVeth); err != nil {
			errs = append(errs, err)
		} else {
			removed++
		}
	}
	r.mark("netlink")
	if err := r.At("gc:kernel"); err != nil {
		return err
	}
	released := 0
	err = r.locked(func(t *tx) error {
		for k, ep := range t.Vnet.Endpoints {
			if valid[k] || ep.Network != r.Cfg.Name || inFlight(ep) {
				continue
			}
			delete(t.Vnet.Endpoints, k)
			t.DirtyVnet = true
		}
		for _, al := range t.IPAM.Allocations {
			k := cnicmd.Key(al.ContainerID, al.IfName)
			if valid[k] || al.Network != r.Cfg.Name || inFlight(t.Vnet.Endpoints[k]) {
				continue
			}
			released += len(t.IPAM.Release(al.ContainerID, al.IfName, time.Now()))
			t.DirtyIPAM = true
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	r.mark("release")
	r.Note(zap.Int("removedVeths", removed))
	r.Note(zap.Int("releasedIPs", released))
	if len(errs) > 0 {
		return types.NewError(types.ErrInternal, fmt.Sprintf("GC: %d errors, first: %v", len(errs), errs[0]), "")
	}
	return nil
}
