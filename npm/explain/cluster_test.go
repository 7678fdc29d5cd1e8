package explain

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// TestExplainNamesClusterNetworkPolicyAndRule: the answer names the
// deciding ClusterNetworkPolicy, its tier, priority, action and rule, and
// an Admin Pass that handed the decision to a NetworkPolicy.
func TestExplainNamesClusterNetworkPolicyAndRule(t *testing.T) {
	nss := []*corev1.Namespace{translatetest.Namespace("a", nil), translatetest.Namespace("b", nil)}
	pods := []*corev1.Pod{
		translatetest.Pod("a", "web", "node", map[string]string{"app": "web"}, []string{"10.0.0.1"}),
		translatetest.Pod("b", "cli", "node", map[string]string{"app": "cli"}, []string{"10.0.0.2"}),
	}
	tcp := func(n int32) []cnpv1.ClusterNetworkPolicyProtocol {
		return []cnpv1.ClusterNetworkPolicyProtocol{{TCP: &cnpv1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1.Port{Number: n}}}}
	}
	admin := &cnpv1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "guard"}, Spec: cnpv1.ClusterNetworkPolicySpec{
		Tier: cnpv1.AdminTier, Priority: 7, Subject: cnpv1.ClusterNetworkPolicySubject{Namespaces: translatetest.Labels(translate.NamespaceNameLabel, "a")},
		Ingress: []cnpv1.ClusterNetworkPolicyIngressRule{
			{Name: "no-81", Action: cnpv1.ClusterNetworkPolicyRuleActionDeny, From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}, Protocols: tcp(81)},
			{Name: "defer-80", Action: cnpv1.ClusterNetworkPolicyRuleActionPass, From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}, Protocols: tcp(80)},
		},
	}}
	deny := []*networkingv1.NetworkPolicy{translatetest.Policy("a", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: translatetest.IngressOnly})}
	st := translate.Translate(translate.Snapshot{Namespaces: nss, Pods: pods, Policies: deny, ClusterPolicies: []*cnpv1.ClusterNetworkPolicy{admin}},
		translate.Options{IsLocal: func(*corev1.Pod) bool { return true }})
	for _, c := range []struct {
		port  uint16
		allow bool
		want  []string
	}{
		{81, false, []string{"DENIED", "denied by ClusterNetworkPolicy/guard (Admin tier, priority 7), Deny rule: ingress rule 0 (no-81)"}},
		{80, false, []string{"DENIED", "Admin tier ClusterNetworkPolicy/guard passed it on to the NetworkPolicy tier", "denied: no rule of"}},
	} {
		resp, err := Evaluate("node", st, nil, Request{From: "10.0.0.2", To: "10.0.0.1", Port: c.port, Protocol: "TCP"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		Print(&b, resp)
		if resp.Allowed != c.allow {
			t.Errorf("port %d: allowed %v, want %v\n%s", c.port, resp.Allowed, c.allow, b.String())
		}
		for _, w := range c.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("port %d: output lacks %q:\n%s", c.port, w, b.String())
			}
		}
	}
}
