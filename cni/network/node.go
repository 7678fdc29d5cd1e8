package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/cni/store"
)

// Sysctls azure-vnet needs on the node (in the namespace it runs in).
const (
	SysctlIPForward       = "/proc/sys/net/ipv4/ip_forward"
	SysctlBridgeNFCallIP4 = "/proc/sys/net/bridge/bridge-nf-call-iptables"
)

// EnsureSysctl sets a /proc/sys value if it differs. The read comes first
// so the common case (already set) costs no write.
func EnsureSysctl(path, value string) error {
	cur, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(cur)) == value {
		return nil
	}
	return os.WriteFile(path, []byte(value), 0o644)
}

// MasterLink returns the master interface: the named one, or the one
// holding the IPv4 default route.
func MasterLink(h *netlink.Handle, name string) (netlink.Link, error) {
	if name != "" {
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("master interface %q: %w", name, err)
		}
		return l, nil
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if isDefault(r.Dst) && r.LinkIndex > 0 {
			return h.LinkByIndex(r.LinkIndex)
		}
	}
	return nil, errors.New("no master interface: the node has no IPv4 default route; set \"master\" in the config")
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

// Bridge is the node's bridge as a pod needs it.
type Bridge struct {
	Name   string
	MAC    net.HardwareAddr
	Index  int
	MTU    int
	HostIP net.IP // the node's first IPv4 address on the bridge (may be nil)
}

// EnsureBridge returns the bridge, creating it and enslaving the master
// interface the first time. The fast path (bridge exists, master already
// enslaved) takes no lock. The slow path takes a lock of its own
// (lockPath), separate from the state lock, so one first-time setup runs
// at a time while allocations on other pods continue.
func EnsureBridge(h *netlink.Handle, name, master, lockPath string, hook Hook) (*Bridge, error) {
	if b, ok := bridgeReady(h, name, master); ok {
		return b, nil
	}
	lock, err := store.Acquire(lockPath, 60*time.Second)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if b, ok := bridgeReady(h, name, master); ok {
		return b, nil
	}
	if err := setupBridge(h, name, master, hook); err != nil {
		return nil, err
	}
	b, ok := bridgeReady(h, name, master)
	if !ok {
		return nil, fmt.Errorf("bridge %s not usable after setup", name)
	}
	return b, nil
}

// bridgeReady: the bridge exists, and the master interface is a port of it
// (or, with no master named, the default route already points at the
// bridge, meaning an earlier setup moved it there).
func bridgeReady(h *netlink.Handle, name, master string) (*Bridge, bool) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, false
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, false
	}
	m, err := MasterLink(h, master)
	if err != nil {
		return nil, false
	}
	if m.Attrs().Index != br.Index && m.Attrs().MasterIndex != br.Index {
		return nil, false
	}
	b := &Bridge{Name: br.Name, MAC: br.HardwareAddr, Index: br.Index, MTU: br.MTU}
	if addrs, err := h.AddrList(br, netlink.FAMILY_V4); err == nil && len(addrs) > 0 {
		b.HostIP = addrs[0].IP
	}
	if br.OperState == netlink.OperDown || br.Flags&net.FlagUp == 0 {
		_ = h.LinkSetUp(br)
	}
	return b, true
}

// setupBridge creates the bridge with the master's MAC and MTU, enslaves
// the master and moves its IPv4 addresses and routes to the bridge. If a
// step fails, everything done so far is undone: the node keeps the
// network it had.
func setupBridge(h *netlink.Handle, name, master string, hook Hook) (err error) {
	m, err := MasterLink(h, master)
	if err != nil {
		return err
	}
	if _, isBr := m.(*netlink.Bridge); isBr {
		return fmt.Errorf("master interface %s is itself a bridge; name the physical interface in \"master\"", m.Attrs().Name)
	}
	ma := m.Attrs()
	addrs, err := h.AddrList(m, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", ma.Name, err)
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: ma.Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", ma.Name, err)
	}

	var br netlink.Link
	created := false
	enslaved := false
	var movedAddrs []netlink.Addr
	defer func() {
		if err == nil {
			return
		}
		// Roll back in reverse order; errors here are secondary.
		if br != nil {
			for _, a := range movedAddrs {
				a := a
				a.Label = ""
				_ = h.AddrDel(br, &a)
			}
		}
		if enslaved {
			_ = h.LinkSetNoMaster(m)
		}
		for _, a := range movedAddrs {
			a := a
			a.Label = ""
			_ = h.AddrAdd(m, &a)
		}
		_ = h.LinkSetUp(m)
		for _, r := range routes {
			r := r
			_ = h.RouteReplace(&r)
		}
		if created && br != nil {
			_ = h.LinkDel(br)
		}
	}()

	if l, lerr := h.LinkByName(name); lerr == nil {
		br = l
	} else {
		nb := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: ma.MTU, HardwareAddr: ma.HardwareAddr}}
		if err = h.LinkAdd(nb); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		created = true
		if br, err = h.LinkByName(name); err != nil {
			return err
		}
	}
	if err = h.LinkSetUp(br); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	if err = hook.at("bridge:created"); err != nil {
		return err
	}
	if err = h.LinkSetMaster(m, br); err != nil {
		return fmt.Errorf("enslave %s to %s: %w", ma.Name, name, err)
	}
	enslaved = true
	if err = hook.at("bridge:enslaved"); err != nil {
		return err
	}
	for _, a := range addrs {
		a := a
		a.Label = ""
		na := a
		if err = h.AddrReplace(br, &na); err != nil {
			return fmt.Errorf("move address %s to %s: %w", a.IPNet, name, err)
		}
		movedAddrs = append(movedAddrs, a)
		if err = h.AddrDel(m, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove address %s from %s: %w", a.IPNet, ma.Name, err)
		}
		err = nil
	}
	if err = hook.at("bridge:addresses"); err != nil {
		return err
	}
	for _, r := range routes {
		if r.Gw == nil && r.Protocol == unix.RTPROT_KERNEL {
			continue // connected route: the kernel made it on the bridge with the address
		}
		nr := r
		nr.LinkIndex = br.Attrs().Index
		nr.ILinkIndex = 0
		if err = h.RouteReplace(&nr); err != nil {
			return fmt.Errorf("move route %s to %s: %w", dstString(r.Dst), name, err)
		}
	}
	if err = hook.at("bridge:routes"); err != nil {
		return err
	}
	return nil
}
