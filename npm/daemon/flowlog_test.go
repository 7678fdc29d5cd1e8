package daemon

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
)

// TestFlowLogAnnotation: the namespace annotation reaches the policies the
// dataplane programs (through the informer's slim namespace); a malformed
// one is a warning and npm_flow_log_invalid_annotations_total, and the
// namespace falls back to flowLog.default.
func TestFlowLogAnnotation(t *testing.T) {
	n := ns("prod", nil)
	n.Annotations = map[string]string{flowlog.Annotation: "deny", "unrelated": "x"}
	client := fake.NewSimpleClientset(n, pod("prod", "web", "node-a", "10.0.0.5", nil), denyAll("prod"))
	cfg := testConfig()
	cfg.FlowLog.Default = "all"
	h := startWith(t, cfg, client, &recordingDataplane{})
	eventually(t, "ready", h.d.Ready)
	mode := func() policy.FlowLog {
		if p := h.d.view.Load().state.Policies["prod/deny-all"]; p != nil {
			return p.FlowLog
		}
		return 255
	}
	eventually(t, "deny-all logs denies", func() bool { return mode() == policy.FlowLogDeny })
	n.Annotations[flowlog.Annotation] = "sometimes"
	if _, err := client.CoreV1().Namespaces().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "malformed annotation: back to the default (all)", func() bool { return mode() == policy.FlowLogAll })
	if _, metrics := get(t, "http://"+h.addr+"/metrics"); !strings.Contains(metrics, "\nnpm_flow_log_invalid_annotations_total 1\n") {
		t.Errorf("/metrics lacks npm_flow_log_invalid_annotations_total 1")
	}
	if obj, ok, _ := h.d.nsInf.GetStore().GetByKey("prod"); ok {
		if a := obj.(interface{ GetAnnotations() map[string]string }).GetAnnotations(); len(a) != 1 {
			t.Errorf("the informer keeps annotations %v, want only %s", a, flowlog.Annotation)
		}
	}
}
