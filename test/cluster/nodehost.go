//go:build linux

package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/internal/probe"
)

// ServeTCP accepts TCP connections on port on every address of the node's
// namespace (as kubelet, or a hostNetwork pod, listens on the node) and
// closes each at once. Close the returned listener to stop.
func (n *Node) ServeTCP(port int) (io.Closer, error) {
	var ln net.Listener
	err := n.NS.Do(func() error {
		var err error
		ln, err = net.ListenTCP("tcp4", &net.TCPAddr{Port: port})
		return err
	})
	if err != nil {
		return nil, err
	}
	probe.AcceptAndClose(ln)
	return ln, nil
}

// TCPConnect reports whether a TCP connection from the node itself (its
// namespace: kubelet's probes, a hostNetwork pod) to dst is established
// within timeout.
func (n *Node) TCPConnect(dst netip.AddrPort, timeout time.Duration) bool {
	ok := false
	_ = n.NS.Do(func() error {
		conn, err := net.DialTimeout("tcp", dst.String(), timeout)
		if err == nil {
			ok = true
			conn.Close()
		}
		return nil
	})
	return ok
}

// CreateHostNetworkPod creates a hostNetwork pod on node in the API only:
// it shares the node's namespace and address (status.podIP is the node's),
// so nothing is plumbed; the node's own listeners and connections are
// its.
func (c *Cluster) CreateHostNetworkPod(ctx context.Context, node *Node, namespace, name string, labels map[string]string) (Write, error) {
	kpod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node.Name, HostNetwork: true, TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{Name: "host", Image: "podserver"}}},
	}
	kpod, err := c.Client.CoreV1().Pods(namespace).Create(ctx, kpod, metav1.CreateOptions{})
	if err != nil {
		return Write{}, err
	}
	now := metav1.Now()
	ip := node.IP.String()
	kpod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: ip, StartTime: &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}}
	if kpod, err = c.Client.CoreV1().Pods(namespace).UpdateStatus(ctx, kpod, metav1.UpdateOptions{}); err != nil {
		return Write{}, err
	}
	return Write{Key: "pod/" + namespace + "/" + name, RV: rvOf(kpod)}, nil
}

// CleanupNPM runs `azure-npm cleanup` for the current dataplane in the
// node's namespace (azure-npm stopped): every kernel object the agent made
// there is removed, as on a node it is uninstalled from.
func (n *Node) CleanupNPM() error {
	if n.NPMPid() != 0 {
		return fmt.Errorf("%s: azure-npm runs; stop it before its cleanup", n.Name)
	}
	_, err := n.NS.Exec(filepath.Join(n.c.cfg.BinDir, "azure-npm"), "cleanup", "--dataplane", n.c.cfg.Dataplane, "--log-file", "stderr")
	return err
}
