// Package policyoracle is the independent judge of NetworkPolicy decisions
// used by the property tests of every dataplane and by the e2e harness: the
// matcher of github.com/mattfenwick/cyclonus, with its input corrected for
// one measured defect. Only tests and test harnesses import it.
//
// The defect: cyclonus treats `key NotIn (...)` as false when the pod or
// namespace lacks the label; Kubernetes treats it as true. Rather than
// patching the oracle, its input is rewritten: every selector with NotIn is
// split into a NotIn variant and a DoesNotExist variant (target selectors by
// duplicating the policy, peer selectors by duplicating the peer), whose
// union is Kubernetes' meaning.
package policyoracle

import (
	"fmt"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/npm/translate/translatetest"
)

// NamespaceNameLabel is set by the API server on every namespace.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// CorrectInput prepares policies for cyclonus: API-server defaulting of
// policyTypes (cyclonus requires them) and the NotIn correction.
func CorrectInput(pols []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
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

// Oracle answers "is this traffic allowed" for one cluster state.
type Oracle struct {
	m    *matcher.Policy
	ns   map[string]map[string]string
	byIP map[string]*corev1.Pod
}

// New builds an oracle over namespaces, pods (with IPs) and policies.
func New(namespaces []*corev1.Namespace, pods []*corev1.Pod, policies []*networkingv1.NetworkPolicy) *Oracle {
	o := &Oracle{m: matcher.BuildNetworkPolicies(false, CorrectInput(policies))}
	o.ns, o.byIP = indexWorld(namespaces, pods)
	return o
}

// indexWorld indexes namespaces' labels (with the name label the oracle
// matches namespaceSelectors on) and pods by each of their IPs.
func indexWorld(namespaces []*corev1.Namespace, pods []*corev1.Pod) (map[string]map[string]string, map[string]*corev1.Pod) {
	ns, byIP := map[string]map[string]string{}, map[string]*corev1.Pod{}
	for _, n := range namespaces {
		l := map[string]string{NamespaceNameLabel: n.Name}
		for k, v := range n.Labels {
			l[k] = v
		}
		ns[n.Name] = l
	}
	for _, p := range pods {
		for _, ip := range p.Status.PodIPs {
			byIP[ip.IP] = p
		}
		if p.Status.PodIP != "" {
			byIP[p.Status.PodIP] = p
		}
	}
	return ns, byIP
}

func (o *Oracle) peer(ip string) *matcher.TrafficPeer {
	p := o.byIP[ip]
	if p == nil {
		return &matcher.TrafficPeer{IP: ip}
	}
	return &matcher.TrafficPeer{IP: ip, Internal: &matcher.InternalPeer{PodLabels: p.Labels, NamespaceLabels: o.ns[p.Namespace], Namespace: p.Namespace}}
}

// Allowed decides a connection from src to dst (IPs) on proto/port; a
// destination pod's container port of that number and protocol supplies
// the port name for named-port rules.
func (o *Oracle) Allowed(src, dst string, proto corev1.Protocol, port int) bool {
	name := ""
	if p := o.byIP[dst]; p != nil {
		name = translatetest.PortName(p, proto, port)
	}
	return o.m.IsTrafficAllowed(&matcher.Traffic{Source: o.peer(src), Destination: o.peer(dst), ResolvedPort: port, ResolvedPortName: name, Protocol: proto}).IsAllowed()
}
