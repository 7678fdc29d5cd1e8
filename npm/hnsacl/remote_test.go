package hnsacl

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestRemoteEndpointsProgramNothing: a Remote endpoint (a pod of another
// node backing a NodePort/LoadBalancer service) gets no ACLs here, even
// if an HNS endpoint had its address; the same endpoint as a local one
// does (so the check can fail).
func TestRemoteEndpointsProgramNothing(t *testing.T) {
	web := mkPod("a", "web", map[string]string{"app": "web"}, []string{"10.0.0.1"})
	f := NewFake()
	addEndpoints(f, web)
	d, _ := newObserved(t, f, Options{})
	st := translateAll([]*corev1.Pod{web}, []*corev1.Namespace{mkNS("a", nil)},
		[]*networkingv1.NetworkPolicy{mkPolicy("a", "deny", sel("app", "web"), []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, nil, nil)})
	ep := st.Endpoints["a/web"]
	if ep == nil {
		t.Fatal("a/web is no endpoint")
	}
	ep.Remote = true
	apply(t, d, st, nil)
	if acls := f.ACLs(epID(web)); len(acls) != 0 {
		t.Errorf("a Remote endpoint got %d ACLs: %v", len(acls), acls)
	}
	ep.Remote = false
	apply(t, d, st, nil)
	if acls := f.ACLs(epID(web)); len(acls) == 0 {
		t.Errorf("the same endpoint as a local one got no ACLs")
	}
}
