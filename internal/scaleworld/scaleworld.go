// Package scaleworld builds the cluster every scale benchmark uses, so the
// numbers of the dataplanes and of the daemon describe the same world:
// pods spread over namespaces with app (20 per namespace), tier and a named
// port; ten policy shapes per namespace covering pod and namespace
// selectors, expressions, named ports, port ranges, ipBlock with except,
// egress and default deny.
package scaleworld

import (
	"fmt"
	"math/rand"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Config sizes the world.
type Config struct {
	Pods, Namespaces, Policies int
	// Local pods get spec.nodeName = Node; the others "other".
	Local int
	Node  string
	// RandomLocal picks the Local pods as a random sample (fixed seed, so
	// every run has the same world), spread over namespaces and apps;
	// otherwise every (Pods/Local)-th pod is local.
	RandomLocal bool
}

// Default is the issues' reference scale: 10,000 pods, 100 namespaces,
// 1,000 policies, 250 pods on the benchmark node.
func Default(node string) Config {
	return Config{Pods: 10000, Namespaces: 100, Policies: 1000, Local: 250, Node: node}
}

// World is the objects of the cluster.
type World struct {
	Nodes      []*corev1.Node // only in a Cluster world
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
}

// PodIP is the address of pod i (10.128.0.0/9, 250 per /24).
func PodIP(i int) string { return fmt.Sprintf("10.%d.%d.%d", 128+i/65000, (i/250)%256, i%250+2) }

// Build makes the world.
func Build(c Config) *World {
	w := &World{}
	tiers := []string{"web", "api", "db"}
	for i := 0; i < c.Namespaces; i++ {
		env := "dev"
		if i%2 == 0 {
			env = "prod"
		}
		w.Namespaces = append(w.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns%d", i),
			Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%10), "env": env}}})
	}
	every := c.Pods / max(c.Local, 1)
	isLocal := func(i int) bool { return c.Local > 0 && (every <= 1 || i%every == 0) }
	if c.RandomLocal {
		sample := map[int]bool{}
		for _, i := range rand.New(rand.NewSource(42)).Perm(c.Pods)[:min(c.Local, c.Pods)] {
			sample[i] = true
		}
		isLocal = func(i int) bool { return sample[i] }
	}
	for i := 0; i < c.Pods; i++ {
		p := Pod(fmt.Sprintf("ns%d", i%c.Namespaces), fmt.Sprintf("pod%d", i), PodIP(i),
			map[string]string{"app": fmt.Sprintf("app-%d", (i/c.Namespaces)%20), "tier": tiers[i%3]})
		if isLocal(i) {
			p.Spec.NodeName = c.Node
		} else {
			p.Spec.NodeName = "other"
		}
		w.Pods = append(w.Pods, p)
	}
	per := max(c.Policies/c.Namespaces, 1)
	for i := 0; i < c.Policies; i++ {
		k := i / c.Namespaces
		w.Policies = append(w.Policies, Policy(fmt.Sprintf("ns%d", i%c.Namespaces), fmt.Sprintf("np%d", i), k%per, k))
	}
	return w
}

// Pod is a running pod with a named port "http" (8080/TCP).
func Pod(ns, name, ip string, labels map[string]string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
	p.Spec.Containers = []corev1.Container{{Name: "c", Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	return p
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func port(p int) *intstr.IntOrString { v := intstr.FromInt32(int32(p)); return &v }

// Policy is policy number k of a namespace, of one of ten shapes.
func Policy(ns, name string, shape, k int) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	app := fmt.Sprintf("app-%d", k%20)
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	http := intstr.FromString("http")
	end := int32(8100)
	switch shape % 10 {
	case 0, 1, 2, 3:
		np.Spec.PodSelector = *sel("app", app)
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", fmt.Sprintf("app-%d", (k+1)%20))}}, Ports: []networkingv1.NetworkPolicyPort{{Port: port(8080)}}},
			{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", fmt.Sprintf("team-%d", k%10)), PodSelector: sel("tier", "api")}}, Ports: []networkingv1.NetworkPolicyPort{{Port: &http}}},
		}
	case 4, 5:
		np.Spec.PodSelector = *sel("tier", "db")
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"api"}}}}},
				{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.128.0.0/16"}}},
			},
			Ports: []networkingv1.NetworkPolicyPort{{Port: port(5432)}},
		}}
	case 6, 7:
		np.Spec.PodSelector = *sel("app", app)
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("env", "prod")}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: port(53)}, {Protocol: &tcp, Port: port(8000), EndPort: &end}},
		}}
	case 8:
		np.Spec.PodSelector = metav1.LabelSelector{}
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	default:
		np.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}}}}
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}}}}}}
	}
	return np
}
