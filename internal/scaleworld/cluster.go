package scaleworld

import (
	"fmt"
	"math/rand"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ClusterConfig sizes a whole cluster as one node's agent sees it: Node
// objects, pods spread over them, namespaces and policies of realistic
// shapes, all generated from Seed (the same seed, the same world).
type ClusterConfig struct {
	Seed                              int64
	Nodes, Pods, Namespaces, Policies int
	// Node is the real node; it gets no generated pods (its pods are
	// plumbed by the caller), the others get Pods/Nodes each.
	Node string
}

// Limits is Kubernetes' supported maximum: 5,000 nodes, 150,000 pods;
// with 2,000 namespaces and 10,000 policies.
func Limits(node string) ClusterConfig {
	return ClusterConfig{Seed: 1, Nodes: 5000, Pods: 150000, Namespaces: 2000, Policies: 10000, Node: node}
}

// NodeName is the name of generated node i.
func NodeName(i int) string { return fmt.Sprintf("node-%d", i) }

// AppsPerNamespace: workloads per namespace; a pod's app label is one of them.
const AppsPerNamespace = 8

// ClusterPodIP is the address of generated pod i: 10.64.0.0/10, so it
// never collides with a node's own pod range.
func ClusterPodIP(i int) string {
	return fmt.Sprintf("10.%d.%d.%d", 64+i/64516%64, (i/254)%254, i%254+1)
}

// ClusterPod is generated pod i of the world (also used by churn, with i
// beyond the world's pods).
func ClusterPod(c ClusterConfig, rng *rand.Rand, i int) *corev1.Pod {
	ns := rng.Intn(c.Namespaces)
	app := rng.Intn(AppsPerNamespace)
	p := Pod(fmt.Sprintf("ns%d", ns), fmt.Sprintf("pod%d", i), ClusterPodIP(i), map[string]string{
		"app": fmt.Sprintf("app-%d", app), "tier": []string{"web", "api", "db"}[app%3],
		"pod-template-hash": fmt.Sprintf("%08x", rng.Uint32()),
	})
	p.Spec.NodeName = NodeName(1 + i%max(c.Nodes-1, 1))
	return p
}

// BuildCluster makes the world: namespaces labelled team/env, pods with
// app/tier/pod-template-hash labels and a named port, and policies: most
// select pods of their namespace from pods of their namespace (numbered or
// named ports), some deny by default or limit egress, a few percent peer
// with other namespaces by namespaceSelector, a few allow ipBlocks.
func BuildCluster(c ClusterConfig) *World {
	rng := rand.New(rand.NewSource(c.Seed))
	w := &World{}
	for i := 0; i < c.Nodes; i++ {
		name := NodeName(i)
		if i == 0 && c.Node != "" {
			continue // the real node registers itself
		}
		w.Nodes = append(w.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}}})
	}
	for i := 0; i < c.Namespaces; i++ {
		env := []string{"prod", "staging", "dev"}[i%3]
		w.Namespaces = append(w.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns%d", i),
			Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%50), "env": env, "kubernetes.io/metadata.name": fmt.Sprintf("ns%d", i)}}})
	}
	for i := 0; i < c.Pods; i++ {
		w.Pods = append(w.Pods, ClusterPod(c, rng, i))
	}
	for i := 0; i < c.Policies; i++ {
		w.Policies = append(w.Policies, ClusterPolicy(rng, fmt.Sprintf("ns%d", rng.Intn(c.Namespaces)), fmt.Sprintf("np%d", i)))
	}
	return w
}

// ClusterPolicy is one policy of a realistic mix (see BuildCluster).
func ClusterPolicy(rng *rand.Rand, ns, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	app := func() string { return fmt.Sprintf("app-%d", rng.Intn(AppsPerNamespace)) }
	http := intstr.FromString("http")
	udp := corev1.ProtocolUDP
	switch r := rng.Intn(100); {
	case r < 55: // app from app, numbered port
		np.Spec.PodSelector = *sel("app", app())
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", app())}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: port(8080)}},
		}}
	case r < 75: // tier from tiers, named port
		np.Spec.PodSelector = *sel("tier", "db")
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"api", "web"}}}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: &http}},
		}}
	case r < 85: // default deny ingress
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case r < 95: // egress within the namespace and DNS
		np.Spec.PodSelector = *sel("app", app())
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}},
			{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: port(53)}}},
		}
	case r < 98: // from another team's namespaces
		np.Spec.PodSelector = *sel("app", app())
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", fmt.Sprintf("team-%d", rng.Intn(50))), PodSelector: sel("tier", "api")}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: &http}},
		}}
	default: // from outside the cluster
		np.Spec.PodSelector = *sel("tier", "web")
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}}}},
		}}
	}
	return np
}
