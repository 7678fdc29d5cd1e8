//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/test/cluster"
)

// ExternalNamespace holds the backend of the NodePort/LoadBalancer checks.
const ExternalNamespace = "ext"

// Backend policies of the NodePort/LoadBalancer checks: the ingress
// ipBlocks of the backend pod.
const (
	PolicyClientOnly  = "client range"
	PolicyClientNodes = "client range + node subnet"
)

// ExternalRow is one probe from the outside host to a NodePort or
// LoadBalancer Service whose backend pod's policy allows the allowed
// client's network (an ipBlock; with PolicyClientNodes also the nodes'
// subnet) and nothing else.
type ExternalRow struct {
	Type    corev1.ServiceType
	Policy  string // PolicyClientOnly or PolicyClientNodes
	Client  string // "allowed" or "denied" (its ipBlock)
	ETP     corev1.ServiceExternalTrafficPolicy
	Backend string // "receiving node" or "other node"
	// Expected is what NetworkPolicy means, decided by the client's own
	// address; Why explains an expectation that is not the policy's.
	Expected, Observed bool
	Why                string
	// FailClosed marks the one combination no node can decide exactly
	// (npm/README.md "Services"): externalTrafficPolicy Cluster, backend
	// on another node, a policy that does not admit the receiving node's
	// address. The client is masqueraded to that address on its way to the
	// pod's node, which cannot tell it from the node's own traffic; the
	// product refuses it (fails closed). Blocked there is reported as
	// "fail closed", not as a match; allowed would be a leak only for the
	// denied client.
	FailClosed bool
}

// External probes every row: Service type (NodePort, LoadBalancer) x the
// backend's policy (ipBlock of the client range; of the client range and
// the node subnet) x client (allowed, denied ipBlock) x
// externalTrafficPolicy (Local, Cluster) x where the backend runs (the
// node that receives the packet, another node). The backend pods run on
// the cluster's second node; the simulated cloud routes the load-balancer
// address to the receiving node.
func External(ctx context.Context, c *cluster.Cluster, timeout time.Duration) ([]ExternalRow, error) {
	o, w, err := outsideAndNamespace(ctx, c, "external traffic", ExternalNamespace)
	if err != nil {
		return nil, err
	}
	backendNode, otherNode := c.Nodes[1], c.Nodes[0]
	writes := []cluster.Write{w}
	tcp := corev1.ProtocolTCP
	port80 := intstr.FromInt32(80)
	type svcKey struct {
		policy string
		typ    corev1.ServiceType
		etp    corev1.ServiceExternalTrafficPolicy
	}
	svcs := map[svcKey]*corev1.Service{}
	var backends []cluster.ServiceBackend
	lb := cluster.LoadBalancerPrefix.Addr().Next()
	for _, pol := range []struct {
		policy, pod string
		blocks      []netip.Prefix
	}{
		{PolicyClientOnly, "web", []netip.Prefix{cluster.OutsideAllowedPrefix}},
		{PolicyClientNodes, "web-nodes", []netip.Prefix{cluster.OutsideAllowedPrefix, cluster.NodeSubnet}},
	} {
		labels := map[string]string{"app": pol.pod}
		web, w, err := c.CreatePod(ctx, backendNode, ExternalNamespace, pol.pod, labels, cluster.DefaultPorts())
		if err != nil {
			return nil, err
		}
		writes = append(writes, w)
		var from []networkingv1.NetworkPolicyPeer
		for _, b := range pol.blocks {
			from = append(from, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: b.String()}})
		}
		w, err = c.CreatePolicy(ctx, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ExternalNamespace, Name: pol.pod + "-allow-ipblocks"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: labels},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  from,
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port80}},
				}},
			},
		})
		if err != nil {
			return nil, err
		}
		writes = append(writes, w)
		for _, typ := range []corev1.ServiceType{corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer} {
			for _, etp := range []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyLocal, corev1.ServiceExternalTrafficPolicyCluster} {
				name := strings.ToLower(fmt.Sprintf("%s-%s-%s", pol.pod, typ, etp))
				svc, err := c.CreateService(ctx, &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: ExternalNamespace, Name: name},
					Spec: corev1.ServiceSpec{Type: typ, ExternalTrafficPolicy: etp, Selector: labels,
						Ports: []corev1.ServicePort{{Name: "http", Protocol: tcp, Port: 80, TargetPort: port80}}},
				})
				if err != nil {
					return nil, fmt.Errorf("service %s: %w", name, err)
				}
				b := cluster.ServiceBackend{Namespace: svc.Namespace, Service: svc.Name, ClusterIP: svc.Spec.ClusterIP, PortName: "http",
					Protocol: tcp, IP: web.IP, Port: 80, Also: []string{strconv.Itoa(int(svc.Spec.Ports[0].NodePort))}}
				if typ == corev1.ServiceTypeLoadBalancer {
					if svc, err = c.SetLoadBalancerIP(ctx, svc, lb); err != nil {
						return nil, fmt.Errorf("service %s: %w", name, err)
					}
					b.Also = append(b.Also, lb.String())
					lb = lb.Next()
				}
				svcs[svcKey{pol.policy, typ, etp}] = svc
				backends = append(backends, b)
			}
		}
	}
	if err := waitServicesReady(ctx, c, writes, backends); err != nil {
		return nil, err
	}
	var rows []ExternalRow
	for _, typ := range []corev1.ServiceType{corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer} {
		for _, pol := range []string{PolicyClientOnly, PolicyClientNodes} {
			for _, client := range []string{"allowed", "denied"} {
				for _, etp := range []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyLocal, corev1.ServiceExternalTrafficPolicyCluster} {
					for _, where := range []string{"receiving node", "other node"} {
						svc := svcs[svcKey{pol, typ, etp}]
						recv := backendNode
						if where == "other node" {
							recv = otherNode
						}
						var dst netip.AddrPort
						if typ == corev1.ServiceTypeLoadBalancer {
							ip := netip.MustParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
							if err := c.RouteLoadBalancer(ip, recv); err != nil {
								return nil, err
							}
							dst = netip.AddrPortFrom(ip, 80)
						} else {
							dst = netip.AddrPortFrom(recv.IP, uint16(svc.Spec.Ports[0].NodePort))
						}
						from := o.Allowed
						if client == "denied" {
							from = o.Denied
						}
						row := ExternalRow{Type: typ, Policy: pol, Client: client, ETP: etp, Backend: where}
						row.Expected, row.Why, row.FailClosed = expectExternal(pol, client, etp, where)
						row.Observed = o.TCPConnect(from, dst, timeout)
						rows = append(rows, row)
					}
				}
			}
		}
	}
	return rows, nil
}

// expectExternal is what NetworkPolicy means for a row: the client's own
// address decides. With Local and the backend on another node kube-proxy
// drops the packet (no local endpoint), whatever the policy; with Cluster,
// the backend on another node and a policy that does not admit the node
// subnet, blocking the allowed client is the documented fail-closed case.
func expectExternal(policy, client string, etp corev1.ServiceExternalTrafficPolicy, where string) (expected bool, why string, failClosed bool) {
	if etp == corev1.ServiceExternalTrafficPolicyLocal && where == "other node" {
		return false, "no local endpoint: kube-proxy drops it; a cloud LB health check keeps traffic off this node", false
	}
	failClosed = etp == corev1.ServiceExternalTrafficPolicyCluster && where == "other node" && policy == PolicyClientOnly && client == "allowed"
	return client == "allowed", "", failClosed
}

// RenderExternal prints the rows as a table, each prefixed by label
// (kube-proxy mode, dataplane), and returns how many differ from the
// expectation and how many of those are the documented fail-closed
// combination blocking an allowed client (not counted in bad).
func RenderExternal(rows []ExternalRow, label string, out io.Writer) (bad, failClosed int) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "configuration\tservice\tbackend policy (ipBlocks)\tclient\texternalTrafficPolicy\tbackend on\texpected\tobserved\t")
	for _, r := range rows {
		mark := ""
		switch {
		case r.Expected == r.Observed:
		case r.FailClosed && r.Expected && !r.Observed:
			mark = "  fail closed (documented)"
			failClosed++
		default:
			mark = "  <-- MISMATCH"
			bad++
		}
		why := ""
		if r.Why != "" {
			why = "note: " + r.Why
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s%s\t%s\n", label, r.Type, r.Policy, r.Client, r.ETP, r.Backend, verdict(r.Expected), verdict(r.Observed), mark, why)
	}
	_ = tw.Flush()
	return bad, failClosed
}

// waitServicesReady waits until every node enforces writes, kube-proxy
// programs the backends' Services, and every node's azure-npm has seen
// the Services and their EndpointSlices too, not only the pods and
// policies: the receiving node decides a Cluster backend on another node
// by the client only once that backend is its Remote endpoint.
func waitServicesReady(ctx context.Context, c *cluster.Cluster, writes []cluster.Write, backends []cluster.ServiceBackend) error {
	if _, err := c.WaitEnforced(ctx, writes, time.Minute); err != nil {
		return err
	}
	if err := c.WaitServicesProgrammed(ctx, backends, time.Minute); err != nil {
		return err
	}
	return c.WaitServicesSeen(ctx, backends, time.Minute)
}

// outsideAndNamespace is the start of a scenario across the simulated
// cloud (what names it in the error): the cluster's two nodes checked, the
// outside host, and the scenario's namespace ns (labelled ns=<ns>) created.
func outsideAndNamespace(ctx context.Context, c *cluster.Cluster, what, ns string) (*cluster.Outside, cluster.Write, error) {
	if len(c.Nodes) < 2 {
		return nil, cluster.Write{}, fmt.Errorf("%s needs 2 nodes, the cluster has %d", what, len(c.Nodes))
	}
	o, err := c.Outside()
	if err != nil {
		return nil, cluster.Write{}, err
	}
	w, err := c.CreateNamespace(ctx, ns, map[string]string{"ns": ns})
	return o, w, err
}
