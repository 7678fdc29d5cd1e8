//go:build linux

package plugin_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/internal/probe"
)

// TestBridgePodReachesItselfThroughItsClusterIP: in bridge mode a pod
// connects to its own Service's ClusterIP. kube-proxy is emulated by its
// rules in the node's namespace: DNAT of the ClusterIP to the pod and
// masquerade of hairpin traffic (source and destination the same pod).
// The DNATed frame goes back out of the bridge port it came in on, which
// the bridge allows only with hairpin mode: the connection fails with
// hairpin off (and CHECK says so) and works with the plugin's setting.
func TestBridgePodReachesItselfThroughItsClusterIP(t *testing.T) {
	n := newNode(t, 4)
	l := n.list("1.1.0", n.netConf("bridge", nil))
	p := n.newPod("hairpin")
	podAddr := podIP(t, n.mustAdd(l, p)).String()

	// bridge-nf-call-iptables is per network namespace (kernel >= 5.3):
	// the plugin turned it on in the node's namespace, the root namespace
	// is not involved.
	if v := strings.TrimSpace(n.ns.MustExec(t, "cat", network.SysctlBridgeNFCallIP4)); v != "1" {
		t.Fatalf("bridge-nf-call-iptables in the node namespace is %q", v)
	}
	const clusterIP = "10.0.0.10"
	n.ns.MustExec(t, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", clusterIP+"/32", "-p", "tcp", "--dport", "80",
		"-j", "DNAT", "--to-destination", podAddr+":8080")
	n.ns.MustExec(t, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", podAddr+"/32", "-d", podAddr+"/32", "-j", "MASQUERADE")

	var ln net.Listener
	if err := p.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	probe.AcceptAndClose(ln)
	connect := func() bool {
		ok := false
		_ = p.ns.Do(func() error { ok = probe.TCPConnect(clusterIP+":80", 2*time.Second); return nil })
		return ok
	}

	// The plugin's setting.
	if !connect() {
		t.Fatal("pod cannot reach itself through its ClusterIP in bridge mode")
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, p.rt()); err != nil {
		t.Errorf("CHECK: %v", err)
	}

	// Hairpin off: the same path fails.
	h := n.handle()
	port, err := h.LinkByName(network.HostVethName(p.id, "eth0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetHairpin(port, false); err != nil {
		t.Fatal(err)
	}
	if connect() {
		t.Error("pod reached its ClusterIP with hairpin off: the test does not exercise the hairpin path")
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, p.rt()); cniCode(err) != 100 || !strings.Contains(err.Error(), "hairpin") {
		t.Errorf("CHECK with hairpin off: %v, want code 100 naming hairpin", err)
	}
	n.mustDel(l, p)
}
