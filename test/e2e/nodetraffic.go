//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/test/cluster"
)

// NodeTrafficNamespace holds the pods of the node-traffic checks.
const NodeTrafficNamespace = "nt"

// NodePort is where the nodes listen in the node-traffic checks (kubelet's
// port, as a node agent or a hostNetwork pod would).
const nodeListenPort = 10250

// Check is one probe whose outcome NetworkPolicy decides.
type Check struct {
	What               string
	Expected, Observed bool
}

// NodeTraffic probes what NetworkPolicy says about nodes: traffic from a
// pod's own node is allowed whatever its policies (kubelet's probes);
// other nodes are not exempt; an egress policy that does not allow a
// node's address blocks pod->node, the pod's own node included;
// hostNetwork pods are never selected and never peers.
func NodeTraffic(ctx context.Context, c *cluster.Cluster, timeout time.Duration) ([]Check, error) {
	if len(c.Nodes) < 2 {
		return nil, fmt.Errorf("node traffic needs 2 nodes, the cluster has %d", len(c.Nodes))
	}
	n0, n1 := c.Nodes[0], c.Nodes[1]
	for _, n := range []*cluster.Node{n0, n1} {
		ln, err := n.ServeTCP(nodeListenPort)
		if err != nil {
			return nil, fmt.Errorf("%s: listen: %w", n.Name, err)
		}
		defer ln.Close()
	}
	ns := NodeTrafficNamespace
	var writes []cluster.Write
	w, err := c.CreateNamespace(ctx, ns, map[string]string{"ns": ns})
	if err != nil {
		return nil, err
	}
	writes = append(writes, w)
	// The hostNetwork pod first: the pods created after it are waited for,
	// and the agents see pods in order.
	hostLabels := map[string]string{"pod": "hostnet", "role": "host"}
	if _, err := c.CreateHostNetworkPod(ctx, n0, ns, "hostnet", hostLabels); err != nil {
		return nil, err
	}
	defer func() {
		zero := int64(0)
		_ = c.Client.CoreV1().Pods(ns).Delete(context.Background(), "hostnet", metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}()
	pods := map[string]*cluster.Pod{}
	for _, p := range []struct {
		name   string
		node   *cluster.Node
		labels map[string]string
	}{
		{"client", n0, map[string]string{"pod": "client"}},
		{"free", n0, map[string]string{"pod": "free"}},
		{"peer", n0, map[string]string{"pod": "peer", "role": "host"}},
		{"target", n1, map[string]string{"pod": "target"}},
		{"peer-target", n1, map[string]string{"pod": "peer-target"}},
	} {
		pod, w, err := c.CreatePod(ctx, p.node, ns, p.name, p.labels, cluster.DefaultPorts())
		if err != nil {
			return nil, err
		}
		pods[p.name] = pod
		writes = append(writes, w)
	}
	sel := func(l map[string]string) metav1.LabelSelector { return metav1.LabelSelector{MatchLabels: l} }
	for _, np := range []*networkingv1.NetworkPolicy{
		// client may reach pods of its namespace only: no node address.
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client-egress-pods-only"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: sel(map[string]string{"pod": "client"}), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "target-deny-ingress"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: sel(map[string]string{"pod": "target"}), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
		// Selects the hostNetwork pod's labels: it must not isolate it.
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "role-host-deny-ingress"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: sel(map[string]string{"role": "host"}), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
		// Admits pods labelled role=host: the hostNetwork pod is not one.
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "peer-target-from-role-host"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: sel(map[string]string{"pod": "peer-target"}), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "host"}}}}}}}},
	} {
		w, err := c.CreatePolicy(ctx, np)
		if err != nil {
			return nil, err
		}
		writes = append(writes, w)
	}
	if _, err := c.WaitEnforced(ctx, writes, time.Minute); err != nil {
		return nil, err
	}
	at := func(ip netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(ip, uint16(port)) }
	podTo := func(src *cluster.Pod, dst netip.Addr, port int) bool {
		return c.Probe(src, dst, port, probe.TCP, timeout)
	}
	checks := []Check{
		{What: "pod -> its own node's address, egress allows pods only", Observed: podTo(pods["client"], n0.IP, nodeListenPort)},
		{What: "pod -> another node's address, egress allows pods only", Observed: podTo(pods["client"], n1.IP, nodeListenPort)},
		{What: "pod -> a pod, egress allows pods only", Expected: true, Observed: podTo(pods["client"], pods["free"].IP, 80)},
		{What: "pod -> its own node's address, no policy", Expected: true, Observed: podTo(pods["free"], n0.IP, nodeListenPort)},
		{What: "own node (kubelet probe) -> pod, deny-all ingress", Expected: true, Observed: n1.TCPConnect(at(pods["target"].IP, 80), timeout)},
		{What: "another node -> pod, deny-all ingress", Observed: n0.TCPConnect(at(pods["target"].IP, 80), timeout)},
		{What: "pod -> hostNetwork pod matching a deny-all ingress selector (never selected)", Expected: true, Observed: podTo(pods["target"], n0.IP, nodeListenPort)},
		{What: "hostNetwork pod matching an ingress peer selector -> pod on another node (never a peer)", Observed: n0.TCPConnect(at(pods["peer-target"].IP, 80), timeout)},
		{What: "pod matching that peer selector -> same pod", Expected: true, Observed: podTo(pods["peer"], pods["peer-target"].IP, 80)},
	}
	return checks, nil
}

// RenderChecks prints checks as a table, each line prefixed by label, and
// returns how many differ from the expectation.
func RenderChecks(checks []Check, label string, out io.Writer) int {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "configuration\tprobe\texpected\tobserved\t")
	bad := 0
	for _, ch := range checks {
		mark := ""
		if ch.Expected != ch.Observed {
			mark = "  <-- MISMATCH"
			bad++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t\n", label, ch.What, verdict(ch.Expected), verdict(ch.Observed), mark)
	}
	_ = tw.Flush()
	return bad
}

func verdict(ok bool) string {
	if ok {
		return "allowed"
	}
	return "blocked"
}
