package scaleworld

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// ClusterPolicies returns n ClusterNetworkPolicies over Build's labels, of
// five shapes, priorities 0..n-1 by shape's tier: Admin egress Deny of the
// metadata address for a team's namespaces; Admin Accept of a monitoring
// team's scrapes into production; Admin Pass then Deny of database ports;
// Baseline Deny of ingress from development namespaces; Baseline egress
// Accept to one app's named port, then Deny to 10.0.0.0/8.
func ClusterPolicies(n int) []*cnpv1.ClusterNetworkPolicy {
	var out []*cnpv1.ClusterNetworkPolicy
	all := &metav1.LabelSelector{}
	tcp := func(p int32) []cnpv1.ClusterNetworkPolicyProtocol {
		return []cnpv1.ClusterNetworkPolicyProtocol{{TCP: &cnpv1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1.Port{Number: p}}}}
	}
	for i := 0; i < n; i++ {
		team := fmt.Sprintf("team-%d", i%10)
		p := &cnpv1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp%d", i)}}
		p.Spec.Priority = int32(i)
		p.Spec.Tier = cnpv1.AdminTier
		switch i % 5 {
		case 0:
			p.Spec.Subject.Namespaces = sel("team", team)
			p.Spec.Egress = []cnpv1.ClusterNetworkPolicyEgressRule{{Name: "metadata", Action: cnpv1.ClusterNetworkPolicyRuleActionDeny,
				To: []cnpv1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1.CIDR{"169.254.169.254/32"}}}}}
		case 1:
			p.Spec.Subject.Namespaces = sel("env", "prod")
			p.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "monitoring", Action: cnpv1.ClusterNetworkPolicyRuleActionAccept,
				From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: sel("team", team)}}, Protocols: tcp(9090)}}
		case 2:
			p.Spec.Subject.Pods = &cnpv1.NamespacedPod{NamespaceSelector: *sel("team", team), PodSelector: *sel("tier", "db")}
			p.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{
				{Name: "prod-to-netpol", Action: cnpv1.ClusterNetworkPolicyRuleActionPass, From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: sel("env", "prod")}}, Protocols: tcp(5432)},
				{Name: "no-db", Action: cnpv1.ClusterNetworkPolicyRuleActionDeny, From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: all}}, Protocols: tcp(5432)},
			}
		case 3:
			p.Spec.Tier = cnpv1.BaselineTier
			p.Spec.Subject.Namespaces = sel("team", team)
			p.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "no-dev", Action: cnpv1.ClusterNetworkPolicyRuleActionDeny,
				From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: sel("env", "dev")}}}}
		default:
			p.Spec.Tier = cnpv1.BaselineTier
			p.Spec.Subject.Pods = &cnpv1.NamespacedPod{NamespaceSelector: *sel("env", "prod"), PodSelector: *sel("app", fmt.Sprintf("app-%d", i%20))}
			p.Spec.Egress = []cnpv1.ClusterNetworkPolicyEgressRule{
				{Name: "next-app", Action: cnpv1.ClusterNetworkPolicyRuleActionAccept,
					To:        []cnpv1.ClusterNetworkPolicyEgressPeer{{Pods: &cnpv1.NamespacedPod{NamespaceSelector: *all, PodSelector: *sel("app", fmt.Sprintf("app-%d", (i+1)%20))}}},
					Protocols: []cnpv1.ClusterNetworkPolicyProtocol{{DestinationNamedPort: "http"}}},
				{Name: "no-internal", Action: cnpv1.ClusterNetworkPolicyRuleActionDeny, To: []cnpv1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1.CIDR{"10.0.0.0/8"}}}},
			}
		}
		out = append(out, p)
	}
	return out
}
