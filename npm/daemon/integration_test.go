//go:build linux

package daemon_test

// Integration tests of the azure-npm binary against the real local
// kube-apiserver, on nodes of the simulated cluster (test/cluster): the
// binary runs inside a node namespace exactly as the DaemonSet runs it, and
// every assertion is a real connection between pod namespaces.

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/test/cluster"
)

const probeTimeout = 300 * time.Millisecond

func newCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	cluster.Require(t)
	c, err := cluster.New(context.Background(), cluster.Config{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// mustFor returns a checker for API writes: must(c.CreatePolicy(...)).
func mustFor(t *testing.T) func(cluster.Write, error) cluster.Write {
	return func(w cluster.Write, err error) cluster.Write {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
}

func wait(t *testing.T, c *cluster.Cluster, ws ...cluster.Write) time.Duration {
	t.Helper()
	took, err := c.WaitEnforced(context.Background(), ws, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return took
}

func denyIngress(ns, name string, sel map[string]string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
}

// probeLoop connects src -> dst:80 until stopped and counts connections
// that got through.
type probeLoop struct {
	allowed, total atomic.Int64
	stop           chan struct{}
	wg             sync.WaitGroup
}

func startProbeLoop(c *cluster.Cluster, src, dst *cluster.Pod) *probeLoop {
	l := &probeLoop{stop: make(chan struct{})}
	// Four probers with short timeouts: a dropped SYN costs the timeout,
	// and the loop must sample the restart windows densely.
	for i := 0; i < 4; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if c.Probe(src, dst.IP, 80, probe.TCP, 50*time.Millisecond) {
					l.allowed.Add(1)
				}
				l.total.Add(1)
			}
		}()
	}
	return l
}

func (l *probeLoop) finish() (allowed, total int64) {
	close(l.stop)
	l.wg.Wait()
	return l.allowed.Load(), l.total.Load()
}

// TestRestartWithoutGap: kill -9 of azure-npm and a restart, then a
// graceful stop and a restart, while a probe loop hits a denied pod:
// the previous rules stay in force until the new run replaces them, so not
// one probe gets through.
func TestRestartWithoutGap(t *testing.T) {
	c := newCluster(t)
	must := mustFor(t)
	ctx := context.Background()
	must(c.CreateNamespace(ctx, "x", nil))
	a, wa, err := c.CreatePod(ctx, c.Nodes[0], "x", "a", map[string]string{"app": "a"}, cluster.DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	b, wb, err := c.CreatePod(ctx, c.Nodes[1], "x", "b", map[string]string{"app": "b"}, cluster.DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	wait(t, c, wa, wb, must(c.CreatePolicy(ctx, denyIngress("x", "deny-b", map[string]string{"app": "b"}))))
	if c.Probe(a, b.IP, 80, probe.TCP, probeTimeout) {
		t.Fatal("deny-b not enforced before the restarts")
	}
	loop := startProbeLoop(c, a, b)
	for _, kill := range []bool{true, false} {
		c.Nodes[1].StopNPM(kill)
		time.Sleep(300 * time.Millisecond) // the daemon is down: probes keep running
		if err := c.Nodes[1].StartNPM(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	allowed, total := loop.finish()
	t.Logf("%d probes across a kill -9 + restart and a SIGTERM + restart; %d got through", total, allowed)
	if total < 40 {
		t.Fatalf("only %d probes ran: the loop did not cover the restarts", total)
	}
	if allowed != 0 {
		t.Fatalf("%d of %d probes to a denied pod got through during restarts", allowed, total)
	}
	// The restarted daemon still follows the API.
	wait(t, c, must(c.DeletePolicy(ctx, "x", "deny-b")))
	if !c.Probe(a, b.IP, 80, probe.TCP, probeTimeout) {
		t.Fatal("after deleting deny-b the restarted daemon must open b")
	}
}

// TestAPIServerLossKeepsEnforcing: with kube-apiserver down the kernel keeps
// the last state (nothing is flushed); when it is back the daemon
// reconnects and follows new changes.
func TestAPIServerLossKeepsEnforcing(t *testing.T) {
	c := newCluster(t)
	must := mustFor(t)
	ctx := context.Background()
	must(c.CreateNamespace(ctx, "x", nil))
	a, wa, _ := c.CreatePod(ctx, c.Nodes[0], "x", "a", map[string]string{"app": "a"}, cluster.DefaultPorts())
	b, wb, err := c.CreatePod(ctx, c.Nodes[1], "x", "b", map[string]string{"app": "b"}, cluster.DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	wait(t, c, wa, wb, must(c.CreatePolicy(ctx, denyIngress("x", "deny-b", map[string]string{"app": "b"}))))
	c.API.StopAPIServer()
	time.Sleep(2 * time.Second) // watches fail and retry with backoff
	if c.Probe(a, b.IP, 80, probe.TCP, probeTimeout) {
		t.Fatal("with the API server away the denied pod opened")
	}
	if !c.Probe(b, a.IP, 80, probe.TCP, probeTimeout) {
		t.Fatal("with the API server away an unselected pod closed")
	}
	if err := c.API.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	took := wait(t, c, must(c.DeletePolicy(ctx, "x", "deny-b")))
	t.Logf("policy delete enforced %s after the API server came back", took)
	if !c.Probe(a, b.IP, 80, probe.TCP, probeTimeout) {
		t.Fatal("after the API server returned, deleting deny-b must open b")
	}
}

// TestFollowsTheAPI: label changes, namespace relabel, policy update and
// delete, and a new pod taking the IP of a deleted one.
func TestFollowsTheAPI(t *testing.T) {
	c := newCluster(t)
	must := mustFor(t)
	ctx := context.Background()
	must(c.CreateNamespace(ctx, "x", map[string]string{"team": "blue"}))
	must(c.CreateNamespace(ctx, "y", map[string]string{"team": "red"}))
	srv, w1, err := c.CreatePod(ctx, c.Nodes[1], "x", "server", map[string]string{"app": "server"}, cluster.DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	cli, w2, err := c.CreatePod(ctx, c.Nodes[0], "y", "client", map[string]string{"app": "client"}, cluster.DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	// server accepts only from namespaces team=blue with role=ok pods.
	np := denyIngress("x", "server-in", map[string]string{"app": "server"})
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "ok"}},
	}}}}
	wait(t, c, w1, w2, must(c.CreatePolicy(ctx, np)))
	check := func(step string, want bool) {
		t.Helper()
		if got := c.Probe(cli, srv.IP, 80, probe.TCP, probeTimeout); got != want {
			t.Fatalf("%s: client -> server connected=%v, want %v", step, got, want)
		}
	}
	check("client in a red namespace without role", false)
	wait(t, c, must(c.SetPodLabels(ctx, "y", "client", map[string]string{"app": "client", "role": "ok"})))
	check("pod relabelled role=ok, namespace still red", false)
	took := wait(t, c, must(c.SetNamespaceLabels(ctx, "y", map[string]string{"team": "blue"})))
	t.Logf("namespace relabel enforced in %s", took)
	check("namespace relabelled blue", true)
	np.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: ptrIntOrString(81)}}
	wait(t, c, must(c.UpdatePolicy(ctx, np)))
	check("policy updated to port 81 only", false)
	if !c.Probe(cli, srv.IP, 81, probe.TCP, probeTimeout) {
		t.Fatal("policy updated to port 81: 81 must connect")
	}
	wait(t, c, must(c.DeletePolicy(ctx, "x", "server-in")))
	check("policy deleted", true)

	// IP reuse: a denied pod takes the address of a deleted allowed one.
	wait(t, c, must(c.CreatePolicy(ctx, denyIngress("x", "deny-victim", map[string]string{"app": "victim"}))))
	old, w3, err := c.CreatePod(ctx, c.Nodes[1], "x", "old", map[string]string{"app": "open"}, cluster.DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	wait(t, c, w3)
	if !c.Probe(cli, old.IP, 80, probe.TCP, probeTimeout) {
		t.Fatal("open pod must connect")
	}
	oldIP := old.IP
	wait(t, c, must(c.DeletePod(ctx, "x", "old")))
	victim, w4, err := c.CreatePodWithIP(ctx, c.Nodes[1], "x", "victim", map[string]string{"app": "victim"}, cluster.DefaultPorts(), oldIP)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, c, w4)
	if victim.IP != oldIP {
		t.Fatalf("victim got %s, want the reused %s", victim.IP, oldIP)
	}
	if c.Probe(cli, victim.IP, 80, probe.TCP, probeTimeout) {
		t.Fatal("a denied pod reusing an open pod's IP must be denied")
	}
}

func ptrIntOrString(p int) *intstr.IntOrString {
	v := intstr.FromInt32(int32(p))
	return &v
}
