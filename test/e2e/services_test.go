//go:build linux

package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/mattfenwick/cyclonus/pkg/generator"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/test/cluster"
)

// requireKubeProxy skips, saying why, when the cluster cannot run
// kube-proxy here.
func requireKubeProxy(t *testing.T) {
	t.Helper()
	cluster.Require(t)
	if m := cluster.KubeProxyToolsMissing(); len(m) > 0 {
		netnstest.Skip(t, "%v not built: run `make tools-node`", m)
	}
}

// TestConformanceServicesSubset runs a few generated cases on every
// combination of kube-proxy mode and NPM dataplane, each step probed in
// both probe modes (pod IP and the pod's Service's ClusterIP), different
// cases per combination; `make e2e` runs all 230 on each.
func TestConformanceServicesSubset(t *testing.T) {
	requireKubeProxy(t)
	k := 0
	for _, kp := range []string{cluster.KubeProxyIPTables, cluster.KubeProxyNFTables} {
		for _, dp := range []string{"iptables", "nftables"} {
			only := []int{k*57 + 8, k*57 + 36}
			k++
			t.Run(kp+"/"+dp, func(t *testing.T) {
				ctx := context.Background()
				c, err := cluster.New(ctx, cluster.Config{Dataplane: dp, KubeProxy: kp, Logf: t.Logf})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var out bytes.Buffer
				modes := []generator.ProbeMode{ProbeModePodIP, ProbeModeServiceIP}
				r, err := NewRunner(ctx, c, Options{Out: &out, Only: only, ProbeModes: modes})
				if err != nil {
					t.Fatal(err)
				}
				reps, err := r.Run(ctx)
				t.Log("\n" + out.String())
				if err != nil {
					t.Fatal(err)
				}
				if len(reps) != 1 {
					t.Fatalf("%d reports, want one (IPv4 pods)", len(reps))
				}
				rep := reps[0]
				for _, m := range modes {
					if mr := rep.Modes[m]; mr.Failed > 0 || mr.Passed != len(only) {
						t.Errorf("%s: %d passed, %d failed of %d: %v", m, mr.Passed, mr.Failed, len(only), mr.Failures)
					}
				}
			})
		}
	}
}

// TestServiceIPModeNeedsKubeProxy: the service-ip probe mode on a cluster
// without Services is a configuration error, not a run of failures.
func TestServiceIPModeNeedsKubeProxy(t *testing.T) {
	cluster.Require(t)
	ctx := context.Background()
	c, err := cluster.New(ctx, cluster.Config{NoNPM: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := NewRunner(ctx, c, Options{ProbeModes: []generator.ProbeMode{ProbeModeServiceIP}}); err == nil {
		t.Fatal("service-ip without kube-proxy must be refused")
	}
}

// TestServicesFromOutsideNodesAndRestarts runs the NodePort/LoadBalancer
// table, the node-traffic probes and the restart loop on one cluster per
// NPM dataplane (kube-proxy iptables: its FORWARD chain shares the filter
// table with the iptables dataplane). Every row must be as NetworkPolicy
// says and no denied probe may get through.
func TestServicesFromOutsideNodesAndRestarts(t *testing.T) {
	requireKubeProxy(t)
	for _, dp := range []string{"iptables", "nftables"} {
		t.Run(dp, func(t *testing.T) {
			ctx := context.Background()
			c, err := cluster.New(ctx, cluster.Config{Dataplane: dp, KubeProxy: cluster.KubeProxyIPTables, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var out bytes.Buffer
			rows, err := External(ctx, c, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 32 {
				t.Errorf("%d NodePort/LoadBalancer rows, want 32", len(rows))
			}
			if bad, _ := RenderExternal(rows, dp, &out); bad > 0 {
				t.Errorf("%d NodePort/LoadBalancer rows differ from NetworkPolicy's meaning", bad)
			}
			for _, r := range rows {
				if r.Client == "denied" && r.Observed {
					t.Errorf("the denied client got through: %+v", r)
				}
			}
			checks, err := NodeTraffic(ctx, c, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if bad := RenderChecks(checks, dp, &out); bad > 0 {
				t.Errorf("%d node-traffic probes differ from NetworkPolicy's meaning", bad)
			}
			phases, err := Restarts(ctx, c, 300*time.Millisecond)
			leaks := RenderRestarts(phases, dp, &out)
			t.Log("\n" + out.String())
			if err != nil {
				t.Fatal(err)
			}
			if leaks > 0 {
				t.Errorf("%d denied probes got through across restarts", leaks)
			}
			for _, ph := range phases {
				if ph.AllowedThrough == 0 {
					t.Errorf("%s: no allowed control probe connected: the loop proves nothing", ph.Name)
				}
			}
		})
	}
}
