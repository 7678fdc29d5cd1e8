// Package translatetest generates random clusters and NetworkPolicies for
// the property tests of the translator and of every dataplane (the oracle
// itself, cyclonus, is imported only by _test files).
package translatetest

import (
	"fmt"
	"math/rand"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// World is a random cluster.
type World struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies: RandomCluster's, when a test adds them.
	ClusterPolicies []*cnpv1.ClusterNetworkPolicy
}

// Config shapes a random world.
type Config struct {
	Namespaces int        // number of namespaces (ns0..)
	PodIPs     [][]string // one entry per pod: its IPs (one per family)
	CIDRs      []string   // candidate ipBlock CIDRs
	Excepts    []string   // candidate excepts (only those inside the CIDR are used)
	Policies   int        // max policies
}

// ProbePorts are the (protocol, port) pairs probes use; they hit numeric,
// range and named-port rules of the generated policies.
var ProbePorts = []struct {
	Proto corev1.Protocol
	Port  int
}{{corev1.ProtocolTCP, 80}, {corev1.ProtocolTCP, 81}, {corev1.ProtocolUDP, 53}, {corev1.ProtocolSCTP, 80}}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.Intn(len(xs))] }

// sortedKeys: map iteration order is random, and a world must be a
// function of the seed alone so a failing case can be replayed.
func sortedKeys(m map[string][]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func randLabels(r *rand.Rand, keys map[string][]string) map[string]string {
	l := map[string]string{}
	for _, k := range sortedKeys(keys) {
		if r.Intn(3) > 0 {
			l[k] = pick(r, keys[k]...)
		}
	}
	return l
}

var (
	nsKeys  = map[string][]string{"team": {"x", "y"}, "env": {"p", "q"}}
	podKeys = map[string][]string{"app": {"a", "b"}, "tier": {"1", "2"}}
)

// Random builds a random world.
func Random(r *rand.Rand, c Config) World {
	var w World
	for i := 0; i < c.Namespaces; i++ {
		w.Namespaces = append(w.Namespaces, Namespace(fmt.Sprintf("ns%d", i), randLabels(r, nsKeys)))
	}
	for i, ips := range c.PodIPs {
		lbls := randLabels(r, podKeys)
		var ports []corev1.ContainerPort
		if r.Intn(3) > 0 {
			ports = append(ports, CPort("http", corev1.ProtocolTCP, int32(pick(r, 80, 81))))
		}
		if r.Intn(2) > 0 {
			ports = append(ports, CPort("dns", corev1.ProtocolUDP, 53))
		}
		w.Pods = append(w.Pods, Pod(fmt.Sprintf("ns%d", i%c.Namespaces), fmt.Sprintf("pod%d", i), "node", lbls, ips, ports...))
	}
	n := 1 + r.Intn(c.Policies)
	for i := 0; i < n; i++ {
		w.Policies = append(w.Policies, randPolicy(r, c, fmt.Sprintf("ns%d", r.Intn(c.Namespaces)), fmt.Sprintf("np%d", i)))
	}
	return w
}

func randSelector(r *rand.Rand, keys map[string][]string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	n := r.Intn(3)
	ks := sortedKeys(keys)
	for i := 0; i < n; i++ {
		k := pick(r, ks...)
		vs := keys[k]
		switch r.Intn(5) {
		case 0:
			if s.MatchLabels == nil {
				s.MatchLabels = map[string]string{}
			}
			s.MatchLabels[k] = pick(r, vs...)
		case 1:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{pick(r, vs...)}})
		case 2:
			vals := []string{pick(r, vs...)}
			if r.Intn(2) == 0 {
				vals = vs // multi-value NotIn: a conjunction
			}
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpNotIn, Values: vals})
		case 3:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpExists})
		case 4:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpDoesNotExist})
		}
	}
	return s
}

func randPeer(r *rand.Rand, c Config) networkingv1.NetworkPolicyPeer {
	switch r.Intn(5) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: randSelector(r, podKeys)}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: randSelector(r, nsKeys)}
	case 2, 3:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: randSelector(r, nsKeys), PodSelector: randSelector(r, podKeys)}
	default:
		b := &networkingv1.IPBlock{CIDR: pick(r, c.CIDRs...)}
		cidr := netip.MustParsePrefix(b.CIDR)
		var ok []string // API validation: an except lies inside the cidr
		for _, e := range c.Excepts {
			ep := netip.MustParsePrefix(e)
			if ep.Addr().Is4() == cidr.Addr().Is4() && ep.Bits() > cidr.Bits() && cidr.Contains(ep.Addr()) {
				ok = append(ok, e)
			}
		}
		if r.Intn(3) > 0 && len(ok) > 0 {
			b.Except = []string{pick(r, ok...)}
		}
		return networkingv1.NetworkPolicyPeer{IPBlock: b}
	}
}

func randPorts(r *rand.Rand) []networkingv1.NetworkPolicyPort {
	if r.Intn(3) == 0 {
		return nil
	}
	var out []networkingv1.NetworkPolicyPort
	for i := 0; i < 1+r.Intn(2); i++ {
		var p networkingv1.NetworkPolicyPort
		switch r.Intn(8) {
		case 0:
			p = TCP(80)
		case 1:
			p = ProtoPort(corev1.ProtocolTCP, 81, 0)
		case 2:
			p = TCP(79)
			e := int32(80)
			p.EndPort = &e
		case 3:
			p = ProtoPort(corev1.ProtocolUDP, 53, 0)
		case 4:
			p = ProtoPort(corev1.ProtocolSCTP, 80, 0)
		case 5:
			p = Named("", "http")
		case 6:
			p = Named(corev1.ProtocolUDP, "dns")
		case 7:
			p = ProtoPort(pick(r, corev1.ProtocolUDP, corev1.ProtocolSCTP), 0, 0)
		}
		out = append(out, p)
	}
	return out
}

func randPeers(r *rand.Rand, c Config) []networkingv1.NetworkPolicyPeer {
	if r.Intn(4) == 0 {
		return nil
	}
	var out []networkingv1.NetworkPolicyPeer
	for i := 0; i < 1+r.Intn(2); i++ {
		out = append(out, randPeer(r, c))
	}
	return out
}

func randPolicy(r *rand.Rand, c Config, ns, name string) *networkingv1.NetworkPolicy {
	np := Policy(ns, name, networkingv1.NetworkPolicySpec{})
	np.Spec.PodSelector = *randSelector(r, podKeys)
	switch r.Intn(4) {
	case 0: // defaulted policyTypes
	case 1:
		np.Spec.PolicyTypes = IngressOnly
	case 2:
		np.Spec.PolicyTypes = EgressOnly
	case 3:
		np.Spec.PolicyTypes = BothTypes
	}
	for i := 0; i < r.Intn(3); i++ {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: randPeers(r, c), Ports: randPorts(r)})
	}
	for i := 0; i < r.Intn(3); i++ {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: randPeers(r, c), Ports: randPorts(r)})
	}
	// The API server drops rules of a direction that is not in policyTypes
	// only in effect; keep them, the translator must ignore them.
	return np
}

// PortName returns the name of the pod's container port matching (proto,
// port), or "".
func PortName(p *corev1.Pod, proto corev1.Protocol, port int) string {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			pr := cp.Protocol
			if pr == "" {
				pr = corev1.ProtocolTCP
			}
			if pr == proto && int(cp.ContainerPort) == port {
				return cp.Name
			}
		}
	}
	return ""
}
