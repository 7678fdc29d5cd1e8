package translatetest

import (
	"fmt"
	"math/rand"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// ClusterConfig shapes random ClusterNetworkPolicies.
type ClusterConfig struct {
	Policies int      // max ClusterNetworkPolicies
	Networks []string // candidate CIDRs of egress networks peers; none: no networks peers
}

// RandomCluster returns up to c.Policies random ClusterNetworkPolicies over
// the label vocabulary of Random's worlds: both tiers, priorities drawn
// from a small range (so ties happen), every action, namespaces and pods
// subjects and peers, networks peers when c.Networks is set, and
// protocols with numbers, ranges, any port and named ports.
func RandomCluster(r *rand.Rand, c ClusterConfig) []*cnpv1.ClusterNetworkPolicy {
	var out []*cnpv1.ClusterNetworkPolicy
	n := r.Intn(c.Policies + 1)
	for i := 0; i < n; i++ {
		p := &cnpv1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp%d", i)}}
		p.Spec.Tier = pick(r, cnpv1.AdminTier, cnpv1.BaselineTier)
		p.Spec.Priority = int32(r.Intn(4))
		if r.Intn(2) == 0 {
			p.Spec.Subject.Namespaces = randSelector(r, nsKeys)
		} else {
			p.Spec.Subject.Pods = &cnpv1.NamespacedPod{NamespaceSelector: *randSelector(r, nsKeys), PodSelector: *randSelector(r, podKeys)}
		}
		for j := 0; j < r.Intn(3); j++ {
			rule := cnpv1.ClusterNetworkPolicyIngressRule{Name: fmt.Sprintf("in%d", j), Action: randAction(r), Protocols: randProtocols(r)}
			for k := 0; k < 1+r.Intn(2); k++ {
				ns, pods := randClusterPeer(r)
				rule.From = append(rule.From, cnpv1.ClusterNetworkPolicyIngressPeer{Namespaces: ns, Pods: pods})
			}
			p.Spec.Ingress = append(p.Spec.Ingress, rule)
		}
		for j := 0; j < r.Intn(3); j++ {
			rule := cnpv1.ClusterNetworkPolicyEgressRule{Name: fmt.Sprintf("eg%d", j), Action: randAction(r), Protocols: randProtocols(r)}
			for k := 0; k < 1+r.Intn(2); k++ {
				if len(c.Networks) > 0 && r.Intn(4) == 0 {
					rule.To = append(rule.To, cnpv1.ClusterNetworkPolicyEgressPeer{Networks: []cnpv1.CIDR{cnpv1.CIDR(pick(r, c.Networks...))}})
					continue
				}
				ns, pods := randClusterPeer(r)
				rule.To = append(rule.To, cnpv1.ClusterNetworkPolicyEgressPeer{Namespaces: ns, Pods: pods})
			}
			p.Spec.Egress = append(p.Spec.Egress, rule)
		}
		out = append(out, p)
	}
	return out
}

func randAction(r *rand.Rand) cnpv1.ClusterNetworkPolicyRuleAction {
	return pick(r, cnpv1.ClusterNetworkPolicyRuleActionAccept, cnpv1.ClusterNetworkPolicyRuleActionDeny, cnpv1.ClusterNetworkPolicyRuleActionPass)
}

func randClusterPeer(r *rand.Rand) (*metav1.LabelSelector, *cnpv1.NamespacedPod) {
	if r.Intn(3) == 0 {
		return randSelector(r, nsKeys), nil
	}
	return nil, &cnpv1.NamespacedPod{NamespaceSelector: *randSelector(r, nsKeys), PodSelector: *randSelector(r, podKeys)}
}

func randProtocols(r *rand.Rand) []cnpv1.ClusterNetworkPolicyProtocol {
	if r.Intn(3) == 0 {
		return nil
	}
	var out []cnpv1.ClusterNetworkPolicyProtocol
	for i := 0; i < 1+r.Intn(2); i++ {
		var p cnpv1.ClusterNetworkPolicyProtocol
		switch r.Intn(7) {
		case 0:
			p.TCP = &cnpv1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1.Port{Number: 80}}
		case 1:
			p.TCP = &cnpv1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1.Port{Range: &cnpv1.PortRange{Start: 79, End: 80}}}
		case 2:
			p.TCP = &cnpv1.ClusterNetworkPolicyProtocolTCP{}
		case 3:
			p.UDP = &cnpv1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &cnpv1.Port{Number: 53}}
		case 4:
			p.SCTP = &cnpv1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: &cnpv1.Port{Number: 80}}
		case 5:
			p.DestinationNamedPort = "http"
		case 6:
			p.DestinationNamedPort = "dns"
		}
		out = append(out, p)
	}
	return out
}
