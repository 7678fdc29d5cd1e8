//go:build linux

package dptest

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// twoNodes is a NodePort path across two nodes: off-cluster clients (one
// an ipBlock allows, one it denies) reach node A (the node receiving the
// NodePort traffic), which DNATs it to pod "far" on node B (after SNAT to
// node A's address, as kube-proxy does for externalTrafficPolicy Cluster)
// or to pod "near" on node A itself.
type twoNodes struct {
	a, b            *netnstest.NS
	allowed, denied *netnstest.NS // clients 192.168.50.9 and 192.168.60.9
	near, far       *netnstest.NS // pods 10.9.4.2 (node A) and 10.9.5.2 (node B)
}

const (
	nodeAIP      = "10.224.0.10"
	nodeBIP      = "10.224.0.11"
	allowedIP    = "192.168.50.9"
	deniedIP     = "192.168.60.9"
	nearIP       = "10.9.4.2"
	farIP        = "10.9.5.2"
	farNodePort  = 30090
	nearNodePort = 30091
)

func newTwoNodes(t *testing.T) *twoNodes {
	n := &twoNodes{a: netnstest.New(t, "npm-nodeA"), b: netnstest.New(t, "npm-nodeB")}
	for _, node := range []*netnstest.NS{n.a, n.b} {
		node.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	netnstest.Link(t, n.a, "vnet", nodeAIP+"/24", n.b, "vnet", nodeBIP+"/24")
	n.allowed, n.denied = netnstest.New(t, "npm-client"), netnstest.New(t, "npm-client")
	n.near, n.far = netnstest.New(t, "npm-pod"), netnstest.New(t, "npm-pod")
	for _, l := range []struct {
		node   *netnstest.NS
		ifc    string
		gw, ip string
		ns     *netnstest.NS
	}{
		{n.a, "c1", "192.168.50.1", allowedIP, n.allowed},
		{n.a, "c2", "192.168.60.1", deniedIP, n.denied},
		{n.a, "p4", "10.9.4.1", nearIP, n.near},
		{n.b, "p5", "10.9.5.1", farIP, n.far},
	} {
		netnstest.Link(t, l.node, l.ifc, l.gw+"/24", l.ns, "eth0", l.ip+"/24")
		l.ns.MustExec(t, "ip", "route", "add", "default", "via", l.gw)
	}
	n.a.MustExec(t, "ip", "route", "add", "10.9.5.0/24", "via", nodeBIP)
	n.b.MustExec(t, "ip", "route", "add", "10.9.4.0/24", "via", nodeAIP)
	for _, ns := range []*netnstest.NS{n.near, n.far} {
		var srv *probe.Servers
		if err := ns.Do(func() (err error) { srv, err = probe.Serve([]int{80}, nil, false); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
	}
	// kube-proxy on node A (iptables mode, the nat rules it writes for
	// two NodePorts with externalTrafficPolicy Cluster): mark for
	// masquerade, DNAT to the endpoint, masquerade on the way out.
	rules := fmt.Sprintf(`*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-FAR - [0:0]
:KUBE-EXT-NEAR - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -m comment --comment a/far:http -m tcp -p tcp --dport %d -j KUBE-EXT-FAR
-A KUBE-NODEPORTS -m comment --comment a/near:http -m tcp -p tcp --dport %d -j KUBE-EXT-NEAR
-A KUBE-EXT-FAR -j KUBE-MARK-MASQ
-A KUBE-EXT-FAR -m tcp -p tcp -j DNAT --to-destination %s:80
-A KUBE-EXT-NEAR -j KUBE-MARK-MASQ
-A KUBE-EXT-NEAR -m tcp -p tcp -j DNAT --to-destination %s:80
COMMIT
`, farNodePort, nearNodePort, farIP, nearIP)
	if _, err := (dataplane.Exec{Netns: n.a.Path}).Run(context.Background(), []byte(rules), "iptables-nft-restore", "--noflush"); err != nil {
		t.Fatal(err)
	}
	return n
}

// cluster: pods "far" (node B) and "near" (node A), both app=web in
// namespace a, and one policy on them.
func (n *twoNodes) engine(node string, pol *networkingv1.NetworkPolicy) *translate.Engine {
	e := translate.NewEngine(translate.Options{NodeName: node})
	e.UpsertNamespace(translatetest.Namespace("a", nil))
	http := translatetest.CPort("http", corev1.ProtocolTCP, 80)
	e.UpsertPod(translatetest.Pod("a", "far", "nodeB", map[string]string{"app": "web"}, []string{farIP}, http))
	e.UpsertPod(translatetest.Pod("a", "near", "nodeA", map[string]string{"app": "web"}, []string{nearIP}, http))
	if pol != nil {
		e.UpsertPolicy(pol)
	}
	return e
}

// probe: a new TCP connection from a client to a NodePort of node A.
func (n *twoNodes) probe(client *netnstest.NS, nodePort int, timeout time.Duration) bool {
	gw := "192.168.50.1"
	if client == n.denied {
		gw = "192.168.60.1"
	}
	ok := false
	_ = client.Do(func() error { ok = probe.TCPConnect(fmt.Sprintf("%s:%d", gw, nodePort), timeout); return nil })
	return ok
}

func (n *twoNodes) probeWant(client *netnstest.NS, nodePort int, want bool) bool {
	got := n.probe(client, nodePort, probeTimeout)
	for i := 0; i < 2 && want && !got; i++ {
		got = n.probe(client, nodePort, time.Second)
	}
	return got
}

// ExternalTrafficRow is one line of RunNodePortCluster's table.
type ExternalTrafficRow struct {
	Policy, Client, Backend string
	Want, Got               bool
}

// RunNodePortCluster: NodePort traffic with externalTrafficPolicy Cluster
// (kube-proxy's DNAT and masquerade on the receiving node A) to a backend
// on node A and on node B, whose ingress policy is an ipBlock, from a
// client the policy allows and one it denies. Node A programs the
// backends' ingress (the pod on node B as a Remote endpoint, as the daemon
// does for pods backing NodePort/LoadBalancer services) and decides by the
// client's address before the SNAT; node B sees node A's address.
//
//   - "all-but-denied" (0.0.0.0/0 except the denied client): exact — the
//     denied client never reaches either backend, the allowed one reaches
//     both. Without node A's enforcement the denied client reaches the pod
//     on node B (checked first: this is the hole the design closes).
//   - "allowed-and-nodes" (the allowed client and the nodes' subnet):
//     exact.
//   - "allowed-only" (only the allowed client): the pod on node A is exact;
//     the pod on node B fails closed — node B sees node A's address, which
//     the policy does not allow, so the allowed client is denied there.
//     Never the reverse.
func RunNodePortCluster(t *testing.T, newDP NewDataplane) []ExternalTrafficRow {
	n := newTwoNodes(t)
	ctx := context.Background()
	ipb := func(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
	}
	pol := func(name string, peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		return np("a", name, networkingv1.NetworkPolicySpec{PodSelector: *Labels("app", "web"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: peers}}})
	}
	backends := map[string]struct{}{"a/far": {}, "a/near": {}}
	dA, dB := newDP(t, n.a), newDP(t, n.b)
	program := func(p *networkingv1.NetworkPolicy, remote bool) {
		t.Helper()
		eA, eB := n.engine("nodeA", p), n.engine("nodeB", p)
		if remote {
			eA.SetExternalBackends(backends)
		}
		for _, x := range []struct {
			d dataplane.Dataplane
			e *translate.Engine
		}{{dA, eA}, {dB, eB}} {
			if err := x.d.Apply(ctx, x.e.State(), nil); err != nil {
				t.Fatal(err)
			}
		}
		for _, node := range []*netnstest.NS{n.a, n.b} {
			h, err := node.Handle()
			if err != nil {
				t.Fatal(err)
			}
			_ = h.ConntrackTableFlush(1) // netlink.ConntrackTable
			h.Close()
		}
	}
	allButDenied := pol("all-but-denied", ipb("0.0.0.0/0", deniedIP+"/32"))
	// The hole: without node A enforcing the remote backend's ingress,
	// node B sees node A's address (inside 0.0.0.0/0) and lets the
	// denied client in.
	program(allButDenied, false)
	if !n.probeWant(n.allowed, farNodePort, true) {
		t.Fatal("the NodePort path to node B carries no traffic")
	}
	if !n.probe(n.denied, farNodePort, time.Second) && !n.probe(n.denied, farNodePort, time.Second) {
		t.Error("without node A's enforcement the denied client should have reached the pod on node B through the SNAT (the test cannot see the hole)")
	}
	var rows []ExternalTrafficRow
	for _, c := range []struct {
		pol            *networkingv1.NetworkPolicy
		wantFarAllowed bool // the allowed client -> the pod on node B (false: fails closed)
	}{
		{allButDenied, true},
		{pol("allowed-and-nodes", ipb(allowedIP+"/32"), ipb("10.224.0.0/24")), true},
		{pol("allowed-only", ipb(allowedIP+"/32")), false},
	} {
		program(c.pol, true)
		for _, x := range []struct {
			client  *netnstest.NS
			cname   string
			port    int
			backend string
			want    bool
		}{
			{n.allowed, "allowed", farNodePort, "other node", c.wantFarAllowed},
			{n.denied, "denied", farNodePort, "other node", false},
			{n.allowed, "allowed", nearNodePort, "receiving node", true},
			{n.denied, "denied", nearNodePort, "receiving node", false},
		} {
			got := n.probeWant(x.client, x.port, x.want)
			rows = append(rows, ExternalTrafficRow{Policy: c.pol.Name, Client: x.cname, Backend: x.backend, Want: x.want, Got: got})
			if got != x.want {
				t.Errorf("policy %s: %s client -> NodePort -> backend on the %s: allowed=%v, want %v", c.pol.Name, x.cname, x.backend, got, x.want)
			}
		}
	}
	for _, d := range []dataplane.Dataplane{dA, dB} {
		reconcileClean(t, d, "after the NodePort probes")
	}
	for _, r := range rows {
		t.Logf("%-18s client %-8s backend on the %-14s want %-5v got %v", r.Policy, r.Client, r.Backend, r.Want, r.Got)
	}
	return rows
}
