//go:build linux

package realcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/probe"
)

// PodNetNS returns the network namespace of a running pod, entered through
// one of its processes (found in the pod's cgroup on its node).
func (c *Cluster) PodNetNS(p *corev1.Pod) (*netnstest.NS, error) {
	var node *Node
	for _, n := range c.Nodes {
		if n.Name == p.Spec.NodeName {
			node = n
		}
	}
	if node == nil {
		return nil, fmt.Errorf("pod %s/%s: node %q is not ours", p.Namespace, p.Name, p.Spec.NodeName)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	want := "pod" + string(p.UID)
	for _, m := range mounts {
		var pid string
		_ = filepath.Walk(filepath.Join(m, node.cgroupRoot), func(path string, info os.FileInfo, err error) error {
			if err != nil || !info.IsDir() || pid != "" || !strings.Contains(path, want) {
				return nil
			}
			data, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			if f := strings.Fields(string(data)); len(f) > 0 {
				pid = f[0]
			}
			return nil
		})
		if pid != "" {
			return &netnstest.NS{Name: p.Namespace + "/" + p.Name, Path: "/proc/" + pid + "/ns/net"}, nil
		}
	}
	return nil, fmt.Errorf("pod %s/%s: no process found in its cgroup on %s", p.Namespace, p.Name, node.Name)
}

// DrillResult counts the probes of a failure drill.
type DrillResult struct {
	// WronglyAllowed probes reached the policy-isolated pod (must be 0).
	WronglyAllowed int64
	// Blocked probes to the isolated pod (expected).
	Blocked int64
	// Control probes reached the non-isolated pod (the network works).
	Control, ControlFailed int64
	Steps                  []string
}

// FailureDrill probes, without pause, from a client pod to a pod isolated
// by a deny-all-ingress policy (and to a non-isolated control pod) while
// the isolated pod's node loses its kubelet, then its containerd (each
// SIGKILLed and restarted), then its NPM pod (kubectl delete pod; the
// DaemonSet replaces it). No probe may reach the isolated pod, and the
// replacement NPM pod must take over: a policy allowing the client,
// created after it is ready, opens the isolated pod.
func (c *Cluster) FailureDrill(ctx context.Context, logf func(string, ...any)) (DrillResult, error) {
	var res DrillResult
	step := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		res.Steps = append(res.Steps, s)
		if logf != nil {
			logf("drill: %s", s)
		}
	}
	const ns = "drill"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return res, err
	}
	target, node := c.Nodes[len(c.Nodes)-1], c.Nodes[0]
	pods := map[string]*corev1.Pod{}
	for name, on := range map[string]*Node{"isolated": target, "control": target, "client": node} {
		p, err := c.runAgnhost(ctx, ns, name, on.Name)
		if err != nil {
			return res, err
		}
		pods[name] = p
	}
	deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "isolate"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "isolated"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, deny, metav1.CreateOptions{}); err != nil {
		return res, err
	}
	client, err := c.PodNetNS(pods["client"])
	if err != nil {
		return res, err
	}
	isolated := net.JoinHostPort(pods["isolated"].Status.PodIP, "8080")
	control := net.JoinHostPort(pods["control"].Status.PodIP, "8080")
	try := func(addr string) bool {
		ok := false
		_ = client.Do(func() error { ok = probe.TCPConnect(addr, 300*time.Millisecond); return nil })
		return ok
	}
	if err := eventually(ctx, 60*time.Second, func() bool { return !try(isolated) && try(control) }); err != nil {
		return res, fmt.Errorf("deny policy not enforced (or the control pod unreachable) after 60s")
	}
	step("policy enforced: %s isolated, %s reachable", isolated, control)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var allowedIsolated atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if try(isolated) {
				if !allowedIsolated.Load() {
					atomic.AddInt64(&res.WronglyAllowed, 1)
				}
			} else {
				atomic.AddInt64(&res.Blocked, 1)
			}
			if try(control) {
				atomic.AddInt64(&res.Control, 1)
			} else {
				atomic.AddInt64(&res.ControlFailed, 1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	err = c.drillEvents(ctx, target, ns, &allowedIsolated, try, isolated, step)
	close(stop)
	wg.Wait()
	return res, err
}

// drillEvents is the failure sequence of FailureDrill, run while the probe
// loop runs.
func (c *Cluster) drillEvents(ctx context.Context, target *Node, ns string, allowedIsolated *atomic.Bool, try func(string) bool, isolated string, step func(string, ...any)) error {
	pause := func() { time.Sleep(5 * time.Second) }

	pause()
	target.Stop("kubelet")
	step("kubelet on %s killed", target.Name)
	pause()
	if err := target.StartKubelet(ctx); err != nil {
		return err
	}
	step("kubelet on %s restarted", target.Name)
	pause()
	target.Stop("containerd")
	step("containerd on %s killed", target.Name)
	pause()
	if err := target.StartContainerd(ctx); err != nil {
		return err
	}
	step("containerd on %s restarted", target.Name)
	if err := c.WaitDaemonSet(ctx, "kube-system", "azure-npm", 3*time.Minute); err != nil {
		return err
	}
	pause()
	npm, err := c.npmPodOn(ctx, target.Name)
	if err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "delete", "pod", "-n", "kube-system", npm.Name, "--wait=true"); err != nil {
		return err
	}
	step("NPM pod %s on %s deleted", npm.Name, target.Name)
	if err := eventually(ctx, 3*time.Minute, func() bool {
		p, err := c.npmPodOn(ctx, target.Name)
		return err == nil && p.UID != npm.UID && podReady(p)
	}); err != nil {
		return fmt.Errorf("no ready replacement NPM pod on %s after 3 minutes", target.Name)
	}
	step("replacement NPM pod on %s ready", target.Name)
	pause()
	// Take-over: the replacement enforces a new change.
	allow := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allow-client"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "isolated"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{IntVal: 8080}}}}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	allowedIsolated.Store(true)
	if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, allow, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := eventually(ctx, 60*time.Second, func() bool { return try(isolated) }); err != nil {
		return fmt.Errorf("the replacement NPM pod did not enforce a new allow policy within 60s")
	}
	step("replacement NPM pod enforces a new policy (client allowed)")
	return c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (c *Cluster) npmPodOn(ctx context.Context, node string) (*corev1.Pod, error) {
	list, err := c.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=azure-npm", FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			return &list.Items[i], nil
		}
	}
	return nil, fmt.Errorf("no azure-npm pod on %s", node)
}

// runAgnhost runs one agnhost netexec pod (TCP/UDP 8080) labelled
// app=<name> on node and waits until it runs.
func (c *Cluster) runAgnhost(ctx context.Context, ns, name, node string) (*corev1.Pod, error) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{Name: "agnhost", Image: AgnhostImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"netexec", "--http-port=8080", "--udp-port=8080"}}}}}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	var got *corev1.Pod
	if err := eventually(ctx, 2*time.Minute, func() bool {
		var err error
		got, err = c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning && got.Status.PodIP != ""
	}); err != nil {
		return nil, fmt.Errorf("pod %s/%s not running after 2 minutes", ns, name)
	}
	return got, nil
}
