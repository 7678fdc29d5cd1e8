package daemon

import (
	"context"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestExternalBackendsFollowServices: a pod of another node backing a
// NodePort service with externalTrafficPolicy Cluster becomes a Remote
// endpoint of this node (ingress only); it stops being one when the
// service turns to Local, when its slice no longer lists it, and a
// ClusterIP service never makes one.
func TestExternalBackendsFollowServices(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080}}}}
	slice := func(pods ...string) *discoveryv1.EndpointSlice {
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web-x", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4}
		for _, p := range pods {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.1.1"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "a", Name: p}})
		}
		return es
	}
	ingress := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}}
	client := fake.NewSimpleClientset(ns("a", nil),
		pod("a", "far", "node-b", "10.1.1.1", map[string]string{"app": "web"}),
		pod("a", "other", "node-b", "10.1.1.2", map[string]string{"app": "web"}),
		ingress, svc, slice("far"))
	dp := &recordingDataplane{}
	h := start(t, client, dp)
	remote := func(want bool) func() bool {
		return func() bool {
			eps, _, _ := dp.last()
			ep, ok := eps["a/far"]
			if !want {
				return eps != nil && !ok
			}
			return ok && ep.Remote && len(ep.Ingress) == 1 && len(ep.Egress) == 0
		}
	}
	eventually(t, "a/far (node-b, backing a NodePort with eTP Cluster) a Remote endpoint with ingress only", remote(true))
	if eps, _, _ := dp.last(); eps["a/other"].Name != "" {
		t.Errorf("a/other backs no service but is an endpoint: %+v", eps["a/other"])
	}
	ctx := context.Background()
	cs := h.client.(*fake.Clientset)
	local := svc.DeepCopy()
	local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if _, err := cs.CoreV1().Services("a").Update(ctx, local, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no Remote endpoint once the service is externalTrafficPolicy Local", remote(false))
	if _, err := cs.CoreV1().Services("a").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a/far Remote again", remote(true))
	if _, err := cs.DiscoveryV1().EndpointSlices("a").Update(ctx, slice("gone"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no Remote endpoint once the slice no longer lists a/far", remote(false))
	clusterIP := svc.DeepCopy()
	clusterIP.Spec.Type = corev1.ServiceTypeClusterIP
	if _, err := cs.CoreV1().Services("a").Update(ctx, clusterIP, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("a").Update(ctx, slice("far"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a ClusterIP service makes no Remote endpoint", func() bool {
		st := h.d.Object("endpointslice/a/web-x")
		eps, _, _ := dp.last()
		_, ok := eps["a/far"]
		return st.Present && !st.Pending && !ok
	})
	// The local socket answers for Services and EndpointSlices as for the
	// other kinds: a caller waits on the slice's version being enforced.
	for target, want := range map[string]string{
		"/status?object=endpointslice/a/web-x": `"present":true`,
		"/status?object=service/a/web":         `"present":true`,
		"/status?object=service/a/nope":        `"present":false`,
	} {
		if code, body := h.getLocal(t, target); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("socket GET %s = %d %q, want 200 saying %s", target, code, body, want)
		}
	}
	if code, body := h.getLocal(t, "/status?object=endpointslice//web-x"); code != http.StatusBadRequest || !strings.Contains(body, "needs the namespace") {
		t.Errorf("an endpointslice without namespace = %d %q, want 400", code, body)
	}
}
