//go:build linux

package network

import (
	"fmt"
	"net"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Expect is what CHECK compares with the kernel: the pod interface's
// addresses and routes as the runtime remembers them (prevResult).
type Expect struct {
	Spec
	Addresses []*net.IPNet
	Routes    []*types.Route
	PodMAC    string // from prevResult, "" to skip
}

// Check verifies, in the kernel, everything Setup made: the host veth
// (exists, up, ours, on the bridge or with its /32 host route and
// neighbour), and in the pod the interface with its MAC, addresses,
// routes and (transparent) the gateway's permanent neighbour entry. It
// returns the first difference.
func Check(h *netlink.Handle, e Expect) error {
	hostName := HostVethName(e.ContainerID, e.IfName)
	hostMAC, podMAC := MACs(e.ContainerID, e.IfName)
	hl, err := h.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %s: %v", hostName, err)
	}
	ha := hl.Attrs()
	if _, ok := hl.(*netlink.Veth); !ok {
		return fmt.Errorf("host interface %s is a %s, not a veth", hostName, hl.Type())
	}
	if ha.Flags&net.FlagUp == 0 {
		return fmt.Errorf("host veth %s is down", hostName)
	}
	o, err := ParseAlias(ha.Alias)
	if err != nil || o.ContainerID != e.ContainerID || o.IfName != e.IfName {
		return fmt.Errorf("host veth %s does not belong to %s/%s (alias %q)", hostName, e.ContainerID, e.IfName, ha.Alias)
	}
	switch e.Mode {
	case ModeBridge:
		if ha.MasterIndex == 0 || ha.MasterIndex != e.BridgeIndex {
			return fmt.Errorf("host veth %s is not attached to the bridge", hostName)
		}
		pi, err := h.LinkGetProtinfo(hl)
		if err != nil {
			return fmt.Errorf("bridge port %s: %v", hostName, err)
		}
		if !pi.Hairpin {
			return fmt.Errorf("bridge port %s has hairpin mode off (a pod cannot reach itself through its Service)", hostName)
		}
	case ModeTransparent:
		for _, ip := range e.IPs {
			r, err := h.RouteGet(ip.IP)
			if err != nil || len(r) == 0 || r[0].LinkIndex != ha.Index {
				p := hostPrefix(ip.IP)
				return fmt.Errorf("no host route %s dev %s", p.String(), hostName)
			}
		}
		addrs, err := h.AddrList(hl, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		gws := []*netlink.Addr{transparentGatewayAddr()}
		if e.hasV6() {
			gws = append(gws, transparentGateway6Addr())
		}
		for _, gw := range gws {
			if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == gw.IPNet.String() && a.Scope == gw.Scope }) {
				return fmt.Errorf("host veth %s lacks the gateway address %s (the pod's pings to its gateway go unanswered)", hostName, gw.IPNet)
			}
		}
	}

	podNS, err := netns.GetFromPath(e.Netns)
	if err != nil {
		return &NetnsError{Path: e.Netns, Err: err}
	}
	defer podNS.Close()
	podH, err := netlink.NewHandleAt(podNS, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer podH.Close()
	pl, err := podH.LinkByName(e.IfName)
	if err != nil {
		return fmt.Errorf("pod interface %s in %s: %v", e.IfName, e.Netns, err)
	}
	pa := pl.Attrs()
	if pa.Flags&net.FlagUp == 0 {
		return fmt.Errorf("pod interface %s is down", e.IfName)
	}
	if pa.HardwareAddr.String() != podMAC.String() {
		return fmt.Errorf("pod interface %s has MAC %s, want %s", e.IfName, pa.HardwareAddr, podMAC)
	}
	if e.PodMAC != "" && e.PodMAC != podMAC.String() {
		return fmt.Errorf("prevResult says MAC %s for %s, the kernel has %s", e.PodMAC, e.IfName, podMAC)
	}
	addrs, err := podH.AddrList(pl, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, want := range e.Addresses {
		if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == want.String() }) {
			return fmt.Errorf("pod interface %s lacks address %s", e.IfName, want)
		}
	}
	routes, err := podH.RouteList(pl, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, want := range e.Routes {
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			return sameDst(r.Dst, &want.Dst, familyOf(want.Dst.IP) == r.Family) && (want.GW == nil || want.GW.Equal(r.Gw))
		}) {
			return fmt.Errorf("pod lacks route %s via %v", want.Dst.String(), want.GW)
		}
	}
	if e.Mode == ModeTransparent {
		neighs, err := podH.NeighList(pa.Index, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, ip := range e.IPs {
			gw := TransparentGatewayFor(ip.IP)
			if !slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
				return n.IP.Equal(gw) && n.State&netlink.NUD_PERMANENT != 0 && n.HardwareAddr.String() == hostMAC.String()
			}) {
				return fmt.Errorf("pod lacks the permanent neighbour %s lladdr %s", gw, hostMAC)
			}
		}
	}
	return nil
}

// sameDst compares a kernel route's destination with a wanted one; a
// default route matches a default route of the same family only.
func sameDst(have *net.IPNet, want *net.IPNet, sameFamily bool) bool {
	if isDefault(want) {
		return isDefault(have) && sameFamily
	}
	return have != nil && have.String() == want.String()
}
