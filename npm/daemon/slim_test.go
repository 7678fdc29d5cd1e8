package daemon

import (
	"reflect"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"github.com/open-acn/acn/npm/translate"
)

// TestSlimPodTranslatesLikeTheFullPod: the engine's state from the cached
// pods equals its state from the full ones, for every field translation
// reads; and the cache keeps none of the rest.
func TestSlimPodTranslatesLikeTheFullPod(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	full := func(name, node, ip string, mut func(*corev1.Pod)) *corev1.Pod {
		p := pod("prod", name, node, ip, map[string]string{"app": name})
		p.Annotations = map[string]string{"big": "annotation"}
		p.ResourceVersion = "42"
		p.Labels["tier"] = "web"
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if mut != nil {
			mut(p)
		}
		return p
	}
	pods := []*corev1.Pod{
		full("web", "node-a", "10.0.0.5", nil),
		full("remote", "node-b", "10.0.1.5", nil),
		full("dual", "node-a", "10.0.0.6", func(p *corev1.Pod) {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "fd00::6"})
		}),
		full("sidecar", "node-a", "10.0.0.7", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always,
				Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}}}
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports,
				corev1.ContainerPort{ContainerPort: 9999}, corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP})
		}),
		full("host", "node-a", "10.0.0.8", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		full("done", "node-a", "10.0.0.9", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		full("pending", "node-a", "", func(p *corev1.Pod) { p.Status.PodIPs = nil }),
	}
	httpPort, metricsPort, dnsPort := intstr.FromString("http"), intstr.FromString("metrics"), intstr.FromString("dns")
	udp := corev1.ProtocolUDP
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "named"},
		Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &httpPort}, {Port: &metricsPort}, {Protocol: &udp, Port: &dnsPort}},
			}},
		},
	}
	fromFull := translate.NewEngine(translate.Options{NodeName: "node-a"})
	fromSlim := translate.NewEngine(translate.Options{NodeName: "node-a"})
	for _, e := range []*translate.Engine{fromFull, fromSlim} {
		e.UpsertNamespace(ns("prod", nil))
		e.UpsertPolicy(np)
	}
	for _, p := range pods {
		fromFull.UpsertPod(p)
		obj, err := slimPodFor("node-a")(p)
		if err != nil {
			t.Fatal(err)
		}
		c := obj.(*cachedPod)
		if m := c.GetObjectMeta(); m.GetName() != p.Name || m.GetNamespace() != p.Namespace || m.GetResourceVersion() != p.ResourceVersion {
			t.Errorf("%s: cached pod's metadata %+v, want the pod's name, namespace and resourceVersion", p.Name, m)
		}
		if key, err := cache.MetaNamespaceKeyFunc(c); err != nil || key != p.Namespace+"/"+p.Name {
			t.Errorf("%s: informer key %q, %v", p.Name, key, err)
		}
		fromSlim.UpsertPodLabels(c.podWithoutLabels("node-a"), c.labels)
		if !reflect.DeepEqual(c.pod("node-a").Labels, p.Labels) {
			t.Errorf("%s: cached labels %v, want %v", p.Name, c.pod("node-a").Labels, p.Labels)
		}
	}
	if !reflect.DeepEqual(fromFull.State(), fromSlim.State()) {
		t.Fatalf("translation of the cached pods differs from the full ones:\nfull %+v\nslim %+v", fromFull.State(), fromSlim.State())
	}
	if fromFull.Stats().Pods != 4 {
		t.Fatalf("%d pods translated, want 4 (host-network, finished and IP-less pods are not)", fromFull.Stats().Pods)
	}
}

// TestCachedPodStaysSmall: one cachedPod per pod of the cluster; 112
// bytes is its allocation size class (see the type's comment), and pods
// with the same named ports share one list of them.
func TestCachedPodStaysSmall(t *testing.T) {
	if sz := unsafe.Sizeof(cachedPod{}); sz > 112 {
		t.Errorf("cachedPod is %d bytes, over 112", sz)
	}
	slim := slimPodFor("node-a")
	a, _ := slim(pod("prod", "a", "node-a", "10.0.0.1", map[string]string{"app": "a"}))
	b, _ := slim(pod("prod", "b", "node-b", "10.0.0.2", map[string]string{"app": "b"}))
	pa, pb := a.(*cachedPod), b.(*cachedPod)
	if pa.ports == nil || pa.ports != pb.ports {
		t.Errorf("pods with the same named ports keep separate lists: %p %p", pa.ports, pb.ports)
	}
	if !pa.onNode || pb.onNode {
		t.Errorf("onNode: a (node-a) %v, b (node-b) %v", pa.onNode, pb.onNode)
	}
}

func TestSlimNamespaceAndPolicyDropWhatTranslationNeverReads(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "n", Namespace: "prod", ResourceVersion: "7", Labels: map[string]string{"team": "a"},
		Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}, UID: "u", Finalizers: []string{"f"}}
	want := metav1.ObjectMeta{Name: "n", Namespace: "prod", ResourceVersion: "7", Labels: map[string]string{"team": "a"}}
	n, _ := slimNamespace(&corev1.Namespace{ObjectMeta: meta, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}})
	if got := n.(*corev1.Namespace); !reflect.DeepEqual(got.ObjectMeta, want) || got.Status.Phase != "" {
		t.Errorf("namespace kept %+v", got)
	}
	spec := networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}
	p, _ := slimPolicy(&networkingv1.NetworkPolicy{ObjectMeta: meta, Spec: spec})
	if got := p.(*networkingv1.NetworkPolicy); !reflect.DeepEqual(got.ObjectMeta, want) || !reflect.DeepEqual(got.Spec, spec) {
		t.Errorf("policy kept %+v", got)
	}
	// Tombstones pass through untouched.
	tomb := cacheTombstone()
	for _, f := range []func(interface{}) (interface{}, error){slimPodFor("node-a"), slimNamespace, slimPolicy} {
		if got, _ := f(tomb); !reflect.DeepEqual(got, tomb) {
			t.Errorf("tombstone changed: %+v", got)
		}
	}
}

func cacheTombstone() interface{} {
	return cache.DeletedFinalStateUnknown{Key: "prod/x"}
}
