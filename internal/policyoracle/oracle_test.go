package policyoracle

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func pod(ns, name, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "serve-80-tcp", ContainerPort: 80}}}}},
		Status:     corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func TestNotInSelectsPodsWithoutTheLabel(t *testing.T) {
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}}
	server := pod("x", "server", "10.0.0.1", map[string]string{"app": "server"})
	unlabeled := pod("x", "unlabeled", "10.0.0.2", nil)
	blue := pod("x", "blue", "10.0.0.3", map[string]string{"color": "blue"})
	red := pod("x", "red", "10.0.0.4", map[string]string{"color": "red"})
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "not-red"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "color", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"red"}}}},
			}}}},
		},
	}
	o := New(nss, []*corev1.Pod{server, unlabeled, blue, red}, []*networkingv1.NetworkPolicy{pol})
	cases := []struct {
		src  string
		want bool
	}{
		{"10.0.0.2", true}, // no color label: Kubernetes selects it (cyclonus alone would not)
		{"10.0.0.3", true},
		{"10.0.0.4", false},
		{"192.168.1.1", false}, // off-cluster: a pod selector never matches it
	}
	for _, tc := range cases {
		if got := o.Allowed(tc.src, "10.0.0.1", corev1.ProtocolTCP, 80); got != tc.want {
			t.Errorf("%s -> server: got %v want %v", tc.src, got, tc.want)
		}
	}
	// Named ports resolve per destination pod and protocol.
	named := pol.DeepCopy()
	named.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "serve-80-tcp"}}}
	o = New(nss, []*corev1.Pod{server, blue}, []*networkingv1.NetworkPolicy{named})
	if !o.Allowed("10.0.0.3", "10.0.0.1", corev1.ProtocolTCP, 80) || o.Allowed("10.0.0.3", "10.0.0.1", corev1.ProtocolTCP, 81) {
		t.Error("named port serve-80-tcp must allow TCP 80 only")
	}
}
