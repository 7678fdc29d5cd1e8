//go:build linux

// Command services benchmarks new-connection setup through a Service: a
// client pod opens TCP connections to a ClusterIP whose backend, a pod on
// the same node, is selected by policies, in a simulated cluster (one
// node, the real kube-proxy, the real azure-npm daemon) holding 1,000
// policies over 100 namespaces (internal/scaleworld's shapes; the server
// is ingress-isolated and the client egress-isolated, both allowed). The
// same path without azure-npm (stopped, its rules removed with `azure-npm
// cleanup`) is the baseline, alternated with the runs with it; medians
// are reported, and the ratio's target is >= 90 %.
//
//	go run ./test/bench/services -out out/bench/services.json [-kube-proxy iptables,nftables] [-dataplanes iptables,nftables]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/internal/procstat"
	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/test/cluster"
)

func main() {
	out := flag.String("out", "out/bench/services.json", "result file")
	proxies := flag.String("kube-proxy", "iptables,nftables", "kube-proxy modes, one cluster each")
	dataplanes := flag.String("dataplanes", "iptables,nftables", "NPM dataplanes, one after the other on each cluster")
	pods := flag.Int("pods", 2000, "pods in the cluster besides the client and the server (on other nodes)")
	policies := flag.Int("policies", 1000, "policies in the cluster")
	namespaces := flag.Int("namespaces", 100, "namespaces")
	dur := flag.Duration("duration", time.Second, "duration of each connection-rate run")
	rounds := flag.Int("rounds", 9, "alternated with/without-NPM runs (medians reported)")
	binDir := flag.String("bin", "out", "directory of the azure-npm (and CNI) binaries")
	flag.Parse()
	owned.Main(func(ctx context.Context) error {
		var rs []benchfmt.Result
		for _, kp := range strings.Split(*proxies, ",") {
			r, err := runProxy(ctx, kp, strings.Split(*dataplanes, ","), *pods, *policies, *namespaces, *dur, *rounds, *binDir)
			rs = append(rs, r...)
			if err != nil {
				return fmt.Errorf("bench services (kube-proxy %s): %w", kp, err)
			}
		}
		benchfmt.PrintTable(os.Stdout, rs)
		return benchfmt.WriteJSON(*out, rs)
	})
}

func runProxy(ctx context.Context, kp string, dataplanes []string, nPods, nPolicies, nNamespaces int, dur time.Duration, rounds int, binDir string) ([]benchfmt.Result, error) {
	dir, err := owned.MkdirTemp("", "acn-bench-services-")
	if err != nil {
		return nil, err
	}
	defer owned.RemoveDir(dir)
	bin, _ := filepath.Abs(binDir)
	// The product's reconcile interval: the harness's 5 s would add
	// read-backs to the runs.
	c, err := cluster.New(ctx, cluster.Config{Nodes: 1, NoNPM: true, KubeProxy: kp, BinDir: bin, Dir: dir,
		NPMConfig: "reconcileInterval: 60s\nbatchWindow: 20ms\n", Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	node := c.Nodes[0]
	w := scaleworld.Build(scaleworld.Config{Pods: nPods, Namespaces: nNamespaces, Policies: nPolicies, Node: "other-node"})
	t0 := time.Now()
	if err := scaleworld.Load(ctx, c.Client, w, 8); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "loaded %d namespaces, %d pods, %d policies in %.1fs\n", len(w.Namespaces), len(w.Pods), len(w.Policies), time.Since(t0).Seconds())
	// Server and client as scaleworld's connection-rate pair (test/bench/npm):
	// the server (app-0, tier db, ns0) is selected by ingress policies that
	// admit tier=api pods of team-0's namespaces on its named port http;
	// the client (app-6, tier api) is egress-isolated to env=prod
	// namespaces on 8000-8100.
	http := []cluster.ContainerPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}
	server, _, err := c.CreatePod(ctx, node, "ns0", "server", map[string]string{"app": "app-0", "tier": "db"}, http)
	if err != nil {
		return nil, err
	}
	client, _, err := c.CreatePod(ctx, node, "ns0", "client", map[string]string{"app": "app-6", "tier": "api"}, http)
	if err != nil {
		return nil, err
	}
	svc, err := c.CreateService(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns0", Name: "server"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "app-0", "tier": "db"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")}}},
	})
	if err != nil {
		return nil, err
	}
	if err := c.WaitServicesProgrammed(ctx, []cluster.ServiceBackend{{Namespace: "ns0", Service: "server", ClusterIP: svc.Spec.ClusterIP,
		PortName: "http", Protocol: corev1.ProtocolTCP, IP: server.IP, Port: 8080}}, time.Minute); err != nil {
		return nil, err
	}
	vip := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80)
	if _, err := client.NS.Exec("sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000", "net.ipv4.tcp_tw_reuse=1"); err != nil {
		return nil, err
	}
	measure := func() float64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(dur)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = client.NS.Do(func() error {
					for time.Now().Before(stop) {
						conn, err := net.DialTimeout("tcp", vip.String(), time.Second)
						if err == nil {
							conn.Close()
							n.Add(1)
						}
					}
					return nil
				})
			}()
		}
		wg.Wait()
		return float64(n.Load()) / dur.Seconds()
	}
	reachable := func() bool {
		return c.ProbeTo(client, server, vip.Addr(), int(vip.Port()), probe.TCP, time.Second)
	}
	// No policy admits app-9/tier web to the server.
	intruder, _, err := c.CreatePod(ctx, node, "ns0", "intruder", map[string]string{"app": "app-9", "tier": "web"}, http)
	if err != nil {
		return nil, err
	}
	intruderThrough := func() bool {
		return c.ProbeTo(intruder, server, vip.Addr(), int(vip.Port()), probe.TCP, 500*time.Millisecond)
	}
	var rs []benchfmt.Result
	for _, dp := range dataplanes {
		c.SetDataplane(dp)
		if err := node.StartNPM(ctx); err != nil {
			return rs, err
		}
		if !reachable() {
			return rs, fmt.Errorf("%s: the policies deny client -> server through the ClusterIP", dp)
		}
		// The policies are in force: a pod they do not admit is refused.
		if intruderThrough() {
			return rs, fmt.Errorf("%s: the intruder pod reaches the server: the policies are not in force", dp)
		}
		// Each round measures with azure-npm, then without, and keeps their
		// ratio: two runs a second apart, between which the machine's load
		// drifts less than across the whole bench. The median of the
		// per-round ratios is the result.
		var with, without, ratios, npmCPU []float64
		for r := 0; r < rounds; r++ {
			if r > 0 {
				if err := node.StartNPM(ctx); err != nil {
					return rs, err
				}
			}
			pid := node.NPMPid()
			cpu0 := procstat.CPUSeconds(pid)
			with = append(with, measure())
			npmCPU = append(npmCPU, (procstat.CPUSeconds(pid)-cpu0)/dur.Seconds())
			node.StopNPM(false)
			if err := node.CleanupNPM(); err != nil {
				return rs, err
			}
			if !intruderThrough() {
				return rs, fmt.Errorf("%s: without azure-npm the intruder pod is still refused: the baseline is not policy-free", dp)
			}
			without = append(without, measure())
			ratios = append(ratios, with[r]/without[r])
		}
		base, withNPM, ratio := benchfmt.Percentile(without, 50), benchfmt.Percentile(with, 50), benchfmt.Percentile(ratios, 50)
		params := func(kv ...string) map[string]string {
			p := map[string]string{"kube_proxy": kp, "dataplane": dp, "policies": fmt.Sprint(nPolicies), "pods": fmt.Sprint(nPods + 2),
				"namespaces": fmt.Sprint(nNamespaces), "path": "client pod -> ClusterIP -> server pod, same node"}
			for i := 0; i+1 < len(kv); i += 2 {
				p[kv[i]] = kv[i+1]
			}
			return p
		}
		rs = append(rs,
			benchfmt.Result{Name: "svc_conn_rate_no_npm", Value: base, Unit: "conn/s", Params: params("node", "kube-proxy, no azure-npm")},
			benchfmt.Result{Name: "svc_conn_rate_1000_policies", Value: withNPM, Unit: "conn/s", Params: params("node", "kube-proxy + azure-npm")},
			benchfmt.Result{Name: "svc_conn_rate_ratio", Value: 100 * ratio, Unit: "%", Params: params("target", ">=90", "baseline", "same path without azure-npm",
				"statistic", fmt.Sprintf("median of %d per-round ratios", rounds))},
			benchfmt.Result{Name: "svc_conn_rate_npm_cpu", Value: 100 * benchfmt.Percentile(npmCPU, 50), Unit: "% of a core", Params: params("node", "azure-npm's own CPU during the runs with it")})
		fmt.Fprintf(os.Stderr, "kube-proxy %s, npm %s: %.0f conn/s with, %.0f without (median ratio %.1f%%; ratios %s; azure-npm CPU %s s/s; load %s)\n",
			kp, dp, withNPM, base, 100*ratio, fmtList(ratios, 100), fmtList(npmCPU, 1), loadavg())
	}
	return rs, nil
}

// fmtList prints samples scaled by k, for the progress line.
func fmtList(v []float64, k float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", k*x)
	}
	return strings.Join(parts, " ")
}

// loadavg is the machine's 1-minute load average, for the progress line:
// the runs share the CPU with everything else on the machine.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
