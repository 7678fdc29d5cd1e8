//go:build linux

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/test/cluster"
	"github.com/open-acn/acn/test/realcluster"
)

// runReal is the demo on the real cluster (DEMO_CLUSTER=real): kubelet and
// containerd run the pods (agnhost), azure-vnet plumbs them and azure-npm
// runs as the DaemonSet of deploy/npm; connectivity is probed with
// `kubectl exec ... /agnhost connect`.
func runReal(ctx context.Context, keep bool) error {
	step("building the real cluster: control plane, two nodes with containerd, kubelet, kube-proxy; CNI and NPM from deploy/")
	c, err := realcluster.New(ctx, realcluster.Config{Logf: func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) }})
	if err != nil {
		return err
	}
	defer func() {
		step("cleaning up (processes, mounts, cgroups, namespaces acn-*)")
		c.Close()
	}()
	out, err := c.Kubectl(ctx, "get", "pods", "-n", "kube-system", "-o", "wide")
	if err != nil {
		return err
	}
	fmt.Print(indent(out, "    "))

	step("creating namespaces and pods through the API; kubelet starts them, azure-vnet plumbs them")
	for _, ns := range []string{"demo", "other"} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	var live []*cluster.Pod // only Namespace, Name and IP are used
	var writes []cluster.Write
	for _, dp := range pods {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: dp.ns, Name: dp.name, Labels: map[string]string{"app": dp.app}},
			Spec: corev1.PodSpec{NodeName: c.Nodes[dp.node].Name, TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "agnhost", Image: realcluster.AgnhostImage, ImagePullPolicy: corev1.PullNever,
					Args:  []string{"netexec", "--http-port=80", "--udp-port=81"},
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}}}
		if _, err := c.Client.CoreV1().Pods(dp.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	for _, dp := range pods {
		var got *corev1.Pod
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
			got, err = c.Client.CoreV1().Pods(dp.ns).Get(ctx, dp.name, metav1.GetOptions{})
			if err == nil && got.Status.Phase == corev1.PodRunning && got.Status.PodIP != "" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("pod %s/%s not running after 2 minutes", dp.ns, dp.name)
			}
		}
		p := &cluster.Pod{Namespace: dp.ns, Name: dp.name}
		live = append(live, p)
		fmt.Printf("    %-15s on %s  ip %s\n", p.Key(), got.Spec.NodeName, got.Status.PodIP)
		writes = append(writes, cluster.Write{Key: "pod/" + p.Key(), RV: rv(got.ResourceVersion)})
		ips[p.Key()] = got.Status.PodIP
	}

	step("connectivity before any policy (TCP 80: kubectl exec <pod> -- /agnhost connect)")
	before := realMatrix(ctx, c, live)
	printMatrix(live, before, nil)

	step("kubectl apply -f deploy/examples/%s", strings.Join(policyFiles, " -f deploy/examples/"))
	writes = nil
	for _, f := range policyFiles {
		if out, err := c.Kubectl(ctx, "apply", "-f", filepath.Join(c.Root(), "deploy", "examples", f)); err != nil {
			return err
		} else {
			fmt.Print(indent(out, "    "))
		}
		np, err := readPolicy(filepath.Join(c.Root(), "deploy", "examples", f))
		if err != nil {
			return err
		}
		got, err := c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Get(ctx, np.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		writes = append(writes, cluster.Write{Key: "policy/" + np.Namespace + "/" + np.Name, RV: rv(got.ResourceVersion)})
	}
	// Wait until the policies show: db may no longer reach backend.
	start := time.Now()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := c.Kubectl(ctx, "exec", "-n", "demo", "db", "--", "/agnhost", "connect", ips["demo/backend"]+":80", "--timeout=1s"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("policies not enforced after a minute: demo/db still reaches demo/backend")
		}
	}
	fmt.Printf("    enforced (demo/db -> demo/backend denied) %.1f s after kubectl apply returned\n", time.Since(start).Seconds())

	step("connectivity with the policies (changes marked *)")
	after := realMatrix(ctx, c, live)
	printMatrix(live, after, before)

	if keep {
		step("KEEP=1: the cluster stays up until Ctrl-C. Try:")
		k := c.KubectlCommand()
		fmt.Printf("    %s get nodes,pods -A -o wide\n", k)
		fmt.Printf("    %s exec -n demo frontend -- /agnhost connect %s:80 --timeout=1s\n", k, ips["demo/backend"])
		fmt.Printf("    %s delete networkpolicy -n demo deny-all\n", k)
		fmt.Printf("    %s logs -n kube-system -l k8s-app=azure-npm\n", k)
		fmt.Printf("    ip netns exec %s iptables-save | grep AZURE-NPM\n", c.Nodes[1].NS.Name)
		<-ctx.Done()
	}
	return nil
}

var ips = map[string]string{}

func rv(s string) uint64 {
	var v uint64
	fmt.Sscan(s, &v)
	return v
}

// realMatrix probes every ordered pair with kubectl exec.
func realMatrix(ctx context.Context, c *realcluster.Cluster, live []*cluster.Pod) map[[2]int]bool {
	m := map[[2]int]bool{}
	for i, s := range live {
		for j, d := range live {
			if i == j {
				continue
			}
			_, err := c.Kubectl(ctx, "exec", "-n", s.Namespace, s.Name, "--", "/agnhost", "connect", ips[d.Key()]+":80", "--timeout=1s", "--protocol=tcp")
			m[[2]int{i, j}] = err == nil
		}
	}
	return m
}
