package daemon

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
)

// TestClusterNetworkPoliciesFromTheInformer: a ClusterNetworkPolicy from
// the typed informer puts its subjects' endpoints under it in the first
// transaction; a later one with a domainNames peer is translated failing
// closed and counted in npm_invalid_objects_total; deleting them empties
// the endpoint again. A policy's flow-log annotation (the only annotation
// the informer keeps) decides what it logs; a malformed one is counted.
func TestClusterNetworkPoliciesFromTheInformer(t *testing.T) {
	client := fake.NewSimpleClientset(ns("prod", map[string]string{"team": "a"}), pod("prod", "web", "node-a", "10.0.0.5", map[string]string{"app": "web"}))
	deny := &cnpv1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-metadata", Annotations: map[string]string{flowlog.Annotation: "deny", "unrelated": "x"}}, Spec: cnpv1.ClusterNetworkPolicySpec{
		Tier: cnpv1.AdminTier, Priority: 5, Subject: cnpv1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
		Egress: []cnpv1.ClusterNetworkPolicyEgressRule{{Action: cnpv1.ClusterNetworkPolicyRuleActionDeny, To: []cnpv1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1.CIDR{"169.254.169.254/32"}}}}},
	}}
	cnps := cnpfake.NewSimpleClientset(deny)
	cfg := testConfig()
	cfg.SocketPath = filepath.Join(t.TempDir(), "run", "npm.sock")
	dp := &recordingDataplane{}
	d, err := New(Options{Config: cfg, Logger: zaptest.NewLogger(t), Client: client, ClusterPolicyClient: cnps, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "ready", d.Ready)
	eps, applies, _ := dp.last()
	if ep := eps["prod/web"]; applies != 1 || len(ep.Egress) != 1 || ep.Egress[0] != policy.ClusterPolicyKey("deny-metadata") || len(ep.Ingress) != 0 {
		t.Fatalf("first transaction (%d): want prod/web under the Admin policy for egress only, got %+v", applies, eps)
	}
	if p := d.view.Load().state.Policies[policy.ClusterPolicyKey("deny-metadata")]; p == nil || p.FlowLog != policy.FlowLogDeny {
		t.Errorf("deny-metadata annotated deny: programmed %+v, want flow log deny", p)
	}
	if obj, ok, _ := d.cnpInf.GetStore().GetByKey("deny-metadata"); !ok || len(obj.(*cnpv1.ClusterNetworkPolicy).Annotations) != 1 {
		t.Errorf("the informer keeps %+v, want only the %s annotation", obj, flowlog.Annotation)
	}
	fqdn := &cnpv1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fqdn", Annotations: map[string]string{flowlog.Annotation: "sometimes"}}, Spec: cnpv1.ClusterNetworkPolicySpec{
		Tier: cnpv1.BaselineTier, Priority: 1, Subject: cnpv1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
		Egress: []cnpv1.ClusterNetworkPolicyEgressRule{{Action: cnpv1.ClusterNetworkPolicyRuleActionAccept, To: []cnpv1.ClusterNetworkPolicyEgressPeer{{DomainNames: []cnpv1.DomainName{"example.com"}}}}},
	}}
	if _, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, fqdn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fqdn policy counted invalid", func() bool {
		return testutil.ToFloat64(d.metrics.invalidResources.WithLabelValues(kindClusterPolicy)) >= 1
	})
	eventually(t, "the malformed flow-log annotation counted", func() bool {
		return testutil.ToFloat64(d.metrics.invalidAnnotations) >= 1
	})
	for _, n := range []string{"deny-metadata", "fqdn"} {
		if err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "endpoint released", func() bool { eps, _, _ := dp.last(); _, ok := eps["prod/web"]; return !ok })
}
