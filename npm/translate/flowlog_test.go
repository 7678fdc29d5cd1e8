package translate

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

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
