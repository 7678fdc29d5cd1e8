//go:build linux

package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodServiceName is the name of the Service the e2e makes for a pod:
// cyclonus's (and the upstream NetworkPolicy e2e's) "s-<namespace>-<pod>".
func PodServiceName(namespace, pod string) string { return fmt.Sprintf("s-%s-%s", namespace, pod) }

// PodService is a ClusterIP Service for one pod, selecting it by
// selector, one port per container port (named and numbered as cyclonus's
// service-port-<proto>-<port>, target port the same number).
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

// ServiceWrites are the Service and its EndpointSlices as the API server
// holds them now, for WaitEnforced: azure-npm watches both (a pod backing
// an externally reachable Service with externalTrafficPolicy Cluster is a
// Remote endpoint of every node, npm/daemon/services.go). Called after
// WaitServicesProgrammed, the slices hold the endpoints kube-proxy
// programmed.
func (c *Cluster) ServiceWrites(ctx context.Context, namespace, name string) ([]Write, error) {
	svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	writes := []Write{{Key: "service/" + namespace + "/" + name, RV: rvOf(svc)}}
	slices, err := c.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, err
	}
	for i := range slices.Items {
		writes = append(writes, Write{Key: "endpointslice/" + namespace + "/" + slices.Items[i].Name, RV: rvOf(&slices.Items[i])})
	}
	return writes, nil
}

// WaitServicesSeen waits until every node's azure-npm enforces the
// Services of want and their EndpointSlices as they are now (call it after
// WaitServicesProgrammed).
func (c *Cluster) WaitServicesSeen(ctx context.Context, want []ServiceBackend, timeout time.Duration) error {
	var writes []Write
	done := map[string]bool{}
	for _, b := range want {
		if done[b.Namespace+"/"+b.Service] {
			continue
		}
		done[b.Namespace+"/"+b.Service] = true
		w, err := c.ServiceWrites(ctx, b.Namespace, b.Service)
		if err != nil {
			return err
		}
		writes = append(writes, w...)
	}
	_, err := c.WaitEnforced(ctx, writes, timeout)
	return err
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

// HasServices reports whether the cluster runs kube-proxy (Config.KubeProxy).
func (c *Cluster) HasServices() bool { return c.svc != nil }

// ServiceBackend is one endpoint of one Service port that kube-proxy
// must reach.
type ServiceBackend struct {
	Namespace, Service string
	ClusterIP          string
	PortName           string
	Protocol           corev1.Protocol
	IP                 netip.Addr // the pod's
	Port               int32      // the pod's (target port)
	// Also must appear in the rules too (a NodePort, a load-balancer
	// address).
	Also []string
}

// PodServiceBackend is the first port of a PodService leading to pod p.
func PodServiceBackend(svc *corev1.Service, p *Pod) ServiceBackend {
	sp := svc.Spec.Ports[0]
	return ServiceBackend{Namespace: svc.Namespace, Service: svc.Name, ClusterIP: svc.Spec.ClusterIP, PortName: sp.Name,
		Protocol: sp.Protocol, IP: p.IP, Port: sp.Port}
}

// WaitServicesProgrammed waits until every node's kube-proxy has
// programmed every backend of want: the Service's ClusterIP and its DNAT
// to the backend appear in the node's kube-proxy rules. The EndpointSlice
// controller and kube-proxy work asynchronously from the writes (and
// kube-proxy syncs at most once a second); a probe before this would test
// their latency, not the policy.
func (c *Cluster) WaitServicesProgrammed(ctx context.Context, want []ServiceBackend, timeout time.Duration) error {
	if c.svc == nil || len(want) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes {
		for {
			rules, err := n.KubeProxyRules()
			missing := ""
			if err != nil {
				missing = err.Error()
			}
			for _, b := range want {
				if missing != "" {
					break
				}
				if !strings.Contains(rules, b.ClusterIP) || !c.programmed(rules, b) {
					missing = fmt.Sprintf("%s/%s (%s) -> %s:%d", b.Namespace, b.Service, b.ClusterIP, b.IP, b.Port)
				}
				for _, a := range b.Also {
					if missing == "" && !strings.Contains(rules, a) {
						missing = fmt.Sprintf("%s/%s: %s", b.Namespace, b.Service, a)
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

// programmed reports whether kube-proxy's rules hold the DNAT of b: in
// iptables mode a KUBE-SEP rule commented "ns/svc:port" with
// --to-destination; in nftables mode the endpoint chain named
// ns/svc/proto/port__ip/port.
func (c *Cluster) programmed(rules string, b ServiceBackend) bool {
	if c.cfg.KubeProxy == KubeProxyNFTables {
		return strings.Contains(rules, fmt.Sprintf("%s/%s/%s/%s__%s/%d", b.Namespace, b.Service, strings.ToLower(string(b.Protocol)), b.PortName, b.IP, b.Port))
	}
	comment := fmt.Sprintf("%q", fmt.Sprintf("%s/%s:%s", b.Namespace, b.Service, b.PortName))
	dnat := fmt.Sprintf("--to-destination %s:%d", b.IP, b.Port)
	for _, line := range strings.Split(rules, "\n") {
		if strings.Contains(line, comment) && strings.Contains(line, dnat) {
			return true
		}
	}
	return false
}
