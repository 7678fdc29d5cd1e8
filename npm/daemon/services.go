package daemon

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Services and EndpointSlices are watched (read-only) for one thing: the
// pods backing a NodePort or LoadBalancer service (or one with
// externalIPs) whose externalTrafficPolicy is Cluster. A node receiving
// such traffic may DNAT it to a pod of another node and SNAT it to its own
// address (kube-proxy's masquerade), so the pod's node never sees the
// client. The engine makes those pods Remote endpoints
// (translate.Engine.SetExternalBackends): this node then decides their
// ingress by the client's address on the traffic it DNATed. See "Services"
// in npm/README.md.
const (
	kindService       = "service"
	kindEndpointSlice = "endpointslice"
)

// externallyReachable: traffic from outside the cluster reaches the
// service through any node and may be SNATed to that node's address.
func externallyReachable(s *corev1.Service) bool {
	if s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		return false // only local endpoints, the client's address kept
	}
	return s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer || len(s.Spec.ExternalIPs) > 0
}

// externalBackends computes the keys (namespace/name) of the pods backing
// externally reachable services from the informers' caches. O(services +
// endpoint slices), run once per batch that carried a Service or
// EndpointSlice event.
func (d *Daemon) externalBackends() map[string]struct{} {
	svcs := map[string]bool{}
	for _, o := range d.svcInf.GetStore().List() {
		if s, ok := o.(*corev1.Service); ok && externallyReachable(s) {
			svcs[s.Namespace+"/"+s.Name] = true
		}
	}
	out := map[string]struct{}{}
	if len(svcs) == 0 {
		return out
	}
	for _, o := range d.sliceInf.GetStore().List() {
		es, ok := o.(*discoveryv1.EndpointSlice)
		if !ok || !svcs[es.Namespace+"/"+es.Labels[discoveryv1.LabelServiceName]] {
			continue
		}
		for _, ep := range es.Endpoints {
			if r := ep.TargetRef; r != nil && r.Kind == "Pod" && r.Name != "" {
				ns := r.Namespace
				if ns == "" {
					ns = es.Namespace
				}
				out[ns+"/"+r.Name] = struct{}{}
			}
		}
	}
	return out
}

// slimService keeps what externallyReachable reads.
func slimService(obj interface{}) (interface{}, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion, UID: s.UID},
		Spec:       corev1.ServiceSpec{Type: s.Spec.Type, ExternalTrafficPolicy: s.Spec.ExternalTrafficPolicy, ExternalIPs: s.Spec.ExternalIPs},
	}, nil
}

// slimEndpointSlice keeps the service name and the endpoints' pod
// references.
func slimEndpointSlice(obj interface{}) (interface{}, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	c := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: es.Name, Namespace: es.Namespace, ResourceVersion: es.ResourceVersion, UID: es.UID,
			Labels: map[string]string{discoveryv1.LabelServiceName: es.Labels[discoveryv1.LabelServiceName]}},
		AddressType: es.AddressType,
	}
	for _, ep := range es.Endpoints {
		if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
			c.Endpoints = append(c.Endpoints, discoveryv1.Endpoint{TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ep.TargetRef.Namespace, Name: ep.TargetRef.Name}})
		}
	}
	return c, nil
}
