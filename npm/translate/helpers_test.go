package translate

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/npm/policy"
)

// test object builders

type cport struct {
	name  string
	proto corev1.Protocol
	port  int32
}

func mkPod(ns, name, node string, lbls map[string]string, ips []string, ports ...cport) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls}}
	p.Spec.NodeName = node
	c := corev1.Container{Name: "c"}
	for _, cp := range ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: cp.name, Protocol: cp.proto, ContainerPort: cp.port})
	}
	p.Spec.Containers = []corev1.Container{c}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	p.Status.Phase = corev1.PodRunning
	return p
}

func mkNS(name string, lbls map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func expr(key string, op metav1.LabelSelectorOperator, vals ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: vals}}}
}

func tcp(port int) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Port: &p}
}

func portP(proto corev1.Protocol, port int, end int) networkingv1.NetworkPolicyPort {
	pp := networkingv1.NetworkPolicyPort{Protocol: &proto}
	if port != 0 {
		p := intstr.FromInt32(int32(port))
		pp.Port = &p
	}
	if end != 0 {
		e := int32(end)
		pp.EndPort = &e
	}
	return pp
}

func named(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	pp := networkingv1.NetworkPolicyPort{Port: &p}
	if proto != "" {
		pp.Protocol = &proto
	}
	return pp
}

func np(ns, name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

// render writes a state out as canonical text: endpoints, then policies
// with every rule's peers and ports expanded to their set members.
func render(s *policy.State) string {
	var b strings.Builder
	var eks []string
	for k := range s.Endpoints {
		eks = append(eks, k)
	}
	sort.Strings(eks)
	for _, k := range eks {
		e := s.Endpoints[k]
		fmt.Fprintf(&b, "endpoint %s %v in=%v eg=%v\n", k, e.IPs, e.Ingress, e.Egress)
	}
	var pks []string
	for k := range s.Policies {
		pks = append(pks, k)
	}
	sort.Strings(pks)
	for _, k := range pks {
		p := s.Policies[k]
		fmt.Fprintf(&b, "policy %s ingress=%v egress=%v", k, p.Ingress, p.Egress)
		if p.Error != "" {
			b.WriteString(" FAILED")
		}
		b.WriteString("\n")
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			for i, r := range p.Rules(d) {
				fmt.Fprintf(&b, "  %s %d:", d, i)
				if len(r.Peers) == 0 {
					b.WriteString(" any")
				}
				for _, pe := range r.Peers {
					fmt.Fprintf(&b, " %s", renderSet(s, pe.SetID))
				}
				for _, pt := range r.Ports {
					fmt.Fprintf(&b, " port %s", pt)
					if pt.SetID != "" {
						fmt.Fprintf(&b, "=%s", renderSet(s, pt.SetID))
					}
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

func renderSet(s *policy.State, id string) string {
	set := s.Sets[id]
	if set == nil {
		return "MISSING(" + id + ")"
	}
	ms := set.Sorted()
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
