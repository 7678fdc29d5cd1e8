package translate

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/npm/policy"
)

// selSpec describes a selector before it is registered.
type selSpec struct {
	key, readable string
	nsName        string
	nsSel         labels.Selector
	podSel        labels.Selector
}

func readableSel(s labels.Selector) string {
	if s.Empty() {
		return "(all)"
	}
	return s.String()
}

func asSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// podSelectorSpec: pods of one namespace matching ls.
func podSelectorSpec(ns string, ls *metav1.LabelSelector) (selSpec, error) {
	ps, err := asSelector(ls)
	if err != nil {
		return selSpec{}, fmt.Errorf("podSelector: %w", err)
	}
	return selSpec{
		key:      fmt.Sprintf("pods{ns=%s}{%s}", ns, ps.String()),
		readable: fmt.Sprintf("pods in namespace %s with %s", ns, readableSel(ps)),
		nsName:   ns, podSel: ps,
	}, nil
}

// nsSelectorSpec: pods matching podSel in namespaces matching nsSel.
func nsSelectorSpec(nsLS, podLS *metav1.LabelSelector) (selSpec, error) {
	nss, err := asSelector(nsLS)
	if err != nil {
		return selSpec{}, fmt.Errorf("namespaceSelector: %w", err)
	}
	ps, err := asSelector(podLS)
	if err != nil {
		return selSpec{}, fmt.Errorf("podSelector: %w", err)
	}
	return selSpec{
		key:      fmt.Sprintf("pods{nssel=%s}{%s}", nss.String(), ps.String()),
		readable: fmt.Sprintf("pods with %s in namespaces with %s", readableSel(ps), readableSel(nss)),
		nsSel:    nss, podSel: ps,
	}, nil
}

// peerSelectorSpec: the pods a selector peer selects (its podSelector in
// its own namespace, or in the namespaces its namespaceSelector selects).
func peerSelectorSpec(ns string, p networkingv1.NetworkPolicyPeer) (selSpec, error) {
	if p.NamespaceSelector != nil {
		return nsSelectorSpec(p.NamespaceSelector, p.PodSelector)
	}
	return podSelectorSpec(ns, p.PodSelector)
}

// allPodsSpec selects every (eligible) pod of the cluster.
func allPodsSpec() selSpec {
	s, _ := nsSelectorSpec(&metav1.LabelSelector{}, &metav1.LabelSelector{})
	return s
}

func ipSetSpec(s selSpec) setSpec {
	return setSpec{id: "i" + policy.Hash("ip|"+s.key, 12), key: s.key, readable: s.readable, kind: policy.SetIP, sels: []string{s.key}}
}

func namedPortSpec(scope []selSpec, name string, proto policy.Protocol) setSpec {
	keys := make([]string, len(scope))
	rd := make([]string, len(scope))
	for i, s := range scope {
		keys[i] = s.key
		rd[i] = s.readable
	}
	sort.Strings(keys)
	sort.Strings(rd)
	key := fmt.Sprintf("port{%s/%s}{%s}", name, proto, strings.Join(keys, ","))
	return setSpec{id: "p" + policy.Hash(key, 12), key: key, kind: policy.SetIPPort, sels: keys, portName: name, proto: proto,
		readable: fmt.Sprintf("named port %s/%s of %s", name, proto, strings.Join(rd, " or "))}
}

// compile translates a NetworkPolicy; it registers nothing.
func compile(np *networkingv1.NetworkPolicy) (*compiled, []selSpec, error) {
	ns := np.Namespace
	target, err := podSelectorSpec(ns, &np.Spec.PodSelector)
	if err != nil {
		return nil, nil, err
	}
	pol := &policy.Policy{Namespace: ns, Name: np.Name, Selector: target.readable}
	ingress, egress := false, false
	if len(np.Spec.PolicyTypes) == 0 {
		// API server defaulting: Ingress always, Egress when egress rules exist.
		ingress, egress = true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			return nil, nil, fmt.Errorf("unknown policyType %q", t)
		}
	}
	pol.Ingress, pol.Egress = ingress, egress
	c := &compiled{pol: pol, target: target.key}
	sels := map[string]selSpec{target.key: target}
	sets := map[string]setSpec{}
	addSet := func(s setSpec) { sets[s.id] = s }

	if ingress {
		for i, r := range np.Spec.Ingress {
			rule, err := compileRule(ns, policy.Ingress, r.From, r.Ports, target, sels, addSet)
			if err != nil {
				return nil, nil, fmt.Errorf("ingress rule %d: %w", i, err)
			}
			pol.IngressRules = append(pol.IngressRules, rule)
		}
	}
	if egress {
		for i, r := range np.Spec.Egress {
			rule, err := compileRule(ns, policy.Egress, r.To, r.Ports, target, sels, addSet)
			if err != nil {
				return nil, nil, fmt.Errorf("egress rule %d: %w", i, err)
			}
			pol.EgressRules = append(pol.EgressRules, rule)
		}
	}
	return c, c.finish(sels, sets), nil
}

// finish records the selectors and sets a compiled policy references
// (sorted) and returns the selectors to register.
func (c *compiled) finish(sels map[string]selSpec, sets map[string]setSpec) []selSpec {
	out := make([]selSpec, 0, len(sels))
	for _, s := range sels {
		out = append(out, s)
		c.sels = append(c.sels, s.key)
	}
	sort.Strings(c.sels)
	for _, s := range sets {
		c.sets = append(c.sets, s)
	}
	sort.Slice(c.sets, func(i, j int) bool { return c.sets[i].id < c.sets[j].id })
	return out
}

func compileRule(ns string, dir policy.Direction, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort,
	target selSpec, sels map[string]selSpec, addSet func(setSpec)) (policy.Rule, error) {
	var rule policy.Rule
	var desc []string
	var podScope []selSpec // egress named-port scope
	anyNonPod := len(peers) == 0
	for j, p := range peers {
		switch {
		case p.IPBlock != nil:
			if p.PodSelector != nil || p.NamespaceSelector != nil {
				return rule, fmt.Errorf("peer %d: ipBlock combined with a selector", j)
			}
			s, err := ipBlockSpec(p.IPBlock)
			if err != nil {
				return rule, fmt.Errorf("peer %d: %w", j, err)
			}
			addSet(s)
			rule.Peers = append(rule.Peers, policy.Peer{SetID: s.id})
			desc = append(desc, s.readable)
			anyNonPod = true
		case p.NamespaceSelector != nil || p.PodSelector != nil:
			s, err := peerSelectorSpec(ns, p)
			if err != nil {
				return rule, fmt.Errorf("peer %d: %w", j, err)
			}
			sels[s.key] = s
			set := ipSetSpec(s)
			addSet(set)
			rule.Peers = append(rule.Peers, policy.Peer{SetID: set.id})
			desc = append(desc, s.readable)
			podScope = append(podScope, s)
		default:
			return rule, fmt.Errorf("peer %d: empty peer", j)
		}
	}
	if len(peers) == 0 {
		desc = append(desc, "any peer")
	}
	for j, p := range ports {
		proto := policy.TCP
		if p.Protocol != nil {
			proto = policy.Protocol(*p.Protocol)
		}
		switch proto {
		case policy.TCP, policy.UDP, policy.SCTP:
		default:
			return rule, fmt.Errorf("port %d: unsupported protocol %q", j, proto)
		}
		pp := policy.Port{Protocol: proto}
		switch {
		case p.Port == nil:
			if p.EndPort != nil {
				return rule, fmt.Errorf("port %d: endPort without port", j)
			}
		case p.Port.Type == intstr.Int:
			if p.Port.IntVal < 1 || p.Port.IntVal > 65535 {
				return rule, fmt.Errorf("port %d: port %d out of range", j, p.Port.IntVal)
			}
			pp.Port = uint16(p.Port.IntVal)
			if p.EndPort != nil {
				if *p.EndPort < p.Port.IntVal || *p.EndPort > 65535 {
					return rule, fmt.Errorf("port %d: endPort %d invalid for port %d", j, *p.EndPort, p.Port.IntVal)
				}
				if *p.EndPort > p.Port.IntVal {
					pp.EndPort = uint16(*p.EndPort)
				}
			}
		default:
			if p.EndPort != nil {
				return rule, fmt.Errorf("port %d: endPort with named port", j)
			}
			name := p.Port.StrVal
			if name == "" {
				return rule, fmt.Errorf("port %d: empty port name", j)
			}
			var scope []selSpec
			if dir == policy.Ingress {
				scope = []selSpec{target}
			} else if anyNonPod {
				scope = []selSpec{allPodsSpec()}
			} else {
				scope = podScope
			}
			for _, s := range scope {
				sels[s.key] = s
			}
			set := namedPortSpec(scope, name, proto)
			addSet(set)
			pp.Name, pp.SetID = name, set.id
		}
		rule.Ports = append(rule.Ports, pp)
	}
	pd := make([]string, len(rule.Ports))
	for i, p := range rule.Ports {
		pd[i] = p.String()
	}
	word := "from"
	if dir == policy.Egress {
		word = "to"
	}
	rule.Comment = word + " " + strings.Join(desc, "; ")
	if len(pd) > 0 {
		rule.Comment += " ports " + strings.Join(pd, ",")
	}
	return rule, nil
}

// ipBlockSpec computes cidr minus excepts as non-overlapping prefixes.
func ipBlockSpec(b *networkingv1.IPBlock) (setSpec, error) {
	cidr, err := netip.ParsePrefix(strings.TrimSpace(b.CIDR))
	if err != nil {
		return setSpec{}, fmt.Errorf("ipBlock cidr %q: %v", b.CIDR, err)
	}
	cidr = unmapPrefix(cidr).Masked()
	var ex []netip.Prefix
	for _, s := range b.Except {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return setSpec{}, fmt.Errorf("ipBlock except %q: %v", s, err)
		}
		p = unmapPrefix(p).Masked()
		if p.Addr().Is4() != cidr.Addr().Is4() {
			return setSpec{}, fmt.Errorf("ipBlock except %q is not in the family of cidr %q", s, b.CIDR)
		}
		ex = append(ex, p)
	}
	sort.Slice(ex, func(i, j int) bool { return ex[i].String() < ex[j].String() })
	exs := make([]string, len(ex))
	for i, p := range ex {
		exs[i] = p.String()
	}
	key := "net{" + cidr.String() + "}{" + strings.Join(exs, ",") + "}"
	readable := cidr.String()
	if len(exs) > 0 {
		readable += " except " + strings.Join(exs, ",")
	}
	prefixes := SubtractPrefixes(cidr, ex)
	ms := make([]policy.Member, len(prefixes))
	for i, p := range prefixes {
		ms[i] = policy.Member{Prefix: p}
	}
	return setSpec{id: "n" + policy.Hash(key, 12), key: key, readable: "ipBlock " + readable, kind: policy.SetNet, static: ms}, nil
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		return netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p
}

// SubtractPrefixes returns cidr minus every except as a sorted list of
// non-overlapping prefixes, none of them /0 (a /0 result is split into two
// /1, which every dataplane can hold).
func SubtractPrefixes(cidr netip.Prefix, except []netip.Prefix) []netip.Prefix {
	cur := []netip.Prefix{cidr.Masked()}
	for _, e := range except {
		var next []netip.Prefix
		for _, p := range cur {
			next = append(next, subtractOne(p, e.Masked())...)
		}
		cur = next
	}
	var out []netip.Prefix
	for _, p := range cur {
		if p.Bits() == 0 {
			out = append(out, split(p)...)
		} else {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}

func subtractOne(p, e netip.Prefix) []netip.Prefix {
	if p.Addr().BitLen() != e.Addr().BitLen() || !p.Overlaps(e) {
		return []netip.Prefix{p}
	}
	if e.Bits() <= p.Bits() { // e contains p
		return nil
	}
	var out []netip.Prefix
	for _, h := range split(p) {
		out = append(out, subtractOne(h, e)...)
	}
	return out
}

// split returns the two halves of p.
func split(p netip.Prefix) []netip.Prefix {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits).Masked()
	b := lo.Addr().AsSlice()
	idx := (bits - 1) / 8
	b[idx] |= 0x80 >> ((bits - 1) % 8)
	hiAddr, _ := netip.AddrFromSlice(b)
	return []netip.Prefix{lo, netip.PrefixFrom(hiAddr, bits)}
}
