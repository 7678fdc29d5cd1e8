//go:build linux

package network

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TransparentGateway is the pod's next hop in transparent mode. It exists
// nowhere: the pod has a permanent neighbour entry mapping it to the host
// veth's MAC, so every packet goes to the node without ARP (and without
// the proxy-ARP delay of the reference plugin).
var TransparentGateway = net.IPv4(169, 254, 1, 1).To4()

// TransparentGateway6 is the IPv6 equivalent: a link-local address on
// every host veth (link-local addresses never leave their link), mapped
// by a permanent neighbour entry in the pod; no router advertisements.
var TransparentGateway6 = net.ParseIP("fe80::1")

// TransparentGatewayFor is the transparent-mode gateway of ip's family.
func TransparentGatewayFor(ip net.IP) net.IP {
	if ip.To4() != nil {
		return TransparentGateway
	}
	return TransparentGateway6
}

func isV4(ip net.IP) bool { return ip.To4() != nil }

func familyOf(ip net.IP) int {
	if isV4(ip) {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func hostPrefix(ip net.IP) net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}
}

// transparentGatewayAddr is TransparentGateway as an address of every
// host veth, so the node answers the pod's pings to its gateway (tools
// and readiness scripts ping the default gateway). It is a /32 (no
// prefix route: nothing is routed to it) with scope host: the kernel never
// picks a host-scope address as the source of traffic it sends to a
// link- or global-scope destination, so the node's own traffic (to pods,
// to the VNet, to other 169.254.0.0/16 services such as the Azure
// instance metadata) keeps its real address. Only its answers to
// packets addressed to 169.254.1.1 carry it.
func transparentGatewayAddr() *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: TransparentGateway, Mask: net.CIDRMask(32, 32)}, Scope: unix.RT_SCOPE_HOST}
}

// transparentGateway6Addr is TransparentGateway6 on a host veth: a
// link-local address is only ever valid on its own link, so it cannot
// leak; no DAD (the pod's end has no other use for fe80::1).
func transparentGateway6Addr() *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: TransparentGateway6, Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD, Scope: unix.RT_SCOPE_LINK}
}

// Modes (same strings as config).
const (
	ModeBridge      = "bridge"
	ModeTransparent = "transparent"
)

// Hook is called after every step that changes the kernel, with the
// step's name. Tests use it to kill the plugin (kill -9 at step N) or to
// inject a failure; production passes nil.
type Hook func(step string) error

func (h Hook) at(step string) error {
	if h == nil {
		return nil
	}
	return h(step)
}

// Spec is everything needed to plumb one pod interface.
type Spec struct {
	ContainerID string
	IfName      string
	Netns       string
	Mode        string
	BridgeIndex int          // bridge mode: the bridge to attach to
	IPs         []*net.IPNet // addresses as configured in the pod, one per family, primary first
	Gateways    []net.IP     // one per address, same order: bridge: the subnet's gateway; transparent: TransparentGatewayFor
	HostIP      net.IP       // bridge: the node's address, next hop for RoutedViaHost
	ViaHost     []net.IP     // ipsToRouteViaHost
	MTU         int
}

// hasV6 says whether the pod gets an IPv6 address.
func (s Spec) hasV6() bool {
	for _, ip := range s.IPs {
		if !isV4(ip.IP) {
			return true
		}
	}
	return false
}

// MACs derives the host and pod veth MAC addresses from the container ID
// and interface name: locally administered, unicast, stable across
// retries, and known without asking the kernel (which saves round trips
// and lets CHECK verify them).
func MACs(containerID, ifName string) (host, pod net.HardwareAddr) {
	h := sha256.Sum256([]byte("mac/" + containerID + "/" + ifName))
	host = net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
	pod = net.HardwareAddr{0x06, h[0], h[1], h[2], h[3], h[4]}
	return host, pod
}

// Setup creates the veth pair with the pod end directly in the pod's
// namespace (one netlink call, no rename, no move), configures the pod
// end, then the host end. On error it removes what it created.
func Setup(h *netlink.Handle, s Spec, hook Hook) (err error) {
	podNS, err := netns.GetFromPath(s.Netns)
	if err != nil {
		return &NetnsError{Path: s.Netns, Err: err}
	}
	defer podNS.Close()
	podH, err := netlink.NewHandleAt(podNS, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", s.Netns, err)
	}
	defer podH.Close()

	hostName := HostVethName(s.ContainerID, s.IfName)
	hostMAC, podMAC := MACs(s.ContainerID, s.IfName)
	owner := Owner{ContainerID: s.ContainerID, IfName: s.IfName, Mode: s.Mode, IPs: s.IPs, Netns: s.Netns}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: hostName, Alias: owner.Alias(), HardwareAddr: hostMAC, MTU: s.MTU},
		PeerName:         s.IfName,
		PeerHardwareAddr: podMAC,
		PeerNamespace:    netlink.NsFd(int(podNS)),
		PeerMTU:          uint32(s.MTU),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s (pod end %s): %w", hostName, s.IfName, err)
	}
	defer func() {
		if err != nil {
			// Deleting the host end removes the pod end, its addresses,
			// routes and neighbours, and the host route.
			_ = h.LinkDel(veth)
		}
	}()
	if veth.Index == 0 {
		l, err := h.LinkByName(hostName)
		if err != nil {
			return err
		}
		veth.Index = l.Attrs().Index
	}
	// The kernel ignores IFLA_IFALIAS when creating a link: set it now.
	if err := h.LinkSetAlias(veth, veth.Alias); err != nil {
		return fmt.Errorf("set alias of %s: %w", hostName, err)
	}
	if err := hook.at("add:veth"); err != nil {
		return err
	}

	if err := configurePod(podH, s, hostMAC); err != nil {
		return fmt.Errorf("configure %s in %s: %w", s.IfName, s.Netns, err)
	}
	if err := hook.at("add:pod"); err != nil {
		return err
	}

	switch s.Mode {
	case ModeBridge:
		// Up and operationally up before it joins the bridge: the bridge
		// then makes it a forwarding port within the attach call. Attached
		// first, the port would wait for the carrier event (handled
		// asynchronously), and the pod's first ARP or neighbour
		// solicitation, sent the moment ADD returns, could be dropped:
		// the pod's first second lost to the retransmit timer.
		if err := h.LinkSetUp(veth); err != nil {
			return fmt.Errorf("set %s up: %w", hostName, err)
		}
		waitOperUp(h, veth.Index, time.Second)
		if err := h.LinkSetMasterByIndex(veth, s.BridgeIndex); err != nil {
			return fmt.Errorf("attach %s to bridge: %w", hostName, err)
		}
		// Hairpin: a frame may leave through the port it came in on. A pod
		// reaching itself through its Service's ClusterIP needs it: the
		// node DNATs the frame back to the pod (Kubernetes requires that
		// path; the reference bridge's hairpinMode).
		if err := h.LinkSetHairpin(veth, true); err != nil {
			return fmt.Errorf("hairpin on %s: %w", hostName, err)
		}
	case ModeTransparent:
		if err := h.AddrReplace(veth, transparentGatewayAddr()); err != nil {
			return fmt.Errorf("gateway address %s on %s: %w", TransparentGateway, hostName, err)
		}
		if s.hasV6() {
			if err := h.AddrReplace(veth, transparentGateway6Addr()); err != nil {
				return fmt.Errorf("gateway address %s on %s: %w", TransparentGateway6, hostName, err)
			}
		}
		if err := h.LinkSetUp(veth); err != nil {
			return fmt.Errorf("set %s up: %w", hostName, err)
		}
		for _, ip := range s.IPs {
			dst := hostPrefix(ip.IP)
			if err := h.RouteReplace(&netlink.Route{LinkIndex: veth.Index, Dst: &dst, Scope: netlink.SCOPE_LINK}); err != nil {
				return fmt.Errorf("host route %s dev %s: %w", dst.String(), hostName, err)
			}
			if err := h.NeighSet(&netlink.Neigh{LinkIndex: veth.Index, Family: familyOf(ip.IP), IP: ip.IP, HardwareAddr: podMAC, State: netlink.NUD_PERMANENT}); err != nil {
				return fmt.Errorf("host neighbour %s on %s: %w", ip.IP, hostName, err)
			}
		}
	default:
		return fmt.Errorf("unknown mode %q", s.Mode)
	}
	// The pod's interface drops what it sends until the kernel has
	// processed its carrier event (asynchronously, after the host end came
	// up); ADD returns once it is operationally up, so the pod's first ARP
	// or neighbour solicitation is not lost to the retransmit timer.
	if pl, err := podH.LinkByName(s.IfName); err == nil {
		waitOperUp(podH, pl.Attrs().Index, time.Second)
	}
	if s.hasV6() {
		waitIPv6Local(h, podH, s, veth.Index, time.Second)
	}
	if err := hook.at("add:host"); err != nil {
		return err
	}
	return nil
}

// waitOperUp waits (at most max) until the kernel reports link index
// operationally up; the carrier event that makes it so is processed
// asynchronously after the link is set up. It gives up silently: the
// port then becomes forwarding a little later.
func waitOperUp(h *netlink.Handle, index int, max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		l, err := h.LinkByIndex(index)
		if err != nil || l.Attrs().OperState == netlink.OperUp || time.Now().After(deadline) {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// waitIPv6Local waits (at most max) until every IPv6 address ADD
// configured is local to the kernel: the pod's addresses in the pod, and
// in transparent mode the gateway fe80::1 on the host veth. An IPv6
// address is listed (and, with nodad, not tentative) the moment it is
// added, but the kernel inserts its route in the local table, which makes
// it accept packets addressed to it, only when its duplicate address
// detection completes, and that runs from a work queue that needs the
// RTNL lock even without DAD. Until then packets to the address are
// dropped: without this wait the pod's first IPv6 packet (or its answer)
// was lost to the 1 s retransmit in a few percent of ADDs on a busy node,
// where RTNL is contended. It gives up silently, as waitOperUp.
func waitIPv6Local(h, podH *netlink.Handle, s Spec, hostIndex int, max time.Duration) {
	type local struct {
		h   *netlink.Handle
		ip  net.IP
		oif int // 0: any link
	}
	var want []local
	for _, ip := range s.IPs {
		if !isV4(ip.IP) {
			want = append(want, local{podH, ip.IP, 0})
		}
	}
	if s.Mode == ModeTransparent {
		want = append(want, local{h, TransparentGateway6, hostIndex})
	}
	deadline := time.Now().Add(max)
	pause := 100 * time.Microsecond
	for _, w := range want {
		for !isLocal6(w.h, w.ip, w.oif) && time.Now().Before(deadline) {
			time.Sleep(pause)
			pause = min(2*pause, 2*time.Millisecond)
		}
	}
}

// isLocal6 says whether the local table of h's namespace has ip (on link
// oif, unless 0).
func isLocal6(h *netlink.Handle, ip net.IP, oif int) bool {
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}, LinkIndex: oif}
	mask := uint64(netlink.RT_FILTER_TABLE | netlink.RT_FILTER_DST)
	if oif != 0 {
		mask |= netlink.RT_FILTER_OIF
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V6, filter, mask)
	return err == nil && len(routes) > 0
}

// configurePod sets the pod end's address, state, routes and (transparent)
// the gateway's permanent neighbour entry.
func configurePod(podH *netlink.Handle, s Spec, hostMAC net.HardwareAddr) error {
	link, err := podH.LinkByName(s.IfName)
	if err != nil {
		return err
	}
	idx := link.Attrs().Index
	for _, ip := range s.IPs {
		a := &netlink.Addr{IPNet: ip}
		if !isV4(ip.IP) {
			// The address is unique by allocation: no duplicate address
			// detection, so it is usable the moment ADD returns (DAD would
			// keep it tentative for a second or more).
			a.Flags = unix.IFA_F_NODAD
		}
		if err := podH.AddrAdd(link, a); err != nil {
			return fmt.Errorf("address %s: %w", ip, err)
		}
	}
	if err := podH.LinkSetUp(link); err != nil {
		return err
	}
	if s.Mode == ModeTransparent {
		for _, ip := range s.IPs {
			gw := TransparentGatewayFor(ip.IP)
			if err := podH.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: familyOf(gw), IP: gw, HardwareAddr: hostMAC, State: netlink.NUD_PERMANENT}); err != nil {
				return fmt.Errorf("gateway neighbour %s: %w", gw, err)
			}
		}
	}
	// The gateway's own /32 must exist before a route via it; ResultRoutes
	// lists it first.
	for _, r := range ResultRoutes(s) {
		d := r.Dst
		nr := &netlink.Route{LinkIndex: idx, Gw: r.GW, Dst: &d}
		if r.GW == nil {
			nr.Scope = netlink.SCOPE_LINK
		}
		if err := podH.RouteReplace(nr); err != nil {
			return fmt.Errorf("route %s via %v: %w", dstString(nr.Dst), nr.Gw, err)
		}
	}
	return nil
}

// ResultRoutes lists the routes the pod gets, per address in the order
// of s.IPs, in the order they are created. IPv4: transparent: the
// gateway's /32 on the link, ipsToRouteViaHost via the gateway, default
// via the gateway; bridge: ipsToRouteViaHost via the node's address,
// default via the subnet gateway (the subnet itself is the connected
// route of the address). IPv6: the default route via the gateway (the
// link-local one in transparent mode is on the link by definition).
func ResultRoutes(s Spec) []*types.Route {
	var out []*types.Route
	for i, ip := range s.IPs {
		gw := s.Gateways[i]
		if !isV4(ip.IP) {
			out = append(out, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: gw})
			continue
		}
		switch s.Mode {
		case ModeTransparent:
			out = append(out, &types.Route{Dst: hostPrefix(TransparentGateway)})
			for _, v := range s.ViaHost {
				out = append(out, &types.Route{Dst: hostPrefix(v), GW: TransparentGateway})
			}
		case ModeBridge:
			if s.HostIP != nil {
				for _, v := range s.ViaHost {
					out = append(out, &types.Route{Dst: hostPrefix(v), GW: s.HostIP})
				}
			}
		}
		out = append(out, &types.Route{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw})
	}
	return out
}

func dstString(n *net.IPNet) string {
	if n == nil {
		return "default"
	}
	return n.String()
}

// NetnsError says the pod's namespace could not be opened.
type NetnsError struct {
	Path string
	Err  error
}

func (e *NetnsError) Error() string { return fmt.Sprintf("open netns %q: %v", e.Path, e.Err) }
func (e *NetnsError) Unwrap() error { return e.Err }

// Teardown removes whatever exists of the endpoint of containerID/ifName:
// the host veth (which takes the pod end, host route and neighbours with
// it) or, if only the pod end is left, that. It is fine for nothing to
// exist; the result says whether something was removed.
func Teardown(h *netlink.Handle, containerID, ifName, netnsPath string) (bool, error) {
	hostName := HostVethName(containerID, ifName)
	removed := false
	l, err := h.LinkByName(hostName)
	switch {
	case err == nil:
		if err := h.LinkDel(l); err != nil && !isNotFound(err) {
			return false, fmt.Errorf("delete %s: %w", hostName, err)
		}
		removed = true
	case isNotFound(err):
	default:
		return false, fmt.Errorf("look up %s: %w", hostName, err)
	}
	if removed || netnsPath == "" {
		return removed, nil
	}
	// Host end gone but a pod end might remain (only possible if someone
	// deleted the host end by hand). Delete it only if it is ours (its MAC
	// is the one we derive), never another plugin's interface.
	podNS, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return false, nil // namespace gone: nothing left in it
	}
	defer podNS.Close()
	podH, err := netlink.NewHandleAt(podNS, unix.NETLINK_ROUTE)
	if err != nil {
		return false, err
	}
	defer podH.Close()
	pl, err := podH.LinkByName(ifName)
	if err != nil {
		return false, nil
	}
	_, podMAC := MACs(containerID, ifName)
	if pl.Attrs().HardwareAddr.String() != podMAC.String() {
		return false, nil
	}
	if err := podH.LinkDel(pl); err != nil && !isNotFound(err) {
		return false, fmt.Errorf("delete %s in %s: %w", ifName, netnsPath, err)
	}
	return true, nil
}

// Owned is an endpoint found in the kernel by its host veth's alias.
type Owned struct {
	Owner
	HostVeth string
}

// ListOwned returns every endpoint azure-vnet created in this namespace.
func ListOwned(h *netlink.Handle) ([]Owned, error) {
	links, err := retryDump(func() ([]netlink.Link, error) { return h.LinkList() })
	if err != nil {
		return nil, err
	}
	var out []Owned
	for _, l := range links {
		a := l.Attrs()
		if !strings.HasPrefix(a.Name, HostVethPrefix) || a.Alias == "" {
			continue
		}
		o, err := ParseAlias(a.Alias)
		if err != nil {
			continue
		}
		out = append(out, Owned{Owner: o, HostVeth: a.Name})
	}
	return out, nil
}

// DeleteLink deletes a link by name; a missing link is not an error.
func DeleteLink(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// retryDump repeats a netlink dump interrupted by a concurrent change
// (other pods being added), which the kernel reports with NLM_F_DUMP_INTR.
func retryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 10; i++ {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT)
}
