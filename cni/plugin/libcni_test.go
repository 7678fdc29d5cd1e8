//go:build linux

package plugin_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/cni/plugin"
)

var specVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

func atLeast(v, min string) bool {
	ok, _ := version.GreaterThanOrEqualTo(v, min)
	return ok
}

// TestLifecycleEverySpecVersion runs ADD, repeated ADD, CHECK, STATUS, GC
// and DEL through libcni for both modes and every supported spec version
// (CHECK from 0.4.0, GC and STATUS from 1.1.0, as the spec defines them).
func TestLifecycleEverySpecVersion(t *testing.T) {
	for _, mode := range []string{"bridge", "transparent"} {
		t.Run(mode, func(t *testing.T) {
			n := newNode(t, 20)
			for _, v := range specVersions {
				t.Run(v, func(t *testing.T) {
					l := n.list(v, n.netConf(mode, nil))
					a, b := n.newPod("a-"+mode+v), n.newPod("b-"+mode+v)
					ra := n.mustAdd(l, a)
					checkResult(t, ra, a, mode)

					// A repeated ADD returns the same result and leaves the
					// kernel alone (same veth, same ifindex).
					h := n.handle()
					veth := network.HostVethName(a.id, "eth0")
					before, err := h.LinkByName(veth)
					if err != nil {
						t.Fatal(err)
					}
					again := n.mustAdd(l, a)
					if !again.IPs[0].Address.IP.Equal(ra.IPs[0].Address.IP) {
						t.Errorf("repeated ADD gave %s, first gave %s", again.IPs[0].Address.IP, ra.IPs[0].Address.IP)
					}
					after, err := h.LinkByName(veth)
					if err != nil || after.Attrs().Index != before.Attrs().Index {
						t.Errorf("repeated ADD recreated the veth (index %d -> %v, err %v)", before.Attrs().Index, after, err)
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
					if rb.IPs[0].Address.IP.Equal(ra.IPs[0].Address.IP) {
						t.Fatalf("two pods got the same address %s", ra.IPs[0].Address.IP)
					}
					if atLeast(v, "1.1.0") {
						// GC with only a valid: b goes, a stays intact.
						gc := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: a.id, IfName: "eth0"}}}
						if err := n.cni.GCNetworkList(context.Background(), l, gc); err != nil {
							t.Errorf("GC: %v", err)
						}
						n.assertGone(b, rb.IPs[0].Address.IP)
						if err := n.cni.CheckNetworkList(context.Background(), l, a.rt()); err != nil {
							t.Errorf("CHECK after GC: %v", err)
						}
					} else {
						n.mustDel(l, b)
						n.assertGone(b, rb.IPs[0].Address.IP)
					}

					n.mustDel(l, a)
					n.assertGone(a, ra.IPs[0].Address.IP)
					// DEL twice, and DEL of a container never added, succeed.
					n.mustDel(l, a)
					n.mustDel(l, n.newPod("never-added-"+mode+v))
				})
			}
		})
	}
}

// checkResult verifies the ADD result is complete: the pod interface with
// its sandbox and MAC, the address pointing at it, the gateway, routes and
// DNS.
func checkResult(t *testing.T, r *types100.Result, p *pod, mode string) {
	t.Helper()
	var podIdx = -1
	for i, ifc := range r.Interfaces {
		if ifc.Name == "eth0" {
			podIdx = i
			if ifc.Sandbox != p.ns.Path {
				t.Errorf("eth0 sandbox %q, want %q", ifc.Sandbox, p.ns.Path)
			}
			if _, err := net.ParseMAC(ifc.Mac); err != nil {
				t.Errorf("eth0 mac %q: %v", ifc.Mac, err)
			}
		}
	}
	if podIdx < 0 {
		t.Fatalf("no eth0 in result interfaces %+v", r.Interfaces)
	}
	if len(r.IPs) != 1 || r.IPs[0].Interface == nil || *r.IPs[0].Interface != podIdx {
		t.Fatalf("ips must have one entry pointing at eth0 (index %d): %+v", podIdx, r.IPs)
	}
	ip := r.IPs[0]
	_, sn, _ := net.ParseCIDR(subnet)
	if !sn.Contains(ip.Address.IP) || ip.Address.IP.String() == nodeIP {
		t.Errorf("address %s is not a pod address of %s", ip.Address.IP, subnet)
	}
	wantGW, wantOnes := gatewayIP, 16
	if mode == "transparent" {
		wantGW, wantOnes = network.TransparentGateway.String(), 32
	}
	if ip.Gateway.String() != wantGW {
		t.Errorf("gateway %s, want %s", ip.Gateway, wantGW)
	}
	if ones, _ := ip.Address.Mask.Size(); ones != wantOnes {
		t.Errorf("prefix /%d, want /%d", ones, wantOnes)
	}
	hasDefault := false
	for _, rt := range r.Routes {
		if ones, _ := rt.Dst.Mask.Size(); ones == 0 && rt.GW.String() == wantGW {
			hasDefault = true
		}
	}
	if !hasDefault {
		t.Errorf("no default route via %s in %+v", wantGW, r.Routes)
	}
	if len(r.DNS.Nameservers) != 1 {
		t.Errorf("dns not passed through: %+v", r.DNS)
	}
}

// TestPodsReachEachOtherAndTheGateway: two pods ping each other, the
// subnet gateway (the VNet) and the node, in both modes; after DEL nothing
// of them remains in the kernel or the state.
func TestPodsReachEachOtherAndTheGateway(t *testing.T) {
	for _, mode := range []string{"bridge", "transparent"} {
		t.Run(mode, func(t *testing.T) {
			n := newNode(t, 10)
			l := n.list("1.1.0", n.netConf(mode, nil))
			a, b := n.newPod("ping-a"), n.newPod("ping-b")
			ra, rb := n.mustAdd(l, a), n.mustAdd(l, b)
			ipA, ipB := ra.IPs[0].Address.IP.String(), rb.IPs[0].Address.IP.String()
			for _, c := range []struct {
				from *pod
				to   string
			}{{a, ipB}, {b, ipA}, {a, gatewayIP}, {b, gatewayIP}, {a, nodeIP}} {
				if err := ping(c.from.ns, c.to); err != nil {
					t.Error(err)
				}
			}
			// The VNet (outside the node) reaches the pod at its own address: no NAT.
			if err := ping(n.vnet, ipA); err != nil {
				t.Error(err)
			}
			if mode == "bridge" {
				if v, _ := n.ns.Exec("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"); v != "1\n" {
					t.Errorf("bridge-nf-call-iptables in the node is %q, want 1", v)
				}
				// The VNet only ever sees the NIC's MAC, as Azure requires:
				// every pod address it learned maps to the node's eth0 MAC.
				nicMAC := strings.Fields(n.ns.MustExec(t, "cat", "/sys/class/net/eth0/address"))[0]
				neigh := n.vnet.MustExec(t, "ip", "-4", "neigh", "show", "dev", "gw0")
				for _, ip := range []string{ipA, ipB} {
					if !strings.Contains(neigh, ip+" lladdr "+nicMAC) {
						t.Errorf("VNet neighbour table does not map pod %s to the NIC MAC %s:\n%s", ip, nicMAC, neigh)
					}
				}
			} else if v, _ := n.ns.Exec("cat", "/proc/sys/net/ipv4/ip_forward"); v != "1\n" {
				t.Errorf("ip_forward in the node is %q, want 1", v)
			}
			n.mustDel(l, a)
			n.mustDel(l, b)
			n.assertGone(a, ra.IPs[0].Address.IP)
			n.assertGone(b, rb.IPs[0].Address.IP)
			if o := n.ownedVeths(); len(o) != 0 {
				t.Errorf("veths left after DEL: %+v", o)
			}
		})
	}
}

// TestCheckSeesTheKernel: CHECK fails, with the plugin's check code, when
// something the ADD made is gone from the kernel.
func TestCheckSeesTheKernel(t *testing.T) {
	cases := []struct {
		name   string
		mode   string
		tamper func(n *node, p *pod, ip string)
	}{
		{"pod default route deleted", "transparent", func(n *node, p *pod, ip string) {
			p.ns.MustExec(n.t, "ip", "route", "del", "default")
		}},
		{"gateway neighbour deleted", "transparent", func(n *node, p *pod, ip string) {
			p.ns.MustExec(n.t, "ip", "neigh", "del", "169.254.1.1", "dev", "eth0")
		}},
		{"host route deleted", "transparent", func(n *node, p *pod, ip string) {
			n.ns.MustExec(n.t, "ip", "route", "del", ip+"/32")
		}},
		{"pod address deleted", "bridge", func(n *node, p *pod, ip string) {
			p.ns.MustExec(n.t, "ip", "addr", "flush", "dev", "eth0")
		}},
		{"veth detached from bridge", "bridge", func(n *node, p *pod, ip string) {
			n.ns.MustExec(n.t, "ip", "link", "set", network.HostVethName(p.id, "eth0"), "nomaster")
		}},
		{"host veth down", "bridge", func(n *node, p *pod, ip string) {
			n.ns.MustExec(n.t, "ip", "link", "set", network.HostVethName(p.id, "eth0"), "down")
		}},
	}
	// One node per mode, owned by the parent test so it outlives subtests.
	nodes := map[string]*node{"bridge": newNode(t, 20), "transparent": newNode(t, 20)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := nodes[c.mode]
			n.t = t
			l := n.list("1.1.0", n.netConf(c.mode, nil))
			p := n.newPod("check-" + c.name)
			r := n.mustAdd(l, p)
			if err := n.cni.CheckNetworkList(context.Background(), l, p.rt()); err != nil {
				t.Fatalf("CHECK before tampering: %v", err)
			}
			c.tamper(n, p, r.IPs[0].Address.IP.String())
			err := n.cni.CheckNetworkList(context.Background(), l, p.rt())
			if err == nil {
				t.Fatal("CHECK passed although the kernel no longer matches")
			}
			if cniCode(err) != plugin.ErrCheckFailed {
				t.Errorf("CHECK error code %d (%v), want %d", cniCode(err), err, plugin.ErrCheckFailed)
			}
			n.mustDel(l, p)
			n.assertGone(p, r.IPs[0].Address.IP)
		})
	}
}
