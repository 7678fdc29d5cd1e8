package daemon

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

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

func TestPodsByIP(t *testing.T) {
	x := newPodsByIP()
	h := x.handler()
	slim := func(name, ip string, mut func(*corev1.Pod)) *cachedPod {
		p := pod("prod", name, "node-a", ip, nil)
		if mut != nil {
			mut(p)
		}
		c, _ := slimPodFor("node-a")(p)
		return c.(*cachedPod)
	}
	want := func(ip, name string) {
		t.Helper()
		got, ok := x.lookup(netip.MustParseAddr(ip))
		if name == "" && ok || name != "" && got != "prod/"+name {
			t.Errorf("%s: %q, %v; want %q", ip, got, ok, name)
		}
	}
	a := slim("a", "10.0.0.1", func(p *corev1.Pod) { p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "fd00::1"}) })
	h.OnAdd(a, true)
	want("10.0.0.1", "a")
	want("fd00::1", "a")
	want("::ffff:10.0.0.1", "a") // v4-mapped, as a dual-stack socket reports it
	// a moves to a new address; b takes a's old one; a's late delete
	// leaves b's.
	a2 := slim("a", "10.0.0.2", nil)
	h.OnUpdate(a, a2)
	want("10.0.0.1", "")
	want("fd00::1", "")
	want("10.0.0.2", "a")
	b := slim("b", "10.0.0.2", nil)
	h.OnAdd(b, false)
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "prod/a", Obj: a2})
	want("10.0.0.2", "b")
	h.OnAdd(slim("host", "10.0.0.9", func(p *corev1.Pod) { p.Spec.HostNetwork = true }), false)
	want("10.0.0.9", "") // a host-network pod's address is its node's
	h.OnDelete(b)
	want("10.0.0.2", "")
	if len(x.m) != 0 {
		t.Errorf("entries left after every pod was deleted: %v", x.m)
	}
}
