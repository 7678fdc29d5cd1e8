//go:build linux

package realcluster

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSmoke is the real cluster end to end in a few minutes: up through
// the shipped manifests, a Deployment's pods on both nodes get addresses
// from azure-vnet, kubectl exec from one pod reaches the other, a
// NetworkPolicy blocks it and its removal opens it again, and after Close
// nothing of the run is left.
func TestSmoke(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := New(ctx, Config{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()
	t.Logf("cluster up through the manifests in %.1fs", time.Since(start).Seconds())

	pods := deployServers(ctx, t, c, "smoke", 2)
	src, dst := pods[0], pods[1]
	if src.Spec.NodeName == dst.Spec.NodeName {
		t.Fatalf("both pods on %s: the Deployment should spread over the nodes", src.Spec.NodeName)
	}
	for _, p := range pods {
		ip := netip.MustParseAddr(p.Status.PodIP)
		var node *Node
		for _, n := range c.Nodes {
			if n.Name == p.Spec.NodeName {
				node = n
			}
		}
		if node == nil || !node.PodPrefix.Contains(ip) {
			t.Fatalf("pod %s on %s has %s, not an address of the node's pool from azure-vnet-ipam", p.Name, p.Spec.NodeName, ip)
		}
	}
	connect := func() error {
		_, err := c.Kubectl(ctx, "exec", "-n", "smoke", src.Name, "--", "/agnhost", "connect", dst.Status.PodIP+":8080", "--timeout=2s", "--protocol=tcp")
		return err
	}
	if err := connect(); err != nil {
		t.Fatalf("pod to pod across nodes before any policy: %v", err)
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "smoke", Name: "deny-ingress"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	if _, err := c.Client.NetworkingV1().NetworkPolicies("smoke").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := eventually(ctx, 60*time.Second, func() bool { return connect() != nil }); err != nil {
		t.Fatalf("deny-ingress policy not enforced: the connection still gets through after 60s")
	}
	if err := c.Client.NetworkingV1().NetworkPolicies("smoke").Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := eventually(ctx, 60*time.Second, func() bool { return connect() == nil }); err != nil {
		t.Fatalf("policy removed but the connection is still blocked after 60s: %v", connect())
	}

	closed = true
	c.Close()
	if left := c.Residue(); len(left) > 0 {
		t.Fatalf("left behind after Close:\n  %s", strings.Join(left, "\n  "))
	}
	t.Logf("smoke test done in %.1fs", time.Since(start).Seconds())
}

// deployServers creates namespace ns and a Deployment of replicas agnhost
// netexec servers (TCP/UDP 8080) spread over the nodes, and returns its
// running pods.
func deployServers(ctx context.Context, t *testing.T, c *Cluster, ns string, replicas int32) []corev1.Pod {
	t.Helper()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "server"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
						WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}},
					Containers: []corev1.Container{{Name: "agnhost", Image: AgnhostImage, ImagePullPolicy: corev1.PullNever,
						Args:  []string{"netexec", "--http-port=8080", "--udp-port=8080"},
						Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
				},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	err := eventually(ctx, 3*time.Minute, func() bool {
		list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=server"})
		if err != nil {
			return false
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				pods = append(pods, p)
			}
		}
		return len(pods) == int(replicas)
	})
	if err != nil {
		out, _ := c.Kubectl(ctx, "get", "pods,events", "-n", ns, "-o", "wide")
		t.Fatalf("deployment %s/server: %d of %d pods running after 3 minutes\n%s", ns, len(pods), replicas, out)
	}
	return pods
}
