//go:build linux

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/internal/netnstest"
)

// Addresses of the world outside the cluster (documentation ranges, RFC
// 5737): two client networks beyond the VNet's router, and the range the
// simulated cloud hands load-balancer addresses from.
var (
	OutsideAllowedPrefix = netip.MustParsePrefix("203.0.113.0/24")
	OutsideDeniedPrefix  = netip.MustParsePrefix("198.51.100.0/24")
	LoadBalancerPrefix   = netip.MustParsePrefix("192.0.2.0/24")
	// NodeSubnet holds the nodes' (and the control plane's) VNet
	// addresses and no pod's.
	NodeSubnet = netip.MustParsePrefix("10.224.0.0/24")
)

// Outside is a host that is not a pod and not a node: an on-premises
// machine or the internet, reached through the VNet's router. It has one
// client address in each of two networks (a policy's ipBlock allows one,
// not the other).
type Outside struct {
	NS *netnstest.NS
	// Allowed and Denied are its client addresses: 203.0.113.10 and
	// 198.51.100.10.
	Allowed, Denied netip.Addr
}

// Outside returns the cluster's outside host, creating it on first use:
// a namespace linked to the VNet's router (not its bridge), whose client
// networks the VNet routes to it. Nodes reach it by their default route.
// Close removes it.
func (c *Cluster) Outside() (*Outside, error) {
	if c.svc == nil {
		return nil, errors.New("cluster: an outside client needs Services (Config.KubeProxy)")
	}
	if c.svc.outside != nil {
		return c.svc.outside, nil
	}
	ns, err := netnstest.Create("outside")
	if err != nil {
		return nil, err
	}
	o := &Outside{NS: ns, Allowed: netip.MustParseAddr("203.0.113.10"), Denied: netip.MustParseAddr("198.51.100.10")}
	c.svc.outside = o
	if err := netnstest.LinkNS(ns, "eth0", "", c.VNet, "outside", ""); err != nil {
		return nil, err
	}
	for _, cmd := range [][]string{
		{"ip", "addr", "add", o.Allowed.String() + "/24", "dev", "eth0"},
		{"ip", "addr", "add", o.Denied.String() + "/24", "dev", "eth0"},
		{"ip", "route", "add", "default", "via", "203.0.113.1"},
	} {
		if _, err := ns.Exec(cmd[0], cmd[1:]...); err != nil {
			return nil, err
		}
	}
	for _, gw := range []string{"203.0.113.1/24", "198.51.100.1/24"} {
		if _, err := c.VNet.Exec("ip", "addr", "add", gw, "dev", "outside"); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// TCPConnect reports whether a TCP connection from the outside host's
// address from to dst is established within timeout.
func (o *Outside) TCPConnect(from netip.Addr, dst netip.AddrPort, timeout time.Duration) bool {
	ok := false
	_ = o.NS.Do(func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
		conn, err := d.Dial("tcp", dst.String())
		if err == nil {
			ok = true
			conn.Close()
		}
		return nil
	})
	return ok
}

// SetLoadBalancerIP gives a LoadBalancer Service its address, as the
// cloud's controller would (status.loadBalancer.ingress), and returns the
// Service as stored.
func (c *Cluster) SetLoadBalancerIP(ctx context.Context, svc *corev1.Service, ip netip.Addr) (*corev1.Service, error) {
	if !LoadBalancerPrefix.Contains(ip) {
		return nil, fmt.Errorf("load-balancer address %s is not in %s", ip, LoadBalancerPrefix)
	}
	cur, err := c.Client.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	vip := corev1.LoadBalancerIPModeVIP
	cur.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String(), IPMode: &vip}}
	return c.Client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
}

// RouteLoadBalancer makes the VNet deliver a load-balancer address to
// node, as a cloud load balancer picks one backend node per flow (the
// address stays the destination: the node's kube-proxy translates it).
func (c *Cluster) RouteLoadBalancer(ip netip.Addr, node *Node) error {
	_, err := c.VNet.Exec("ip", "route", "replace", ip.String()+"/32", "via", node.IP.String())
	return err
}
