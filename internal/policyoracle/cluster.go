package policyoracle

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	anpv1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	pa "github.com/open-acn/acn/internal/policyoracle/policyassistant"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// ClusterOracle judges clusters with ClusterNetworkPolicies: the matcher of
// the network-policy-api project's policy-assistant
// (internal/policyoracle/policyassistant), which models NetworkPolicy,
// AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1). Its input
// is mapped from ClusterNetworkPolicy (v1beta1), which it does not model:
//
//   - an Admin-tier CNP is an ANP. The ANP API wants unique priorities and
//     the oracle panics on equal ones, so the Admin CNPs are ranked by
//     (priority, name) — the tie-break this implementation documents — and
//     the rank is the ANP priority. Accept is Allow.
//   - the Baseline tier is one BANP (the oracle models exactly one) per
//     probe: subject every pod, and per direction the rules of the
//     Baseline CNPs whose subject (matched by the oracle's own subject
//     matcher) selects the probe's pod in that direction, concatenated in
//     (priority, name) order. BANPs have no Pass: a Baseline Pass ends the
//     tier with the default verdict, allow, so it is Allow.
//   - a named port of a CNP names a container port of any protocol; the
//     oracle takes a named port's protocol from a "-tcp"/"-udp"/"-sctp"
//     suffix of its name, so name N becomes the three ports N-tcp, N-udp,
//     N-sctp and a probe's resolved port name gets its protocol's suffix.
//   - a CNP protocol without a port (all ports of TCP) is the range 1-65535.
//   - the oracle has cyclonus' NotIn defect (it treats `NotIn` as false for
//     an object lacking the key); as for NetworkPolicies, selectors are
//     split into NotIn and DoesNotExist variants: peers are duplicated, a
//     subject becomes one ANP per variant (consecutive priorities: the
//     variants select disjoint pods, so their order does not matter).
//
// Networks, nodes and domainNames peers are not modelled by the oracle.
type ClusterOracle struct {
	nps      []*networkingv1.NetworkPolicy
	anps     []*anpv1.AdminNetworkPolicy
	baseline []*cnpv1.ClusterNetworkPolicy // sorted by (priority, name)
	ns       map[string]map[string]string
	byIP     map[string]*corev1.Pod
}

// NewCluster builds the oracle over a world.
func NewCluster(namespaces []*corev1.Namespace, pods []*corev1.Pod, nps []*networkingv1.NetworkPolicy, cnps []*cnpv1.ClusterNetworkPolicy) *ClusterOracle {
	o := &ClusterOracle{nps: suffixNamedPorts(CorrectInput(nps))}
	o.ns, o.byIP = indexWorld(namespaces, pods)
	sorted := append([]*cnpv1.ClusterNetworkPolicy(nil), cnps...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Spec.Priority != b.Spec.Priority {
			return a.Spec.Priority < b.Spec.Priority
		}
		return a.Name < b.Name
	})
	prio := int32(0)
	for _, c := range sorted {
		if c.Spec.Tier == cnpv1.BaselineTier {
			o.baseline = append(o.baseline, c)
			continue
		}
		if len(c.Spec.Ingress) == 0 && len(c.Spec.Egress) == 0 {
			continue // affects nothing; the oracle refuses it
		}
		for i, subj := range splitSubject(c.Spec.Subject) {
			a := &anpv1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-v%d", c.Name, i)}}
			a.Spec.Priority = prio
			prio++
			a.Spec.Subject = subj
			for _, r := range c.Spec.Ingress {
				a.Spec.Ingress = append(a.Spec.Ingress, anpv1.AdminNetworkPolicyIngressRule{Name: r.Name, Action: anpAction(r.Action, false),
					From: ingressPeers(r.From), Ports: anpPorts(r.Protocols)})
			}
			for _, r := range c.Spec.Egress {
				a.Spec.Egress = append(a.Spec.Egress, anpv1.AdminNetworkPolicyEgressRule{Name: r.Name, Action: anpAction(r.Action, false),
					To: egressPeers(r.To), Ports: anpPorts(r.Protocols)})
			}
			o.anps = append(o.anps, a)
		}
	}
	return o
}

// suffixNamedPorts gives the NetworkPolicies' named ports the protocol
// suffix the probes' resolved port names carry here (see ClusterOracle).
func suffixNamedPorts(nps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
	fix := func(ports []networkingv1.NetworkPolicyPort) {
		for i, p := range ports {
			if p.Port == nil || p.Port.Type != intstr.String {
				continue
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			n := intstr.FromString(p.Port.StrVal + "-" + strings.ToLower(string(proto)))
			ports[i].Port = &n
		}
	}
	for _, np := range nps {
		for i := range np.Spec.Ingress {
			fix(np.Spec.Ingress[i].Ports)
		}
		for i := range np.Spec.Egress {
			fix(np.Spec.Egress[i].Ports)
		}
	}
	return nps
}

func anpAction(a cnpv1.ClusterNetworkPolicyRuleAction, baseline bool) anpv1.AdminNetworkPolicyRuleAction {
	switch {
	case a == cnpv1.ClusterNetworkPolicyRuleActionDeny:
		return anpv1.AdminNetworkPolicyRuleActionDeny
	case a == cnpv1.ClusterNetworkPolicyRuleActionPass && !baseline:
		return anpv1.AdminNetworkPolicyRuleActionPass
	}
	return anpv1.AdminNetworkPolicyRuleActionAllow
}

func splitSubject(s cnpv1.ClusterNetworkPolicySubject) []anpv1.AdminNetworkPolicySubject {
	var out []anpv1.AdminNetworkPolicySubject
	if s.Namespaces != nil {
		for _, ns := range splitSelector(s.Namespaces) {
			out = append(out, anpv1.AdminNetworkPolicySubject{Namespaces: ns})
		}
		return out
	}
	for _, ns := range splitSelector(&s.Pods.NamespaceSelector) {
		for _, ps := range splitSelector(&s.Pods.PodSelector) {
			out = append(out, anpv1.AdminNetworkPolicySubject{Pods: &anpv1.NamespacedPod{NamespaceSelector: *ns, PodSelector: *ps}})
		}
	}
	return out
}

// splitPeer returns the NotIn-corrected variants of a namespaces/pods peer.
func splitPeer(ns *metav1.LabelSelector, pods *cnpv1.NamespacedPod) (nss []*metav1.LabelSelector, ps []*anpv1.NamespacedPod) {
	if ns != nil {
		return splitSelector(ns), nil
	}
	for _, n := range splitSelector(&pods.NamespaceSelector) {
		for _, p := range splitSelector(&pods.PodSelector) {
			ps = append(ps, &anpv1.NamespacedPod{NamespaceSelector: *n, PodSelector: *p})
		}
	}
	return nil, ps
}

func ingressPeers(ps []cnpv1.ClusterNetworkPolicyIngressPeer) []anpv1.AdminNetworkPolicyIngressPeer {
	var out []anpv1.AdminNetworkPolicyIngressPeer
	for _, p := range ps {
		nss, pods := splitPeer(p.Namespaces, p.Pods)
		for _, n := range nss {
			out = append(out, anpv1.AdminNetworkPolicyIngressPeer{Namespaces: n})
		}
		for _, q := range pods {
			out = append(out, anpv1.AdminNetworkPolicyIngressPeer{Pods: q})
		}
	}
	return out
}

func egressPeers(ps []cnpv1.ClusterNetworkPolicyEgressPeer) []anpv1.AdminNetworkPolicyEgressPeer {
	var out []anpv1.AdminNetworkPolicyEgressPeer
	for _, p := range ps {
		if p.Namespaces == nil && p.Pods == nil {
			panic("policyoracle: only namespaces and pods peers are modelled")
		}
		nss, pods := splitPeer(p.Namespaces, p.Pods)
		for _, n := range nss {
			out = append(out, anpv1.AdminNetworkPolicyEgressPeer{Namespaces: n})
		}
		for _, q := range pods {
			out = append(out, anpv1.AdminNetworkPolicyEgressPeer{Pods: q})
		}
	}
	return out
}

func anpPorts(protos []cnpv1.ClusterNetworkPolicyProtocol) *[]anpv1.AdminNetworkPolicyPort {
	if len(protos) == 0 {
		return nil
	}
	var out []anpv1.AdminNetworkPolicyPort
	for _, p := range protos {
		if p.DestinationNamedPort != "" {
			for _, suffix := range []string{"-tcp", "-udp", "-sctp"} {
				n := p.DestinationNamedPort + suffix
				out = append(out, anpv1.AdminNetworkPolicyPort{NamedPort: &n})
			}
			continue
		}
		proto, dp := corev1.ProtocolTCP, (*cnpv1.Port)(nil)
		switch {
		case p.TCP != nil:
			dp = p.TCP.DestinationPort
		case p.UDP != nil:
			proto, dp = corev1.ProtocolUDP, p.UDP.DestinationPort
		case p.SCTP != nil:
			proto, dp = corev1.ProtocolSCTP, p.SCTP.DestinationPort
		}
		switch {
		case dp == nil:
			out = append(out, anpv1.AdminNetworkPolicyPort{PortRange: &anpv1.PortRange{Protocol: proto, Start: 1, End: 65535}})
		case dp.Range != nil:
			out = append(out, anpv1.AdminNetworkPolicyPort{PortRange: &anpv1.PortRange{Protocol: proto, Start: dp.Range.Start, End: dp.Range.End}})
		default:
			out = append(out, anpv1.AdminNetworkPolicyPort{PortNumber: &anpv1.Port{Protocol: proto, Port: dp.Number}})
		}
	}
	return &out
}

func (o *ClusterOracle) internal(ip string) *pa.TrafficPeer {
	p := o.byIP[ip]
	if p == nil {
		return &pa.TrafficPeer{IP: ip}
	}
	return &pa.TrafficPeer{IP: ip, Internal: &pa.InternalPeer{PodLabels: p.Labels, NamespaceLabels: o.ns[p.Namespace], Namespace: p.Namespace}}
}

// baselineFor is the probe's BANP: the rules of the Baseline CNPs selecting
// src (egress) and dst (ingress), in (priority, name) order; nil if none.
func (o *ClusterOracle) baselineFor(src, dst *pa.TrafficPeer) *anpv1.BaselineAdminNetworkPolicy {
	b := &anpv1.BaselineAdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	b.Spec.Subject = anpv1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}}
	selects := func(c *cnpv1.ClusterNetworkPolicy, peer *pa.TrafficPeer) bool {
		if peer.Internal == nil {
			return false
		}
		for _, s := range splitSubject(c.Spec.Subject) {
			if pa.NewSubjectAdmin(&s).Matches(peer.Internal) {
				return true
			}
		}
		return false
	}
	for _, c := range o.baseline {
		if selects(c, dst) {
			for _, r := range c.Spec.Ingress {
				b.Spec.Ingress = append(b.Spec.Ingress, anpv1.BaselineAdminNetworkPolicyIngressRule{Name: c.Name + "/" + r.Name,
					Action: anpv1.BaselineAdminNetworkPolicyRuleAction(anpAction(r.Action, true)), From: ingressPeers(r.From), Ports: anpPorts(r.Protocols)})
			}
		}
		if selects(c, src) {
			for _, r := range c.Spec.Egress {
				var to []anpv1.BaselineAdminNetworkPolicyEgressPeer
				for _, p := range egressPeers(r.To) {
					to = append(to, anpv1.BaselineAdminNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods})
				}
				b.Spec.Egress = append(b.Spec.Egress, anpv1.BaselineAdminNetworkPolicyEgressRule{Name: c.Name + "/" + r.Name,
					Action: anpv1.BaselineAdminNetworkPolicyRuleAction(anpAction(r.Action, true)), To: to, Ports: anpPorts(r.Protocols)})
			}
		}
	}
	if len(b.Spec.Ingress) == 0 && len(b.Spec.Egress) == 0 {
		return nil
	}
	return b
}

// Allowed decides a connection from src to dst (IPs) on proto/port.
func (o *ClusterOracle) Allowed(src, dst string, proto corev1.Protocol, port int) bool {
	s, d := o.internal(src), o.internal(dst)
	m := pa.BuildV1AndV2NetPols(o.nps, o.anps, o.baselineFor(s, d))
	name := ""
	if p := o.byIP[dst]; p != nil {
		if n := translatetest.PortName(p, proto, port); n != "" {
			name = n + "-" + strings.ToLower(string(proto))
		}
	}
	return m.IsTrafficAllowed(&pa.Traffic{Source: s, Destination: d, ResolvedPort: port, ResolvedPortName: name, Protocol: proto}).IsAllowed()
}
