//go:build linux

package plugin_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/cni/cnitest"
	"github.com/open-acn/acn/cni/failpoint"
	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/cni/plugin"
	"github.com/open-acn/acn/internal/netnstest"
)

// familySets are the ipam.ipFamilies every mode is tested with (IPv4
// alone is TestLifecycleEverySpecVersion).
var familySets = [][]string{{"IPv6"}, {"IPv4", "IPv6"}, {"IPv6", "IPv4"}}

func familyName(fams []string) string { return strings.Join(fams, "+") }

// checkFamilies verifies a result's addresses: one per family in the
// configured order, each on eth0 with the mode's gateway and prefix, in
// the VNet subnet of its family, and a default route per family.
func checkFamilies(t *testing.T, r *types100.Result, fams []string, mode string) {
	t.Helper()
	if len(r.IPs) != len(fams) {
		t.Fatalf("want %d addresses (%v), got %+v", len(fams), fams, r.IPs)
	}
	podIdx := -1
	for i, ifc := range r.Interfaces {
		if ifc.Name == "eth0" && ifc.Sandbox != "" {
			podIdx = i
		}
	}
	for i, fam := range fams {
		ipc := r.IPs[i]
		v6 := fam == "IPv6"
		if (ipc.Address.IP.To4() == nil) != v6 {
			t.Errorf("address %d is %s, want %s (primary family first)", i, ipc.Address.IP, fam)
		}
		if ipc.Interface == nil || *ipc.Interface != podIdx {
			t.Errorf("address %s does not point at eth0", ipc.Address.IP)
		}
		sn, gw, ones := subnet, gatewayIP, 16
		switch {
		case v6 && mode == "transparent":
			sn, gw, ones = subnet6, network.TransparentGateway6.String(), 128
		case v6:
			sn, gw, ones = subnet6, gatewayIP6, 64
		case mode == "transparent":
			gw, ones = network.TransparentGateway.String(), 32
		}
		_, n, _ := net.ParseCIDR(sn)
		if !n.Contains(ipc.Address.IP) || ipc.Address.IP.String() == nodeIP6 || ipc.Address.IP.String() == nodeIP {
			t.Errorf("address %s is not a pod address of %s", ipc.Address.IP, sn)
		}
		if got, _ := ipc.Address.Mask.Size(); got != ones || ipc.Gateway.String() != gw {
			t.Errorf("address %s/%d gateway %s, want /%d gateway %s", ipc.Address.IP, got, ipc.Gateway, ones, gw)
		}
		found := false
		for _, rt := range r.Routes {
			o, _ := rt.Dst.Mask.Size()
			found = found || (o == 0 && rt.GW.String() == gw && (rt.Dst.IP.To4() == nil) == v6)
		}
		if !found {
			t.Errorf("no %s default route via %s in %+v", fam, gw, r.Routes)
		}
	}
}

// TestDualStackLifecycle: every mode × {IPv6, IPv4+IPv6, IPv6+IPv4} ×
// every spec version: ADD (addresses in the configured order), repeated
// ADD, CHECK of both families, STATUS, two pods reaching each other, the
// node and their gateway over each family, GC or DEL removing both.
func TestDualStackLifecycle(t *testing.T) {
	for _, mode := range []string{"transparent", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			n := newNode(t, 60)
			if mode == "transparent" {
				n.routePodsV6ViaNode()
			}
			for _, fams := range familySets {
				for _, v := range specVersions {
					t.Run(familyName(fams)+"/"+v, func(t *testing.T) {
						n.t = t
						l := n.list(v, withFamilies(n.netConf(mode, nil), fams))
						a, b := n.newPod("ds-a"+mode+familyName(fams)+v), n.newPod("ds-b"+mode+familyName(fams)+v)
						ra := n.mustAdd(l, a)
						checkFamilies(t, ra, fams, mode)
						again := n.mustAdd(l, a)
						if network.JoinCIDRs(ipNets(again)) != network.JoinCIDRs(ipNets(ra)) {
							t.Errorf("repeated ADD: %v, first %v", resultIPs(again), resultIPs(ra))
						}
						if atLeast(v, "0.4.0") {
							if err := n.cni.CheckNetworkList(context.Background(), l, a.rt()); err != nil {
								t.Errorf("CHECK: %v", err)
							}
						}
						if atLeast(v, "1.1.0") {
							if err := n.cni.GetStatusNetworkList(context.Background(), l); err != nil {
								t.Errorf("STATUS: %v", err)
							}
						}
						rb := n.mustAdd(l, b)
						for i, ip := range resultIPs(rb) {
							if ip.Equal(ra.IPs[i].Address.IP) {
								t.Fatalf("two pods got %s", ip)
							}
						}
						for i, fam := range fams {
							peer := rb.IPs[i].Address.IP.String()
							node, gw := nodeIP, gatewayIP
							if fam == "IPv6" {
								node, gw = nodeIP6, gatewayIP6
							}
							dsts := []string{peer, node, gw, ra.IPs[i].Gateway.String()}
							for _, dst := range dsts {
								if err := ping(a.ns, dst); err != nil {
									t.Errorf("%s: %v", fam, err)
								}
							}
						}
						if atLeast(v, "1.1.0") {
							gc := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: a.id, IfName: "eth0"}}}
							if err := n.cni.GCNetworkList(context.Background(), l, gc); err != nil {
								t.Errorf("GC: %v", err)
							}
						} else {
							n.mustDel(l, b)
						}
						for _, ip := range resultIPs(rb) {
							n.assertGone(b, ip)
						}
						n.mustDel(l, a)
						for _, ip := range resultIPs(ra) {
							n.assertGone(a, ip)
						}
						n.mustDel(l, a)
					})
				}
			}
		})
	}
}

func ipNets(r *types100.Result) []*net.IPNet {
	var out []*net.IPNet
	for _, ipc := range r.IPs {
		n := ipc.Address
		out = append(out, &n)
	}
	return out
}

// TestIPv6UsableAtOnce: the pod's IPv6 address is not tentative when ADD
// returns (no duplicate address detection delay) and the first echo
// request to the gateway and the node is answered. How long the first
// reply takes is measured by the benchmark, not asserted here.
func TestIPv6UsableAtOnce(t *testing.T) {
	for _, mode := range []string{"transparent", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			n := newNode(t, 4)
			l := n.list("1.1.0", withFamilies(n.netConf(mode, nil), []string{"IPv6"}))
			p := n.newPod("nodad-" + mode)
			r := n.mustAdd(l, p)
			h, err := p.ns.Handle()
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			link, err := h.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			addrs, err := h.AddrList(link, netlink.FAMILY_V6)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, a := range addrs {
				if a.IP.Equal(r.IPs[0].Address.IP) {
					found = true
					if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
						t.Errorf("pod address %s is tentative (flags %#x) after ADD", a.IP, a.Flags)
					}
				}
			}
			if !found {
				t.Fatalf("pod has no address %s: %+v", r.IPs[0].Address.IP, addrs)
			}
			start := time.Now()
			if err := ping(p.ns, r.IPs[0].Gateway.String()); err != nil {
				t.Error(err)
				t.Log(p.ns.MustExec(t, "ip", "-6", "addr"), p.ns.MustExec(t, "ip", "-6", "route"), p.ns.MustExec(t, "ip", "-6", "neigh"))
			}
			if err := ping(p.ns, nodeIP6); err != nil {
				t.Error(err)
			}
			t.Logf("%s: first replies from the gateway and the node after %v", mode, time.Since(start))
			n.mustDel(l, p)
		})
	}
}

// TestIPv6LocalWhenAddReturns: when ADD returns, the kernel accepts packets
// for the pod's IPv6 address in the pod and (transparent) for the gateway
// fe80::1 on the host veth: both are in their namespace's local table. The
// kernel adds those routes only when the address's (skipped) duplicate
// address detection completes, from a work queue; without waiting for it,
// a quarter of ADDs returned before, and the pod's first IPv6 packet or
// its answer could be dropped.
func TestIPv6LocalWhenAddReturns(t *testing.T) {
	for _, mode := range []string{"transparent", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			const pods = 12
			n := newNode(t, pods)
			l := n.list("1.1.0", withFamilies(n.netConf(mode, nil), []string{"IPv4", "IPv6"}))
			nodeH := n.handle()
			for i := 0; i < pods; i++ {
				p := n.newPod(fmt.Sprintf("local6-%s-%d", mode, i))
				r := n.mustAdd(l, p)
				h, err := p.ns.Handle()
				if err != nil {
					t.Fatal(err)
				}
				missing := notLocal6(t, h, r.IPs[1].Address.IP, 0)
				h.Close()
				if mode == "transparent" {
					veth, err := nodeH.LinkByName(network.HostVethName(p.id, "eth0"))
					if err != nil {
						t.Fatal(err)
					}
					missing = append(missing, notLocal6(t, nodeH, network.TransparentGateway6, veth.Attrs().Index)...)
				}
				if len(missing) > 0 {
					t.Errorf("pod %d: not yet local when ADD returned: %v", i, missing)
				}
			}
		})
	}
}

// notLocal6 returns ip (as a one-element list) unless h's local table has
// it (on link oif, unless 0).
func notLocal6(t *testing.T, h *netlink.Handle, ip net.IP, oif int) []string {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP.Equal(ip) && (oif == 0 || r.LinkIndex == oif) {
			return nil
		}
	}
	return []string{ip.String()}
}

// TestDualStackAllOrNothing: with one IPv6 address for many IPv4 ones,
// the second dual-stack pod fails with the IPv6 pool exhausted and holds
// no IPv4 address either; STATUS names the exhausted family.
func TestDualStackAllOrNothing(t *testing.T) {
	for _, bin := range []string{"azure-vnet", "azure-vnet-ipam"} {
		t.Run(bin, func(t *testing.T) {
			n := newNode(t, 10)
			if err := cnitest.WriteInterfacesDual(n.ifsFile, 10, 1); err != nil {
				t.Fatal(err)
			}
			conf := withFamilies(n.netConf("transparent", nil), []string{"IPv4", "IPv6"})
			if bin == "azure-vnet-ipam" {
				conf = map[string]interface{}{"type": "azure-vnet-ipam", "stateDir": n.dir, "ipam": conf["ipam"]}
			}
			l := n.list("1.1.0", conf)
			a, b := n.newPod("aon-a"), n.newPod("aon-b")
			ra := n.mustAdd(l, a)
			if len(ra.IPs) != 2 {
				t.Fatalf("first pod: %+v", ra.IPs)
			}
			_, err := n.add(l, b)
			if cniCode(err) != plugin.ErrPoolExhausted || !strings.Contains(err.Error(), subnet6) {
				t.Fatalf("second pod: %v, want code %d naming %s", err, plugin.ErrPoolExhausted, subnet6)
			}
			if _, is := n.state(); len(is.FindAll(b.id, "eth0")) != 0 {
				t.Errorf("half-allocated pod: %+v", is.FindAll(b.id, "eth0"))
			}
			n.assertGone(b, nil)
			if err := n.cni.GetStatusNetworkList(context.Background(), l); cniCode(err) != plugin.ErrPluginNotAvailable || !strings.Contains(err.Error(), "IPv6") {
				t.Errorf("STATUS: %v", err)
			}
			n.mustDel(l, a)
			n.mustAdd(l, b)
			n.mustDel(l, b)
		})
	}
}

// TestDualStackBadConfig: each mistake in a dual-stack configuration is
// code 7 naming it, with nothing created.
func TestDualStackBadConfig(t *testing.T) {
	n := newNode(t, 4)
	v4only := n.dir + "/interfaces-v4.json"
	if err := cnitest.WriteInterfacesDual(v4only, 4, 0); err != nil {
		t.Fatal(err)
	}
	both := []string{"IPv4", "IPv6"}
	cases := []struct {
		name string
		ipam map[string]interface{}
		want string
	}{
		{"family without pool", map[string]interface{}{"ipFamilies": both, "interfacesFile": v4only}, "no IPv6 subnet"},
		{"unknown family", map[string]interface{}{"ipFamilies": []string{"IPv5"}}, `"IPv5"`},
		{"family twice", map[string]interface{}{"ipFamilies": []string{"IPv6", "IPv6"}}, "IPv6 twice"},
		{"link-local subnet", map[string]interface{}{"ipFamilies": both, "subnet": "fe80::/64"}, "overlaps fe80::/10"},
		{"multicast subnet", map[string]interface{}{"ipFamilies": both, "subnet": "ff02::/64"}, "overlaps ff00::/8"},
		{"loopback address", map[string]interface{}{"ipFamilies": both, "ipAddress": "::1"}, "::1/128"},
		{"documentation prefix", map[string]interface{}{"ipFamilies": both, "subnet": "2001:db8:1::/64"}, "overlaps 2001:db8::/32"},
		{"two subnets of a family", map[string]interface{}{"ipFamilies": both, "subnet": "fd00:240::/64,fd00:241::/64"}, "two IPv6 ranges"},
		{"subnet of a family not asked for", map[string]interface{}{"subnet": "fd00:240::/64"}, "does not ask for IPv6"},
		{"overlay without IPv6 cluster CIDR", map[string]interface{}{"ipFamilies": both, "environment": "overlay", "clusterCIDR": "10.244.0.0/16", "subnet": "10.244.1.0/24"}, "has no IPv6 CIDR"},
		{"overlay IPv6 block too large", map[string]interface{}{"ipFamilies": both, "environment": "overlay", "clusterCIDR": "10.244.0.0/16,fd00:10::/32", "subnet": "10.244.1.0/24,fd00:10::/48"}, "too large"},
		{"overlay IPv6 block too small", map[string]interface{}{"ipFamilies": both, "environment": "overlay", "clusterCIDR": "10.244.0.0/16,fd00:10::/32", "subnet": "10.244.1.0/24,fd00:10::/127"}, "too small"},
		{"overlay static block missing a family", map[string]interface{}{"ipFamilies": both, "environment": "overlay", "clusterCIDR": "10.244.0.0/16,fd00:10::/32", "subnet": "10.244.1.0/24"}, "no IPv6 block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n.t = t
			conf := n.netConf("transparent", nil)
			for k, v := range c.ipam {
				conf["ipam"].(map[string]interface{})[k] = v
			}
			p := n.newPod("dsbad-" + c.name)
			_, err := n.add(n.list("1.1.0", conf), p)
			if cniCode(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want code 7 naming %q, got %v", c.want, err)
			}
			n.assertGone(p, nil)
			if o := n.ownedVeths(); len(o) != 0 {
				t.Errorf("veths created: %+v", o)
			}
			if _, is := n.state(); len(is.Allocations) != 0 {
				t.Errorf("addresses allocated: %+v", is.Allocations)
			}
		})
	}
}

// routePodsV6ViaNode makes the VNet deliver the pods' IPv6 addresses
// (fd00:240::1:0/112) to the node, as Azure's fabric does for a NIC's
// addresses; transparent mode needs it (bridge-mode pods answer neighbour
// solicitations themselves).
func (n *node) routePodsV6ViaNode() {
	n.vnet.MustExec(n.t, "ip", "-6", "route", "add", "fd00:240::1:0/112", "via", nodeIP6)
}

// TestOverlayDualStack: a node with an IPv4 and an IPv6 block (a /64 and
// a /120, as the Node object says) gives each pod one address of each,
// in the configured order; pods reach each other and the node over IPv6;
// traffic leaving the cluster is SNATed per family (ip6tables for IPv6)
// unless ipam.snatFamilies leaves IPv6 out (a routed pod prefix), and
// CHECK notices a missing IPv6 rule.
func TestOverlayDualStack(t *testing.T) {
	const cluster6 = "fd00:10:244::/56"
	for _, c := range []struct {
		block6 string
		fams   []string
		snat   []string
	}{
		{"fd00:10:244:3::/64", []string{"IPv4", "IPv6"}, nil},
		{"fd00:10:244:3::/120", []string{"IPv6", "IPv4"}, nil},
		{"fd00:10:244:3::/64", []string{"IPv4", "IPv6"}, []string{"IPv4"}},
	} {
		t.Run(c.block6+"/"+familyName(c.fams)+"/snat="+strings.Join(c.snat, ","), func(t *testing.T) {
			n := newNode(t, 0)
			extra := map[string]interface{}{"clusterCIDR": clusterCIDR + "," + cluster6, "ipFamilies": c.fams}
			if c.snat != nil {
				extra["snatFamilies"] = c.snat
			}
			l := n.list("1.1.0", n.overlayConf("10.244.3.0/24,"+c.block6, extra))
			_, block6, _ := net.ParseCIDR(c.block6)
			a, b := n.newPod("ovds-a"), n.newPod("ovds-b")
			ra, rb := n.mustAdd(l, a), n.mustAdd(l, b)
			v6 := 1
			if c.fams[0] == "IPv6" {
				v6 = 0
			}
			for _, r := range []*types100.Result{ra, rb} {
				if len(r.IPs) != 2 || !block6.Contains(r.IPs[v6].Address.IP) || !r.IPs[v6].Gateway.Equal(network.TransparentGateway6) || r.IPs[1-v6].Address.IP.To4() == nil {
					t.Fatalf("result %+v: want the IPv6 address at %d in %s via %s", r.IPs, v6, block6, network.TransparentGateway6)
				}
			}
			for _, dst := range []string{rb.IPs[v6].Address.IP.String(), nodeIP6, network.TransparentGateway6.String(), rb.IPs[1-v6].Address.IP.String()} {
				if err := ping(a.ns, dst); err != nil {
					t.Error(err)
				}
			}
			nat6 := n.ns.MustExec(t, "ip6tables", "-w", "-t", "nat", "-S")
			want6 := "-A " + network.SNATChain + " -s " + c.block6 + " ! -d " + cluster6
			if snat6 := c.snat == nil; strings.Contains(nat6, want6) != snat6 {
				t.Fatalf("ip6tables nat (IPv6 SNAT %v):\n%s", snat6, nat6)
			}
			if nat4 := n.ns.MustExec(t, "iptables", "-w", "-t", "nat", "-S"); !strings.Contains(nat4, "-s 10.244.3.0/24 ! -d "+clusterCIDR) {
				t.Fatalf("iptables nat:\n%s", nat4)
			}
			// Egress over IPv6 to the VNet: the node's address with SNAT,
			// the pod's own without (the VNet routes the prefix back).
			n.vnet.MustExec(t, "ip", "-6", "route", "add", cluster6, "via", nodeIP6)
			wantSrc := nodeIP6
			if c.snat != nil {
				wantSrc = ra.IPs[v6].Address.IP.String()
			}
			if src := sourceSeen6(t, a.ns, n.vnet, "["+gatewayIP6+"]:8086"); src != wantSrc {
				t.Errorf("the VNet sees the pod's IPv6 traffic from %s, want %s", src, wantSrc)
			}
			ctx := context.Background()
			if err := n.cni.CheckNetworkList(ctx, l, a.rt()); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
			if c.snat == nil {
				n.ns.MustExec(t, "ip6tables", "-w", "-t", "nat", "-F", network.SNATChain)
				if err := n.cni.CheckNetworkList(ctx, l, a.rt()); cniCode(err) != 100 || !strings.Contains(err.Error(), c.block6) {
					t.Errorf("CHECK without the IPv6 SNAT rule: %v", err)
				}
			}
			if err := n.cni.GetStatusNetworkList(ctx, l); err != nil {
				t.Errorf("STATUS: %v", err)
			}
			n.mustDel(l, a)
			n.mustDel(l, b)
			for _, ip := range append(resultIPs(ra), resultIPs(rb)...) {
				n.assertGone(a, ip)
			}
			n.assertGone(b, nil)
		})
	}
}

// sourceSeen6 connects from one namespace to a TCP listener in another
// over IPv6 and returns the source address the listener sees.
func sourceSeen6(t *testing.T, from, to *netnstest.NS, addr string) string {
	t.Helper()
	var ln net.Listener
	if err := to.Do(func() error {
		var err error
		ln, err = net.Listen("tcp6", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- "accept: " + err.Error()
			return
		}
		ch <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	c, err := from.Dial("tcp6", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("no connection at %s", addr)
	}
	return ""
}

// TestIPAMPluginDualStack: azure-vnet-ipam alone (an IPAM-only list, as
// under another plugin): a dual-stack ADD returns both addresses with
// their gateways and default routes, CHECK verifies both, DEL frees
// both; killed right after allocating, it leaves both allocations or
// none (never one), and DEL or GC repairs it.
func TestIPAMPluginDualStack(t *testing.T) {
	n := newNode(t, 10)
	ipamConf := map[string]interface{}{"type": "azure-vnet-ipam", "environment": "file", "interfacesFile": n.ifsFile, "ipFamilies": []string{"IPv6", "IPv4"}}
	l := n.list("1.1.0", map[string]interface{}{"type": "azure-vnet-ipam", "stateDir": n.dir, "ipam": ipamConf})
	a := n.newPod("ipds-a")
	r := n.mustAdd(l, a)
	if len(r.IPs) != 2 || r.IPs[0].Address.IP.To4() != nil || r.IPs[0].Gateway.String() != gatewayIP6 || r.IPs[1].Gateway.String() != gatewayIP || len(r.Routes) != 2 {
		t.Fatalf("result %+v routes %+v", r.IPs, r.Routes)
	}
	ctx := context.Background()
	if err := n.cni.CheckNetworkList(ctx, l, a.rt()); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	n.mustDel(l, a)
	if _, is := n.state(); len(is.Allocations) != 0 {
		t.Fatalf("DEL left %+v", is.Allocations)
	}
	for _, repair := range []string{"DEL", "GC"} {
		p := n.newPod("ipds-kill-" + repair)
		n.setEnv(failpoint.EnvCrashAt + "=ipam:allocated")
		_, err := n.add(l, p)
		n.setEnv()
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("ADD not killed: %v", err)
		}
		if _, is := n.state(); len(is.FindAll(p.id, "eth0")) != 2 {
			t.Fatalf("killed after allocating: %+v, want both families", is.FindAll(p.id, "eth0"))
		}
		if repair == "DEL" {
			n.mustDel(l, p)
		} else if err := n.cni.GCNetworkList(ctx, l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}); err != nil {
			t.Fatal(err)
		}
		if _, is := n.state(); len(is.Allocations) != 0 {
			t.Errorf("%s after the kill left %+v", repair, is.Allocations)
		}
	}
}
