//go:build linux

package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/probe"
)

// TestServicesThroughKubeProxy runs kube-proxy in each mode on a two-node
// cluster: a ClusterIP Service gets its endpoints from the Ready pod
// (EndpointSlice controller) and carries TCP, UDP and SCTP to it from a pod
// on the same node and one on the other node; the root network namespace
// is the same afterwards, and no kube-proxy is left after Close.
func TestServicesThroughKubeProxy(t *testing.T) {
	Require(t)
	if m := KubeProxyToolsMissing(); len(m) > 0 {
		netnstest.Skip(t, "%v not built: run `make tools-node`", m)
	}
	before, err := RootNetnsState()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{KubeProxyIPTables, KubeProxyNFTables} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			c, err := New(ctx, Config{KubeProxy: mode, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					c.Close()
				}
			}()
			if _, err := c.CreateNamespace(ctx, "x", map[string]string{"ns": "x"}); err != nil {
				t.Fatal(err)
			}
			var pods []*Pod
			for i, node := range []int{1, 1, 0} {
				name := string(rune('a' + i))
				p, _, err := c.CreatePod(ctx, c.Nodes[node], "x", name, map[string]string{"pod": name}, DefaultPorts())
				if err != nil {
					t.Fatal(err)
				}
				pods = append(pods, p)
			}
			svc, err := c.CreateService(ctx, PodService("x", "a", map[string]string{"pod": "a"}, DefaultPorts()))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := c.WaitServicesProgrammed(ctx, []ServiceBackend{PodServiceBackend(svc, pods[0])}, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("service %s programmed on every node %s after creation", svc.Spec.ClusterIP, time.Since(start).Round(time.Millisecond))
			vip := netip.MustParseAddr(svc.Spec.ClusterIP)
			for _, src := range pods[1:] {
				for _, proto := range []string{probe.TCP, probe.UDP, probe.SCTP} {
					if !c.ProbeTo(src, pods[0], vip, 81, proto, time.Second) {
						t.Errorf("%s -> service %s:81/%s (backend %s on %s) did not connect", src.Key(), vip, proto, pods[0].IP, pods[0].Node.Name)
					}
				}
			}
			if c.ProbeTo(pods[2], pods[0], vip, 82, probe.TCP, 300*time.Millisecond) {
				t.Error("a port the service does not expose connected")
			}
			var pids []int
			for _, n := range c.Nodes {
				if n.KubeProxyPid() == 0 {
					t.Fatalf("%s: kube-proxy not running", n.Name)
				}
				pids = append(pids, n.KubeProxyPid())
			}
			c.Close()
			closed = true
			for _, pid := range pids {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
					t.Errorf("kube-proxy %d still runs after Close", pid)
				}
			}
		})
	}
	if after, err := RootNetnsState(); err != nil || after != before {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("the root network namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
