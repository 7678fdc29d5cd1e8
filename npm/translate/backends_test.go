package translate

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// TestExternalBackendsAreRemoteEndpoints: a pod of another node that backs
// a NodePort/LoadBalancer service becomes a Remote endpoint with its
// ingress policies only (its egress is its node's), follows policy and
// label changes, and goes when it stops being a backend; a local backend
// stays an ordinary endpoint.
func TestExternalBackendsAreRemoteEndpoints(t *testing.T) {
	e := NewEngine(Options{NodeName: "n1"})
	for _, o := range world().Namespaces {
		e.UpsertNamespace(o)
	}
	for _, p := range world().Pods {
		e.UpsertPod(p)
	}
	e.UpsertPolicy(np("b", "in", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"), PolicyTypes: pBoth}))
	if ep := e.State().Endpoints["b/web"]; ep != nil {
		t.Fatalf("b/web (node n2) is an endpoint before it backs a service: %+v", ep)
	}
	e.TakeChanges()
	e.SetExternalBackends(map[string]struct{}{"b/web": {}, "a/web": {}, "b/gone": {}})
	ep := e.State().Endpoints["b/web"]
	if ep == nil || !ep.Remote || len(ep.Ingress) != 1 || ep.Ingress[0] != "b/in" || len(ep.Egress) != 0 {
		t.Fatalf("b/web as an external backend: %+v, want Remote, ingress [b/in], no egress", ep)
	}
	if ch := e.TakeChanges(); len(ch.Endpoints) != 1 {
		t.Errorf("changes %v, want only b/web", ch.Endpoints)
	}
	if a := e.State().Endpoints["a/web"]; a != nil && a.Remote {
		t.Errorf("the local a/web became Remote")
	}
	// Relabelled out of the policy's selector: no endpoint.
	e.UpsertPod(mkPod("b", "web", "n2", map[string]string{"app": "other"}, []string{"10.0.1.1"}))
	if ep := e.State().Endpoints["b/web"]; ep != nil {
		t.Errorf("b/web selected by no policy is still an endpoint: %+v", ep)
	}
	e.UpsertPod(mkPod("b", "web", "n2", map[string]string{"app": "web"}, []string{"10.0.1.1"}))
	if ep := e.State().Endpoints["b/web"]; ep == nil || !ep.Remote {
		t.Errorf("b/web selected again: %+v", ep)
	}
	// No longer a backend.
	e.SetExternalBackends(map[string]struct{}{"a/web": {}})
	if ep := e.State().Endpoints["b/web"]; ep != nil {
		t.Errorf("b/web no longer backs a service but is an endpoint: %+v", ep)
	}
	if ep := e.State().Endpoints["b/cli"]; ep != nil {
		t.Errorf("b/cli never backed a service: %+v", ep)
	}
}
