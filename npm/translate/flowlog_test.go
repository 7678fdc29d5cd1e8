package translate

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
)

// TestFlowLogFollowsNamespace: every policy carries its namespace's
// flow-log mode (annotation, else the default); a change of the annotation
// re-issues the namespace's policies as changed and no other; a malformed
// one or a deleted namespace falls back to the default.
func TestFlowLogFollowsNamespace(t *testing.T) {
	e := NewEngine(Options{NodeName: "n1", FlowLog: policy.FlowLogDeny})
	e.UpsertPolicy(np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel()}))
	e.UpsertPolicy(np("b", "q", networkingv1.NetworkPolicySpec{PodSelector: *sel()}))
	e.TakeChanges()
	want := func(step string, a, b policy.FlowLog, changed ...string) {
		t.Helper()
		st := e.State()
		if got := st.Policies["a/p"].FlowLog; got != a {
			t.Errorf("%s: a/p flow log %v, want %v", step, got, a)
		}
		if got := st.Policies["b/q"].FlowLog; got != b {
			t.Errorf("%s: b/q flow log %v, want %v", step, got, b)
		}
		ch := e.TakeChanges()
		if len(ch.Policies) != len(changed) {
			t.Errorf("%s: changed policies %v, want %v", step, ch.Policies, changed)
		}
		for _, k := range changed {
			if _, ok := ch.Policies[k]; !ok {
				t.Errorf("%s: %s not in changes %v", step, k, ch.Policies)
			}
		}
	}
	want("default", policy.FlowLogDeny, policy.FlowLogDeny)
	ns := mkNS("a", nil)
	ns.Annotations = map[string]string{flowlog.Annotation: "allow,deny"}
	e.UpsertNamespace(ns)
	want("annotated", policy.FlowLogAll, policy.FlowLogDeny, "a/p")
	e.UpsertPolicy(np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel("x", "y")}))
	want("policy updated in annotated namespace", policy.FlowLogAll, policy.FlowLogDeny, "a/p")
	ns.Annotations[flowlog.Annotation] = "sometimes"
	e.UpsertNamespace(ns)
	want("malformed", policy.FlowLogDeny, policy.FlowLogDeny, "a/p")
	ns.Annotations[flowlog.Annotation] = "none"
	e.UpsertNamespace(ns)
	want("none", policy.FlowLogNone, policy.FlowLogDeny, "a/p")
	e.DeleteNamespace("a")
	want("namespace deleted", policy.FlowLogDeny, policy.FlowLogDeny, "a/p")
}

// TestFlowLogFollowsClusterPolicyAnnotation: a ClusterNetworkPolicy logs
// by its own annotation (its administrator's choice), else by the default;
// a malformed one falls back to the default.
func TestFlowLogFollowsClusterPolicyAnnotation(t *testing.T) {
	e := NewEngine(Options{NodeName: "n1", FlowLog: policy.FlowLogDeny})
	cnp := &cnpv1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "guard"},
		Spec: cnpv1.ClusterNetworkPolicySpec{
			Tier: cnpv1.AdminTier, Priority: 10,
			Subject: cnpv1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
		},
	}
	for _, c := range []struct {
		annotation string // "-": none
		want       policy.FlowLog
	}{
		{"-", policy.FlowLogDeny},
		{"all", policy.FlowLogAll},
		{"allow", policy.FlowLogAllow},
		{"none", policy.FlowLogNone},
		{"sometimes", policy.FlowLogDeny},
	} {
		p := cnp.DeepCopy()
		if c.annotation != "-" {
			p.Annotations = map[string]string{flowlog.Annotation: c.annotation}
		}
		e.UpsertClusterPolicy(p)
		if got := e.State().Policies[policy.ClusterPolicyKey("guard")].FlowLog; got != c.want {
			t.Errorf("annotation %q: flow log %v, want %v", c.annotation, got, c.want)
		}
	}
}
