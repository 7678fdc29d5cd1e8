//go:build linux

package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodServiceName is the name of the Service the e2e makes for a pod:
// cyclonus's (and the upstream NetworkPolicy e2e's) "s-<namespace>-<pod>".
func PodServiceName(namespace, pod string) string { return fmt.Sprintf("s-%s-%s", namespace, pod) }

// PodService is a ClusterIP Service selecting the pod by the labels it was
// created with, one port per container port (named and numbered as
// cyclonus's service-port-<proto>-<port>, target port the same number).
func PodService(namespace, pod string, selector map[string]string, ports []ContainerPort) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: PodServiceName(namespace, pod)},
		Spec:       corev1.ServiceSpec{Selector: selector},
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: fmt.Sprintf("service-port-%s-%d", strings.ToLower(string(p.Protocol)), p.Port), Protocol: p.Protocol, Port: p.Port})
	}
	return svc
}

// CreateService creates svc and returns it as the API server stored it
// (ClusterIP, NodePorts allocated).
func (c *Cluster) CreateService(ctx context.Context, svc *corev1.Service) (*corev1.Service, error) {
	return c.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
}

// DeleteService deletes a Service; a missing one is not an error.
func (c *Cluster) DeleteService(ctx context.Context, namespace, name string) error {
	err := c.Client.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// deleteServices removes every Service and EndpointSlice of a namespace
// (DeleteNamespace does the namespace controller's work: without it a
// recreated namespace would find them again).
func (c *Cluster) deleteServices(ctx context.Context, namespace string) error {
	svcs, err := c.Client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, s := range svcs.Items {
		if err := c.DeleteService(ctx, namespace, s.Name); err != nil {
			return err
		}
	}
	return c.Client.DiscoveryV1().EndpointSlices(namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
}

// ServiceClusterIP is a Service's ClusterIP (invalid when it has none or
// does not exist).
func (c *Cluster) ServiceClusterIP(ctx context.Context, namespace, name string) (netip.Addr, error) {
	svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(svc.Spec.ClusterIP)
}

// Backend is one endpoint a Service must reach: a pod address and the
// port (the Service's target port) it serves.
type Backend struct {
	IP   netip.Addr
	Port int32
}

// WaitServicesProgrammed waits until every node's kube-proxy has
// programmed every Service of want (namespace/name → the backends it must
// reach): its ClusterIP, and a DNAT to each backend, appear in the node's
// kube-proxy rules. EndpointSlice controller and kube-proxy work
// asynchronously from the writes; a probe before this would test their
// latency, not the policy.
func (c *Cluster) WaitServicesProgrammed(ctx context.Context, want map[string][]Backend, timeout time.Duration) error {
	if c.svc == nil || len(want) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	type target struct {
		clusterIP string
		dnats     []string
	}
	var targets []target
	for key, backends := range want {
		ns, name, _ := strings.Cut(key, "/")
		var ip netip.Addr
		for {
			var err error
			if ip, err = c.ServiceClusterIP(ctx, ns, name); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("service %s: %w", key, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t := target{clusterIP: ip.String()}
		for _, b := range backends {
			t.dnats = append(t.dnats, c.dnatText(b))
		}
		targets = append(targets, t)
	}
	for _, n := range c.Nodes {
		for {
			rules, err := n.KubeProxyRules()
			missing := ""
			if err != nil {
				missing = err.Error()
			}
			for _, t := range targets {
				if missing != "" {
					break
				}
				if !strings.Contains(rules, t.clusterIP) {
					missing = "ClusterIP " + t.clusterIP
				}
				for _, d := range t.dnats {
					if missing == "" && !strings.Contains(rules, d) {
						missing = fmt.Sprintf("%q (service %s)", d, t.clusterIP)
					}
				}
			}
			if missing == "" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: kube-proxy has not programmed %s within %s; see %s", n.Name, missing, timeout, n.KubeProxyLog())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// dnatText is how a DNAT to a backend reads in kube-proxy's rules.
func (c *Cluster) dnatText(b Backend) string {
	if c.cfg.KubeProxy == KubeProxyNFTables {
		return fmt.Sprintf("dnat to %s:%d", b.IP, b.Port)
	}
	return fmt.Sprintf("--to-destination %s:%d", b.IP, b.Port)
}
