//go:build linux

package plugin_test

import (
	"context"
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
	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/cni/plugin"
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
