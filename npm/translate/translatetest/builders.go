package translatetest

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Builders of the Kubernetes objects that the tests of the translator and
// of every dataplane write by hand.

// CPort is a named container port.
func CPort(name string, proto corev1.Protocol, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, Protocol: proto, ContainerPort: port}
}

// Pod is a running pod on node with the given IPs (the first is PodIP)
// and one container declaring ports.
func Pod(ns, name, node string, lbls map[string]string, ips []string, ports ...corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls}}
	p.Spec.NodeName = node
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: ports}}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	p.Status.Phase = corev1.PodRunning
	return p
}

// Namespace is a namespace with labels.
func Namespace(name string, lbls map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
}

// Labels is a matchLabels selector of key, value pairs.
func Labels(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

// Expr is a selector of one match expression.
func Expr(key string, op metav1.LabelSelectorOperator, vals ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: vals}}}
}

// TCP is a numeric policy port without protocol (TCP by default).
func TCP(port int) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Port: &p}
}

// ProtoPort is a policy port of protocol proto; port 0 means no port (any),
// end 0 no endPort.
func ProtoPort(proto corev1.Protocol, port, end int) networkingv1.NetworkPolicyPort {
	pp := networkingv1.NetworkPolicyPort{Protocol: &proto}
	if port != 0 {
		p := intstr.FromInt32(int32(port))
		pp.Port = &p
	}
	if end != 0 {
		e := int32(end)
		pp.EndPort = &e
	}
	return pp
}

// Named is a named policy port; proto "" leaves the protocol unset.
func Named(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	pp := networkingv1.NetworkPolicyPort{Port: &p}
	if proto != "" {
		pp.Protocol = &proto
	}
	return pp
}

// Policy is a NetworkPolicy.
func Policy(ns, name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

// Policy types.
var (
	IngressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	EgressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	BothTypes   = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)
