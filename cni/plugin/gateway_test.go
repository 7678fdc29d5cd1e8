//go:build linux

package plugin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/open-acn/acn/cni/network"
)

// TestTransparentGatewayAnswersPing: in transparent mode (and overlay,
// which plumbs the same way) a pod pings its gateway 169.254.1.1 and the
// node answers on the host side of the veth. The node's own traffic to a
// pod still comes from the node's address (the gateway address is never
// a source), the address is shared by every host veth (deleting one pod
// leaves the others answered), and CHECK fails if it is missing.
func TestTransparentGatewayAnswersPing(t *testing.T) {
	n := newNode(t, 10)
	l := n.list("1.1.0", n.netConf("transparent", nil))
	a, b := n.newPod("gw-a"), n.newPod("gw-b")
	ra := n.mustAdd(l, a)
	rb := n.mustAdd(l, b)
	gw := network.TransparentGateway.String()
	for _, p := range []*pod{a, b} {
		if err := ping(p.ns, gw); err != nil {
			t.Error(err)
		}
	}
	ipA := podIP(t, ra).String()
	if src := sourceSeen(t, n.ns, acceptFrom(t, a.ns, ipA+":8081"), ipA+":8081"); src != nodeIP {
		t.Errorf("the node's connection to a pod comes from %s, want the node's address %s", src, nodeIP)
	}
	// Nothing but the local route: no route to 169.254.1.1 that could
	// carry it elsewhere.
	if out := n.ns.MustExec(t, "ip", "-4", "route", "show", "table", "main"); strings.Contains(out, gw) {
		t.Errorf("main table routes the gateway address:\n%s", out)
	}

	n.mustDel(l, a)
	if err := ping(b.ns, gw); err != nil {
		t.Errorf("after the other pod's DEL: %v", err)
	}
	veth := network.HostVethName(b.id, "eth0")
	n.ns.MustExec(t, "ip", "addr", "del", gw+"/32", "dev", veth)
	// Removing a link's last IPv4 address takes its routes along: put the
	// host route back so CHECK gets to the address.
	n.ns.MustExec(t, "ip", "route", "replace", podIP(t, rb).String()+"/32", "dev", veth, "scope", "link")
	if err := ping(b.ns, gw); err == nil {
		t.Error("gateway answered without its address: the test does not exercise it")
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, b.rt()); cniCode(err) != 100 || !strings.Contains(err.Error(), gw) {
		t.Errorf("CHECK without the gateway address: %v, want code 100 naming %s", err, gw)
	}
	n.mustDel(l, b)
}
