package hnsacl

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRuleCountIsTheProgrammedACLs: RuleCount (the npm_rules gauge) is the
// number of NPM ACLs on the HNS endpoints, after programming and after a
// policy is removed.
func TestRuleCountIsTheProgrammedACLs(t *testing.T) {
	pods, nss := tableWorld()
	f := NewFake()
	addEndpoints(f, pods...)
	d, _ := newObserved(t, f, Options{})
	count := func() int {
		n := 0
		for _, ep := range f.EndpointIDs() {
			n += len(f.ACLs(ep))
		}
		return n
	}
	all := &metav1.LabelSelector{}
	pols := []*networkingv1.NetworkPolicy{
		mkPolicy("default", "deny", all, ingressOnly, nil, nil),
		mkPolicy("other", "web", sel("app", "web"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(nil, tcp(80))}, nil),
	}
	apply(t, d, translateAll(pods, nss, pols), nil)
	if n := count(); n < 3 || d.RuleCount() != n {
		t.Fatalf("RuleCount %d, the fake holds %d ACLs (want ≥ 3)", d.RuleCount(), n)
	}
	apply(t, d, translateAll(pods, nss, pols[1:]), nil)
	if n := count(); d.RuleCount() != n || n == 0 {
		t.Fatalf("after removing a policy: RuleCount %d, the fake holds %d ACLs", d.RuleCount(), n)
	}
	apply(t, d, translateAll(pods, nss, nil), nil)
	if d.RuleCount() != 0 || count() != 0 {
		t.Fatalf("without policies: RuleCount %d, fake %d", d.RuleCount(), count())
	}
}
