//go:build linux

package iptables

import (
	"fmt"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// Copied from npm/translate/oracle_test.go (cyclonus may be imported only
// by _test files, which cannot be shared between packages).
//
// oracleInput prepares policies for cyclonus: API-server defaulting of
// policyTypes (cyclonus requires them), and the correction of its known
// defect: it treats `key NotIn (...)` as false when the label is absent,
// Kubernetes as true. Every selector with NotIn is split into the variants
// NotIn / DoesNotExist (target selectors by duplicating the policy, peer
// selectors by duplicating the peer); the union is Kubernetes' meaning.
func oracleInput(pols []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, p := range pols {
		p = p.DeepCopy()
		if len(p.Spec.PolicyTypes) == 0 {
			p.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(p.Spec.Egress) > 0 {
				p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			}
		}
		for i := range p.Spec.Ingress {
			p.Spec.Ingress[i].From = splitPeers(p.Spec.Ingress[i].From)
		}
		for i := range p.Spec.Egress {
			p.Spec.Egress[i].To = splitPeers(p.Spec.Egress[i].To)
		}
		for i, s := range splitSelector(&p.Spec.PodSelector) {
			q := p.DeepCopy()
			q.Name = fmt.Sprintf("%s-v%d", p.Name, i)
			q.Spec.PodSelector = *s
			out = append(out, q)
		}
	}
	return out
}

func splitPeers(peers []networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, pe := range peers {
		if pe.IPBlock != nil {
			out = append(out, pe)
			continue
		}
		for _, ns := range splitSelector(pe.NamespaceSelector) {
			for _, ps := range splitSelector(pe.PodSelector) {
				out = append(out, networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: ps})
			}
		}
	}
	return out
}

func splitSelector(s *metav1.LabelSelector) []*metav1.LabelSelector {
	if s == nil {
		return []*metav1.LabelSelector{nil}
	}
	out := []*metav1.LabelSelector{{MatchLabels: s.MatchLabels}}
	for _, req := range s.MatchExpressions {
		var next []*metav1.LabelSelector
		for _, o := range out {
			a := o.DeepCopy()
			a.MatchExpressions = append(a.MatchExpressions, req)
			next = append(next, a)
			if req.Operator == metav1.LabelSelectorOpNotIn {
				b := o.DeepCopy()
				b.MatchExpressions = append(b.MatchExpressions, metav1.LabelSelectorRequirement{Key: req.Key, Operator: metav1.LabelSelectorOpDoesNotExist})
				next = append(next, b)
			}
		}
		out = next
	}
	return out
}

// oracle answers with cyclonus.
type oracle struct {
	m    *matcher.Policy
	ns   map[string]map[string]string
	byIP map[string]*corev1.Pod
}

func newOracle(w translatetest.World) *oracle {
	o := &oracle{m: matcher.BuildNetworkPolicies(false, oracleInput(w.Policies)), ns: map[string]map[string]string{}, byIP: map[string]*corev1.Pod{}}
	for _, n := range w.Namespaces {
		l := map[string]string{translate.NamespaceNameLabel: n.Name}
		for k, v := range n.Labels {
			l[k] = v
		}
		o.ns[n.Name] = l
	}
	for _, p := range w.Pods {
		for _, ip := range p.Status.PodIPs {
			o.byIP[ip.IP] = p
		}
	}
	return o
}

func (o *oracle) peer(ip string) *matcher.TrafficPeer {
	p := o.byIP[ip]
	if p == nil {
		return &matcher.TrafficPeer{IP: ip}
	}
	return &matcher.TrafficPeer{IP: ip, Internal: &matcher.InternalPeer{PodLabels: p.Labels, NamespaceLabels: o.ns[p.Namespace], Namespace: p.Namespace}}
}

func (o *oracle) allowed(src, dst string, proto corev1.Protocol, port int) bool {
	name := ""
	if p := o.byIP[dst]; p != nil {
		name = translatetest.PortName(p, proto, port)
	}
	return o.m.IsTrafficAllowed(&matcher.Traffic{Source: o.peer(src), Destination: o.peer(dst), ResolvedPort: port, ResolvedPortName: name, Protocol: proto}).IsAllowed()
}

func propConfig(pods int) translatetest.Config {
	c := translatetest.Config{Namespaces: 3, Policies: 4,
		CIDRs:   []string{"10.9.0.0/16", "10.9.0.0/23", "10.9.2.0/24", "0.0.0.0/0", "192.168.7.0/24", "fd09::/32", "::/0"},
		Excepts: []string{"10.9.1.0/24", "10.9.0.0/22", "10.9.3.0/24", "fd09:0:1::/48"},
	}
	for i := 0; i < pods; i++ {
		c.PodIPs = append(c.PodIPs, []string{fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::2", i)})
	}
	return c
}

func dumpPolicies(w translatetest.World) string {
	s := ""
	for _, n := range w.Namespaces {
		s += fmt.Sprintf("ns %s %v\n", n.Name, n.Labels)
	}
	for _, p := range w.Pods {
		s += fmt.Sprintf("pod %s/%s %v %v %v\n", p.Namespace, p.Name, p.Labels, p.Status.PodIPs, p.Spec.Containers[0].Ports)
	}
	for _, p := range w.Policies {
		s += fmt.Sprintf("policy %s/%s %+v\n", p.Namespace, p.Name, p.Spec)
	}
	return s
}
