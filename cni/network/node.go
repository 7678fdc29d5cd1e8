//go:build linux

package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/cni/store"
)

// Sysctls azure-vnet needs on the node (in the namespace it runs in).
const (
	SysctlIPForward       = "/proc/sys/net/ipv4/ip_forward"
	SysctlIPv6Forward     = "/proc/sys/net/ipv6/conf/all/forwarding"
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

// EnsureIPv6Forwarding turns IPv6 forwarding on in this namespace for
// transparent-mode pods. With forwarding on, the kernel ignores router
// advertisements on interfaces whose accept_ra is 1; a node that learns
// its IPv6 default route from them would lose it at the next expiry, so
// the master's accept_ra 1 becomes 2 (accept them while forwarding)
// first. Any other value was chosen by someone and is left alone.
func EnsureIPv6Forwarding(master string) error {
	ra := "/proc/sys/net/ipv6/conf/" + master + "/accept_ra"
	if cur, err := os.ReadFile(ra); err == nil && strings.TrimSpace(string(cur)) == "1" {
		if err := os.WriteFile(ra, []byte("2"), 0o644); err != nil {
			return err
		}
	}
	return EnsureSysctl(SysctlIPv6Forward, "1")
}

// EnsureBridgeNetfilter turns bridge-nf-call-iptables on in this
// namespace, loading br_netfilter first if its sysctls are missing.
func EnsureBridgeNetfilter() error {
	if _, err := os.Stat(SysctlBridgeNFCallIP4); os.IsNotExist(err) {
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			return fmt.Errorf("modprobe br_netfilter: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return EnsureSysctl(SysctlBridgeNFCallIP4, "1")
}

// LinkToward returns the interface the node uses to reach ip (one
// RTM_GETROUTE, no dump): in transparent mode with no master named, the
// interface toward the pool's gateway is the master.
func LinkToward(h *netlink.Handle, ip net.IP) (netlink.Link, error) {
	rs, err := h.RouteGet(ip)
	if err != nil || len(rs) == 0 || rs[0].LinkIndex == 0 {
		return nil, fmt.Errorf("no route to %s: %v", ip, err)
	}
	return h.LinkByIndex(rs[0].LinkIndex)
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

// bridgePlan is what the first-time bridge setup is about to do, written
// before the node is touched: the master interface's addresses and
// routes. If the plugin is killed half-way (master enslaved, addresses
// moved, routes not yet), the next call finds the unfinished plan and
// completes it; without it the routes would be lost with the process.
type bridgePlan struct {
	Bridge    string         `json:"bridge"`
	Master    string         `json:"master"`
	MasterMAC string         `json:"masterMAC"`
	MTU       int            `json:"mtu"`
	Addrs     []string       `json:"addrs"`
	Routes    []plannedRoute `json:"routes"`
	Done      bool           `json:"done"`
}

type plannedRoute struct {
	Dst      string `json:"dst,omitempty"`
	Gw       string `json:"gw,omitempty"`
	Src      string `json:"src,omitempty"`
	Scope    uint8  `json:"scope"`
	Protocol int    `json:"protocol"`
	Priority int    `json:"priority"`
	Table    int    `json:"table"`
}

func (p plannedRoute) route(index int) *netlink.Route {
	r := &netlink.Route{LinkIndex: index, Scope: netlink.Scope(p.Scope), Protocol: netlink.RouteProtocol(p.Protocol), Priority: p.Priority, Table: p.Table}
	if p.Dst != "" {
		_, r.Dst, _ = net.ParseCIDR(p.Dst)
	}
	r.Gw = net.ParseIP(p.Gw)
	r.Src = net.ParseIP(p.Src)
	return r
}

func loadPlan(path string) *bridgePlan {
	var p bridgePlan
	if ok, err := store.Read(path, &p); !ok || err != nil {
		return nil
	}
	return &p
}

// EnsureBridge returns the bridge, creating it and enslaving the master
// interface the first time. The fast path (bridge exists, its setup plan
// is done, the master is a port of it) takes no lock. The slow path takes
// a lock of its own (lockPath), separate from the state lock, so one
// first-time setup runs at a time while allocations on other pods go on.
// planPath records the setup so a crash in the middle is repaired.
func EnsureBridge(h *netlink.Handle, name, master, lockPath, planPath string, hook Hook) (*Bridge, error) {
	if b, ok := bridgeReady(h, name, planPath); ok {
		return b, nil
	}
	lock, err := store.Acquire(lockPath, 60*time.Second)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if b, ok := bridgeReady(h, name, planPath); ok {
		return b, nil
	}
	if err := setupBridge(h, name, master, planPath, hook); err != nil {
		return nil, err
	}
	b, ok := bridgeReady(h, name, planPath)
	if !ok {
		return nil, fmt.Errorf("bridge %s not usable after setup", name)
	}
	return b, nil
}

// bridgeReady: the bridge exists, its setup completed, and the planned
// master interface is a port of it.
func bridgeReady(h *netlink.Handle, name, planPath string) (*Bridge, bool) {
	plan := loadPlan(planPath)
	if plan == nil || !plan.Done || plan.Bridge != name {
		return nil, false
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, false
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, false
	}
	m, err := h.LinkByName(plan.Master)
	if err != nil || m.Attrs().MasterIndex != br.Index {
		return nil, false
	}
	b := &Bridge{Name: br.Name, MAC: br.HardwareAddr, Index: br.Index, MTU: br.MTU}
	if addrs, err := h.AddrList(br, netlink.FAMILY_V4); err == nil && len(addrs) > 0 {
		b.HostIP = addrs[0].IP
	}
	if br.Flags&net.FlagUp == 0 {
		_ = h.LinkSetUp(br)
	}
	return b, true
}

// setupBridge creates the bridge with the master's MAC and MTU, enslaves
// the master and moves its IPv4 addresses and routes to the bridge. Every
// step is idempotent, so an unfinished plan (a crash) is simply run
// again. If a step fails, everything is undone: the node keeps the
// network it had.
func setupBridge(h *netlink.Handle, name, master, planPath string, hook Hook) (err error) {
	plan := loadPlan(planPath)
	if plan == nil || plan.Done || plan.Bridge != name {
		m, err := MasterLink(h, master)
		if err != nil {
			return err
		}
		if _, isBr := m.(*netlink.Bridge); isBr {
			return fmt.Errorf("master interface %s is itself a bridge; name the physical interface in \"master\"", m.Attrs().Name)
		}
		if plan, err = snapshot(h, name, m); err != nil {
			return err
		}
		if err := store.Save(planPath, plan); err != nil {
			return fmt.Errorf("save bridge plan: %w", err)
		}
	}
	m, err := h.LinkByName(plan.Master)
	if err != nil {
		return fmt.Errorf("master interface %s: %w", plan.Master, err)
	}
	var addrs []*netlink.Addr
	for _, a := range plan.Addrs {
		na, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		if !isV4(na.IP) {
			na.Flags = unix.IFA_F_NODAD // it was valid on the master: no second DAD
		}
		addrs = append(addrs, na)
	}

	var br netlink.Link
	created := false
	defer func() {
		if err == nil {
			return
		}
		// Roll back from the plan; errors here are secondary.
		if br != nil {
			for _, a := range addrs {
				_ = h.AddrDel(br, a)
			}
		}
		_ = h.LinkSetNoMaster(m)
		for _, a := range addrs {
			_ = h.AddrReplace(m, a)
		}
		_ = h.LinkSetUp(m)
		for _, pr := range plan.Routes {
			_ = h.RouteReplace(pr.route(m.Attrs().Index))
		}
		if created && br != nil {
			_ = h.LinkDel(br)
		}
		removeMACRules(plan.Master, plan.MasterMAC)
		_ = os.Remove(planPath)
	}()

	if l, lerr := h.LinkByName(name); lerr == nil {
		br = l
	} else {
		mac, _ := net.ParseMAC(plan.MasterMAC)
		nb := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: plan.MTU, HardwareAddr: mac}}
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
		return fmt.Errorf("enslave %s to %s: %w", plan.Master, name, err)
	}
	if err = hook.at("bridge:enslaved"); err != nil {
		return err
	}
	for _, a := range addrs {
		if err = h.AddrReplace(br, a); err != nil {
			return fmt.Errorf("move address %s to %s: %w", a.IPNet, name, err)
		}
		if derr := h.AddrDel(m, a); derr != nil && !errors.Is(derr, unix.EADDRNOTAVAIL) {
			err = fmt.Errorf("remove address %s from %s: %w", a.IPNet, plan.Master, derr)
			return err
		}
	}
	if err = hook.at("bridge:addresses"); err != nil {
		return err
	}
	for _, pr := range plan.Routes {
		if err = h.RouteReplace(pr.route(br.Attrs().Index)); err != nil {
			return fmt.Errorf("move route %s via %s to %s: %w", pr.Dst, pr.Gw, name, err)
		}
	}
	if err = hook.at("bridge:routes"); err != nil {
		return err
	}
	if err = ensureMACRules(plan.Master, plan.MasterMAC); err != nil {
		if !errors.Is(err, ErrNoEbtables) {
			return err
		}
		err = nil // without ebtables pods still work where the network accepts their MACs
	}
	// Traffic from the VNet to pods is forwarded by the node back onto the
	// bridge (see ebtables.go): forwarding on, no ICMP redirects for it.
	for _, sc := range []struct{ path, value string }{
		{SysctlIPForward, "1"},
		{"/proc/sys/net/ipv4/conf/all/send_redirects", "0"},
		{"/proc/sys/net/ipv4/conf/" + name + "/send_redirects", "0"},
	} {
		if err = EnsureSysctl(sc.path, sc.value); err != nil {
			return fmt.Errorf("sysctl %s: %w", sc.path, err)
		}
	}
	if err = hook.at("bridge:ebtables"); err != nil {
		return err
	}
	plan.Done = true
	if err = store.Save(planPath, plan); err != nil {
		return fmt.Errorf("save bridge plan: %w", err)
	}
	return nil
}

// snapshot records the master's addresses and its routes other than the
// connected ones (the kernel recreates those on the bridge with the
// addresses).
func snapshot(h *netlink.Handle, name string, m netlink.Link) (*bridgePlan, error) {
	ma := m.Attrs()
	plan := &bridgePlan{Bridge: name, Master: ma.Name, MasterMAC: ma.HardwareAddr.String(), MTU: ma.MTU}
	addrs, err := h.AddrList(m, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ma.Name, err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && !isV4(a.IP) {
			continue // the bridge gets its own
		}
		plan.Addrs = append(plan.Addrs, a.IPNet.String())
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: ma.Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", ma.Name, err)
	}
	for _, r := range routes {
		if r.Gw == nil && r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		if r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) && !isV4(r.Dst.IP) {
			continue
		}
		pr := plannedRoute{Scope: uint8(r.Scope), Protocol: int(r.Protocol), Priority: r.Priority, Table: r.Table}
		if r.Dst != nil && !isDefault(r.Dst) {
			pr.Dst = r.Dst.String()
		}
		if r.Gw != nil {
			pr.Gw = r.Gw.String()
		}
		if r.Src != nil {
			pr.Src = r.Src.String()
		}
		plan.Routes = append(plan.Routes, pr)
	}
	return plan, nil
}
