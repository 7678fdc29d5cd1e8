//go:build linux

package plugin_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/internal/netnstest"
)

// Overlay addresses: the cluster's private pod CIDR and node blocks of it.
const clusterCIDR = "10.244.0.0/16"

// overlayConf is the azure-vnet entry in overlay mode with the node's
// block read from a pod-CIDR file holding block.
func (n *node) overlayConf(block string, ipamExtra map[string]interface{}) map[string]interface{} {
	n.t.Helper()
	f := filepath.Join(n.dir, "podcidr")
	if err := os.WriteFile(f, []byte(block+"\n"), 0o644); err != nil {
		n.t.Fatal(err)
	}
	im := map[string]interface{}{
		"type":        "azure-vnet-ipam",
		"environment": "overlay",
		"clusterCIDR": clusterCIDR,
		"podCIDRFile": f,
	}
	for k, v := range ipamExtra {
		if v == nil {
			delete(im, k)
		} else {
			im[k] = v
		}
	}
	c := n.netConf("transparent", nil)
	delete(c, "mode") // overlay defaults to transparent
	c["ipam"] = im
	return c
}

// TestOverlayAddCheckDelGC: a pod gets a /32 from the node's block with
// the 169.254.1.1 gateway; ADD is idempotent; CHECK passes and notices a
// missing SNAT rule; GC removes a pod not in the valid list; DEL leaves
// nothing; the SNAT rule is installed once however many pods come.
func TestOverlayAddCheckDelGC(t *testing.T) {
	n := newNode(t, 0) // no VNet secondaries: overlay consumes none
	l := n.list("1.1.0", n.overlayConf("10.244.3.0/24", nil))
	_, block, _ := net.ParseCIDR("10.244.3.0/24")

	a, b := n.newPod("ov-a"), n.newPod("ov-b")
	ra := n.mustAdd(l, a)
	rb := n.mustAdd(l, b)
	ipa, ipb := podIP(t, ra), podIP(t, rb)
	for _, ip := range []net.IP{ipa, ipb} {
		if !block.Contains(ip) || ip.Equal(block.IP) || ip.Equal(net.IPv4(10, 244, 3, 255)) {
			t.Fatalf("pod address %s not a host of the block %s", ip, block)
		}
	}
	if ones, _ := ra.IPs[0].Address.Mask.Size(); ones != 32 || !ra.IPs[0].Gateway.Equal(network.TransparentGateway) {
		t.Fatalf("want a /32 with gateway %s, got %s gw %s", network.TransparentGateway, ra.IPs[0].Address.String(), ra.IPs[0].Gateway)
	}
	if again := n.mustAdd(l, a); !podIP(t, again).Equal(ipa) {
		t.Fatalf("repeated ADD: %s, first %s", podIP(t, again), ipa)
	}
	if err := ping(a.ns, ipb.String()); err != nil {
		t.Errorf("pod to pod on the node: %v", err)
	}
	if err := ping(a.ns, nodeIP); err != nil {
		t.Errorf("pod to node: %v", err)
	}

	nat := n.ns.MustExec(t, "iptables", "-w", "-t", "nat", "-S")
	want := fmt.Sprintf("-A %s -s 10.244.3.0/24 ! -d %s", network.SNATChain, clusterCIDR)
	if !strings.Contains(nat, want) || strings.Count(nat, "-j "+network.SNATChain) != 1 {
		t.Fatalf("nat table: want one jump and %q:\n%s", want, nat)
	}

	ctx := context.Background()
	if err := n.cni.CheckNetworkList(ctx, l, a.rt()); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	n.ns.MustExec(t, "iptables", "-w", "-t", "nat", "-F", network.SNATChain)
	if err := n.cni.CheckNetworkList(ctx, l, a.rt()); cniCode(err) != 100 || !strings.Contains(err.Error(), "SNAT") {
		t.Fatalf("CHECK without the SNAT rule: want code 100 naming SNAT, got %v", err)
	}
	// The marker says done; removing it (as a reboot clears /var/run)
	// makes the next ADD reinstall the rules, without a second jump.
	if err := os.Remove(filepath.Join(n.dir, "azure-vnet-overlay-snat.json")); err != nil {
		t.Fatal(err)
	}
	c := n.newPod("ov-c")
	rc := n.mustAdd(l, c)
	if err := n.cni.CheckNetworkList(ctx, l, a.rt()); err != nil {
		t.Fatalf("CHECK after the rules were reinstalled: %v", err)
	}
	if nat := n.ns.MustExec(t, "iptables", "-w", "-t", "nat", "-S"); strings.Count(nat, "-j "+network.SNATChain) != 1 || strings.Count(nat, "MASQUERADE") != 1 {
		t.Fatalf("reinstall duplicated rules:\n%s", nat)
	}

	gc := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: a.id, IfName: "eth0"}, {ContainerID: c.id, IfName: "eth0"}}}
	if err := n.cni.GCNetworkList(ctx, l, gc); err != nil {
		t.Fatalf("GC: %v", err)
	}
	n.assertGone(b, ipb)
	if err := n.cni.CheckNetworkList(ctx, l, a.rt()); err != nil {
		t.Fatalf("GC harmed a valid pod: %v", err)
	}
	if err := n.cni.GetStatusNetworkList(ctx, l); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	n.mustDel(l, a)
	n.mustDel(l, a)
	n.mustDel(l, c)
	n.assertGone(a, ipa)
	n.assertGone(c, podIP(t, rc))
}

// TestOverlayExhaustion: a /29 block holds 6 pods (network and broadcast
// skipped); the 7th gets code 102 naming the block; STATUS says so too.
func TestOverlayExhaustion(t *testing.T) {
	n := newNode(t, 0)
	l := n.list("1.1.0", n.overlayConf("10.244.7.8/29", nil))
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		ip := podIP(t, n.mustAdd(l, n.newPod(fmt.Sprintf("ex-%d", i)))).String()
		if seen[ip] || ip == "10.244.7.8" || ip == "10.244.7.15" {
			t.Fatalf("address %s handed out twice or is the network/broadcast address", ip)
		}
		seen[ip] = true
	}
	_, err := n.add(l, n.newPod("ex-6"))
	if cniCode(err) != 102 || !strings.Contains(err.Error(), "10.244.7.8/29") {
		t.Fatalf("7th pod: want code 102 naming 10.244.7.8/29, got %v", err)
	}
	if err := n.cni.GetStatusNetworkList(context.Background(), l); err == nil || !strings.Contains(err.Error(), "10.244.7.8/29") {
		t.Fatalf("STATUS of a full block: %v", err)
	}
}

// TestOverlayBadConfig: each mistake its code 7 message, nothing created.
func TestOverlayBadConfig(t *testing.T) {
	n := newNode(t, 0)
	cases := []struct {
		name  string
		block string
		ipam  map[string]interface{}
		mode  string
		want  string
	}{
		{"no clusterCIDR", "10.244.3.0/24", map[string]interface{}{"clusterCIDR": nil}, "", "ipam.clusterCIDR: missing"},
		{"block outside", "10.245.3.0/24", nil, "", "not inside ipam.clusterCIDR 10.244.0.0/16"},
		{"forbidden cluster", "172.30.3.0/24", map[string]interface{}{"clusterCIDR": "172.30.0.0/16"}, "", "overlaps 172.30.0.0/16, a forbidden range"},
		{"forbidden block", "169.254.3.0/24", map[string]interface{}{"clusterCIDR": "169.0.0.0/8"}, "", "overlaps 169.254.0.0/16, a forbidden range"},
		{"bad clusterCIDR", "10.244.3.0/24", map[string]interface{}{"clusterCIDR": "10.244.0.0"}, "", "not a CIDR"},
		{"two sources", "10.244.3.0/24", map[string]interface{}{"kubeconfig": "/nonexistent"}, "", "exactly one source"},
		{"no source", "10.244.3.0/24", map[string]interface{}{"podCIDRFile": nil}, "", "exactly one source"},
		{"bridge mode", "10.244.3.0/24", nil, "bridge", "works with mode \"transparent\" only"},
		{"block too small", "10.244.3.4/31", nil, "", "too small"},
		{"static block outside", "", map[string]interface{}{"podCIDRFile": nil, "subnet": "10.0.0.0/24"}, "", "ipam.subnet: the node's pod block 10.0.0.0/24 is not inside"},
		{"address outside", "10.244.3.0/24", map[string]interface{}{"ipAddress": "10.0.0.5"}, "", "not in ipam.clusterCIDR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conf := n.overlayConf(tc.block, tc.ipam)
			if tc.mode != "" {
				conf["mode"] = tc.mode
			}
			_, err := n.add(n.list("1.1.0", conf), n.newPod("bad-"+tc.name))
			if cniCode(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want code 7 with %q, got %v", tc.want, err)
			}
		})
	}
	if v := n.ownedVeths(); len(v) != 0 {
		t.Errorf("veths left: %v", v)
	}
	if _, is := n.state(); len(is.Allocations) != 0 {
		t.Errorf("allocations left: %v", is.Allocations)
	}
}

// overlayFabric is a VNet of several overlay nodes: a bridge namespace
// (10.240.0.1/16) with node i at 10.240.0.(10+i) owning the block
// 10.244.i.0/24, each block routed via its node in every other node and
// in the VNet (the fabric's job), and an "internet" namespace at
// 203.0.113.10 routed via the VNet.
type overlayFabric struct {
	vnet, inet *netnstest.NS
	nodes      []*node
	lists      []*libcni.NetworkConfigList
}

func newOverlayFabric(t *testing.T, nodes int) *overlayFabric {
	if binDir == "" {
		netnstest.RequireRoot(t)
	}
	f := &overlayFabric{vnet: netnstest.New(t, "vnet"), inet: netnstest.New(t, "inet")}
	for _, c := range [][]string{
		{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "addr", "add", gatewayIP + "/16", "dev", "br0"},
		{"ip", "link", "set", "br0", "up"},
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		f.vnet.MustExec(t, c[0], c[1:]...)
	}
	netnstest.Link(t, f.vnet, "inet0", "203.0.113.1/24", f.inet, "eth0", "203.0.113.10/24")
	f.inet.MustExec(t, "ip", "route", "add", "default", "via", "203.0.113.1")
	for i := 0; i < nodes; i++ {
		n := &node{t: t, dir: stateDir(t), ns: netnstest.New(t, "node"), vnet: f.vnet}
		ip := fmt.Sprintf("10.240.0.%d", 10+i)
		netnstest.Link(t, n.ns, "eth0", ip+"/16", f.vnet, fmt.Sprintf("n%d", i), "")
		f.vnet.MustExec(t, "ip", "link", "set", fmt.Sprintf("n%d", i), "master", "br0")
		n.ns.MustExec(t, "ip", "route", "add", "default", "via", gatewayIP)
		n.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir, refPluginDir}, filepath.Join(n.dir, "cache"), n.exec())
		f.nodes = append(f.nodes, n)
		f.lists = append(f.lists, n.list("1.1.0", n.overlayConf(fmt.Sprintf("10.244.%d.0/24", i), nil)))
	}
	for i := range f.nodes {
		block := fmt.Sprintf("10.244.%d.0/24", i)
		via := fmt.Sprintf("10.240.0.%d", 10+i)
		f.vnet.MustExec(t, "ip", "route", "add", block, "via", via)
		for j, m := range f.nodes {
			if j != i {
				m.ns.MustExec(t, "ip", "route", "add", block, "via", via)
			}
		}
	}
	return f
}

// acceptFrom listens on TCP port in ns and returns a channel that gets
// the source address of the first connection.
func acceptFrom(t *testing.T, ns *netnstest.NS, addr string) <-chan string {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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
	return ch
}

func sourceSeen(t *testing.T, from *netnstest.NS, ch <-chan string, dst string) string {
	t.Helper()
	c, err := from.Dial("tcp4", dst)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", dst, from.Name, err)
	}
	defer c.Close()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("no connection at %s", dst)
	}
	return ""
}

// TestOverlayAcrossNodesAndEgress: pods on two nodes reach each other
// with their own addresses (the receiver sees the sender's pod IP), and
// a connection to "the internet" (outside the cluster CIDR) arrives from
// the node's address.
func TestOverlayAcrossNodesAndEgress(t *testing.T) {
	f := newOverlayFabric(t, 2)
	n0, n1 := f.nodes[0], f.nodes[1]
	p0, p1 := n0.newPod("x-0"), n1.newPod("x-1")
	ip0 := podIP(t, n0.mustAdd(f.lists[0], p0))
	ip1 := podIP(t, n1.mustAdd(f.lists[1], p1))
	if !strings.HasPrefix(ip0.String(), "10.244.0.") || !strings.HasPrefix(ip1.String(), "10.244.1.") {
		t.Fatalf("addresses %s, %s not from the nodes' blocks", ip0, ip1)
	}
	if err := ping(p0.ns, ip1.String()); err != nil {
		t.Fatalf("pod to pod across nodes: %v", err)
	}
	if got := sourceSeen(t, p0.ns, acceptFrom(t, p1.ns, ip1.String()+":8080"), ip1.String()+":8080"); got != ip0.String() {
		t.Errorf("pod on node-1 saw source %s, want pod IP %s", got, ip0)
	}
	if got := sourceSeen(t, p1.ns, acceptFrom(t, p0.ns, ip0.String()+":8081"), ip0.String()+":8081"); got != ip1.String() {
		t.Errorf("pod on node-0 saw source %s, want pod IP %s", got, ip1)
	}
	if got := sourceSeen(t, p0.ns, acceptFrom(t, f.inet, "203.0.113.10:8082"), "203.0.113.10:8082"); got != "10.240.0.10" {
		t.Errorf("the internet saw source %s, want node-0's address 10.240.0.10", got)
	}
	if got := sourceSeen(t, p1.ns, acceptFrom(t, f.inet, "203.0.113.10:8083"), "203.0.113.10:8083"); got != "10.240.0.11" {
		t.Errorf("the internet saw source %s, want node-1's address 10.240.0.11", got)
	}
	n0.mustDel(f.lists[0], p0)
	n1.mustDel(f.lists[1], p1)
	n0.assertGone(p0, ip0)
	n1.assertGone(p1, ip1)
}

// TestOverlayIPAMPluginWithReferenceBridge: azure-vnet-ipam alone in
// overlay mode under the reference bridge: the address has the block's
// prefix, the gateway is the block's first host (the bridge takes it, so
// it is never handed to a pod), pods on the bridge reach each other;
// CHECK and DEL through libcni.
func TestOverlayIPAMPluginWithReferenceBridge(t *testing.T) {
	if _, err := os.Stat(filepath.Join(refPluginDir, "bridge")); err != nil {
		netnstest.Skip(t, "reference bridge plugin not installed (containernetworking-plugins; make deps installs it)")
	}
	n := newNode(t, 0)
	ipamConf := n.overlayConf("10.244.5.0/29", nil)["ipam"]
	l := n.list("1.0.0", map[string]interface{}{"type": "bridge", "bridge": "cni-ov0", "isGateway": true, "ipam": ipamConf, "stateDir": n.dir})
	var pods []*pod
	var ips []net.IP
	for i := 0; i < 5; i++ { // a /29 without network, broadcast and gateway
		p := n.newPod(fmt.Sprintf("ovref-%d", i))
		r := n.mustAdd(l, p)
		if got := r.IPs[0].Address.String(); !strings.HasPrefix(got, "10.244.5.") || !strings.HasSuffix(got, "/29") || got == "10.244.5.1/29" {
			t.Fatalf("address %s: want a /29 of the block other than the gateway", got)
		}
		if !r.IPs[0].Gateway.Equal(net.ParseIP("10.244.5.1")) {
			t.Fatalf("gateway %s, want the block's first host", r.IPs[0].Gateway)
		}
		pods, ips = append(pods, p), append(ips, r.IPs[0].Address.IP)
		if i == 0 {
			// CHECK before the second pod: the reference bridge (Debian's
			// v1.1) fails its own CHECK once another port changes the
			// bridge's MAC.
			if err := n.cni.CheckNetworkList(context.Background(), l, p.rt()); err != nil {
				t.Errorf("CHECK: %v", err)
			}
		}
	}
	if _, err := n.add(l, n.newPod("ovref-5")); cniCode(err) != 102 || !strings.Contains(err.Error(), "10.244.5.0/29") {
		t.Fatalf("6th pod: want code 102 naming the block, got %v", err)
	}
	if err := ping(pods[0].ns, ips[1].String()); err != nil {
		t.Errorf("pod to pod on the bridge: %v", err)
	}
	for _, p := range pods {
		n.mustDel(l, p)
	}
	if _, is := n.state(); len(is.Allocations) != 0 {
		t.Errorf("allocations left: %+v", is.Allocations)
	}
}
