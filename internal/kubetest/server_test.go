//go:build linux

package kubetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/internal/netnstest"
)

func TestServerInRootNamespaceServesAPI(t *testing.T) {
	s := StartForTest(t)
	t.Logf("ready in %s at %s", s.StartupTime, s.URL)
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nss, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, ns := range nss.Items {
		names[ns.Name] = true
	}
	for _, want := range []string{"default", "kube-system"} {
		if !names[want] {
			t.Errorf("namespace %q missing from %v", want, names)
		}
	}
	// A pod with spec.nodeName and a status patched through the status
	// subresource: what the NPM integration tests and the e2e harness do.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"app": "x"}},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "none"}}},
	}
	pod, err = c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.PodIP = "10.10.0.5"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "10.10.0.5"}}
	pod.Status.Phase = corev1.PodRunning
	if _, err := c.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.PodIP != "10.10.0.5" {
		t.Fatalf("pod IP = %q after status update", got.Status.PodIP)
	}
}

func TestServerInNetworkNamespaceIsReachedThroughDialer(t *testing.T) {
	ns := netnstest.New(t, "cp")
	// The control plane's VNet address; a peer namespace stands for the VNet.
	vnet := netnstest.New(t, "vnet")
	netnstest.Link(t, ns, "eth0", "10.224.0.4/16", vnet, "cp0", "10.224.0.1/16")
	s := StartInNetNS(t, ns, "10.224.0.4")
	if s.URL != "https://10.224.0.4:6443" {
		t.Fatalf("URL = %s", s.URL)
	}
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("list through the namespace dialer: %v", err)
	}
}

func TestDetachedServerStopsByPIDFile(t *testing.T) {
	if m := MissingTools(ToolsDir()); len(m) > 0 {
		netnstest.Skip(t, "control-plane binaries %v not built: run `make tools`", m)
	}
	dir := filepath.Join(t.TempDir(), "cluster")
	s, err := Start(context.Background(), Options{Dir: dir, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	pids := append([]int(nil), s.pids...)
	if len(pids) != 2 {
		t.Fatalf("want 2 processes, got pids %v", pids)
	}
	if err := StopDetached(dir); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d still alive after StopDetached", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s still exists (err=%v)", dir, err)
	}
}
