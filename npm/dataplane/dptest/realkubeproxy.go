//go:build linux

package dptest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/internal/netnstest"
)

// realKubeProxy is the real kube-proxy binary (out/tools, pinned) running
// in the node namespace against a test API server.
type realKubeProxy struct {
	t          *testing.T
	node       *netnstest.NS
	bin, kcfg  string
	mode, logs string
	cmd        *exec.Cmd
}

func (k *realKubeProxy) args(extra ...string) []string {
	a := []string{"netns", "exec", k.node.Name, k.bin, "--kubeconfig=" + k.kcfg, "--hostname-override=node", "--proxy-mode=" + k.mode,
		// conntrack limits and timeouts are host-wide sysctls: leave them.
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--healthz-bind-address=127.0.0.1:10256", "--metrics-bind-address=127.0.0.1:10249", "--iptables-sync-period=5s"}
	return append(a, extra...)
}

func (k *realKubeProxy) start() {
	k.t.Helper()
	f, err := os.OpenFile(k.logs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		k.t.Fatal(err)
	}
	defer f.Close()
	k.cmd = exec.Command("ip", k.args()...)
	k.cmd.Stdout, k.cmd.Stderr = f, f
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
}

// stop kills this run's kube-proxy (by its PID) and, with cleanup, runs
// `kube-proxy --cleanup`, which removes its rules and jumps: the next start
// inserts them again at the top of the built-in chains.
func (k *realKubeProxy) stop(cleanup bool) {
	k.t.Helper()
	if k.cmd != nil && k.cmd.Process != nil {
		_ = k.cmd.Process.Kill()
		_ = k.cmd.Wait()
		k.cmd = nil
	}
	if cleanup {
		if out, err := exec.Command("ip", k.args("--cleanup")...).CombinedOutput(); err != nil {
			k.t.Logf("kube-proxy --cleanup: %v\n%s", err, out)
		}
	}
}

// RunRealKubeProxy: the real kube-proxy (mode "iptables" or "nftables")
// in the node namespace, against an API server holding two NodePort
// services (externalTrafficPolicy Cluster) with hand-made EndpointSlices
// to pod0 (denied to off-cluster clients by BasicPolicies) and pod1
// (open). Killed, cleaned up (`--cleanup`) and restarted, and NPM
// restarted, in both orders, under probe loops from off-cluster: no new
// connection to the denied NodePort may get through.
func RunRealKubeProxy(t *testing.T, newDP NewDataplane, mode string, restarts int) {
	bin := filepath.Join(kubetest.ToolsDir(), "kube-proxy")
	if _, err := os.Stat(bin); err != nil {
		netnstest.Skip(t, "kube-proxy not built in %s: run `make tools-node`", kubetest.ToolsDir())
	}
	tp := NewTopo(t, Pods)
	srv := kubetest.StartInNetNS(t, tp.Node, NodeExtIP)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := true
	for i, s := range []struct {
		name     string
		nodePort int32
		ip       string
	}{{"web", DeniedNodePort, tp.IPs[0][0]}, {"cli", OpenNodePort, tp.IPs[1][0]}} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: s.name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(80), NodePort: s.nodePort}}}}
		if _, err := cs.CoreV1().Services("a").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		name, port, proto := "http", int32(80), corev1.ProtocolTCP
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: s.name + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: s.name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{s.ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "a", Name: "pod" + string(rune('0'+i))}}},
			Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}}}
		if _, err := cs.DiscoveryV1().EndpointSlices("a").Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kp := &realKubeProxy{t: t, node: tp.Node, bin: bin, kcfg: srv.Kubeconfig, mode: mode, logs: filepath.Join(srv.Dir, "kube-proxy.log")}
	t.Cleanup(func() {
		kp.stop(true)
		if t.Failed() {
			if b, err := os.ReadFile(kp.logs); err == nil {
				t.Logf("kube-proxy log:\n%s", b)
			}
		}
	})
	e := tp.Engine(BasicPolicies()...)
	// NPM first, then kube-proxy.
	apply(t, newDP(t, tp.Node), e, true)
	kp.start()
	waitOpen := func(what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !tp.NodePortProbe(OpenNodePort, time.Second) {
			if time.Now().After(deadline) {
				t.Fatalf("kube-proxy %s: the open NodePort %d does not answer 60 s after %s", mode, OpenNodePort, what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitOpen("its start")
	if tp.NodePortProbe(DeniedNodePort, probeTimeout) {
		t.Fatalf("kube-proxy %s started after NPM: a denied client reached pod0 through NodePort %d", mode, DeniedNodePort)
	}
	var done atomic.Bool
	var leaks, nDenied, opens, nOpen atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				nDenied.Add(1)
				if tp.NodePortProbe(DeniedNodePort, 30*time.Millisecond) {
					leaks.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			nOpen.Add(1)
			if tp.NodePortProbe(OpenNodePort, probeTimeout) {
				opens.Add(1)
			}
		}
	}()
	for i := 0; i < restarts; i++ {
		kp.stop(true)
		if i%2 == 0 {
			kp.start()
			apply(t, newDP(t, tp.Node), e, true)
		} else {
			apply(t, newDP(t, tp.Node), e, true)
			kp.start()
		}
		waitOpen("a restart")
	}
	done.Store(true)
	wg.Wait()
	t.Logf("real kube-proxy %s: %d restarts (kill, --cleanup, start) with NPM restarted before or after; %d new connections to the denied NodePort, %d got through; %d of %d to the open NodePort got through",
		mode, restarts, nDenied.Load(), leaks.Load(), opens.Load(), nOpen.Load())
	if leaks.Load() > 0 {
		t.Errorf("real kube-proxy %s: %d of %d new connections of a denied client reached pod0 through NodePort %d", mode, leaks.Load(), nDenied.Load(), DeniedNodePort)
	}
	if opens.Load() == 0 {
		t.Errorf("real kube-proxy %s: the open NodePort never answered during the loop", mode)
	}
}
