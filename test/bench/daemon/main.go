//go:build linux

// Command daemon benchmarks the azure-npm binary against the real
// kube-apiserver at the reference scale (10,000 pods, 100 namespaces,
// 1,000 policies, 250 pods on the node): time from start to ready, event ->
// enforced latency (API write accepted -> the node's daemon reports it
// programmed in the kernel) for pod add, label change and policy add, and
// the daemon's RSS and CPU. The latencies are measured twice: quiet, and
// under a flood of queries on the agent's local socket (-flood-qps, mixed
// /status, /status?object= and /explain), side by side, so a query load
// that slowed enforcement would show.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/test/cluster"
)

func main() {
	out := flag.String("out", "out/bench/daemon.json", "result file")
	samples := flag.Int("samples", 100, "events measured per kind (100, so p99 is not just the maximum)")
	pods := flag.Int("pods", 10000, "pods in the cluster")
	policies := flag.Int("policies", 1000, "policies in the cluster")
	dataplanes := flag.String("dataplanes", "iptables,nftables", "dataplanes to measure, one after the other on the same cluster")
	floodQPS := flag.Int("flood-qps", 1000, "queries per second on the local socket during the flood round (0: no flood round)")
	floodMin := flag.Duration("flood-min", 10*time.Second, "the flood lasts at least this long")
	binDir := flag.String("bin", "out", "directory of the azure-npm (and CNI) binaries to measure")
	batchWindow := flag.Duration("batch-window", 20*time.Millisecond, "the agents' batchWindow (the default configuration's)")
	heapDir := flag.String("heap-profile", "", "directory to write each dataplane's heap profile (pprof, after the quiet round) to")
	churnRate := flag.Int("churn-rate", 200, "label changes per second cluster-wide during the churn round (0: no churn round)")
	churnFor := flag.Duration("churn-for", 15*time.Second, "how long the churn round lasts")
	flag.Parse()
	fl := flood{qps: *floodQPS, min: *floodMin}
	ch := churn{rate: *churnRate, dur: *churnFor}
	opts := options{batchWindow: *batchWindow, heapDir: *heapDir, binDir: *binDir}
	owned.Main(func(ctx context.Context) error {
		if err := run(ctx, *out, *samples, *pods, *policies, strings.Split(*dataplanes, ","), fl, ch, opts); err != nil {
			return fmt.Errorf("bench daemon: %w", err)
		}
		return nil
	})
}

type options struct {
	batchWindow time.Duration
	heapDir     string
	binDir      string
}

func run(ctx context.Context, out string, samples, nPods, nPolicies int, dataplanes []string, fl flood, ch churn, opts options) error {
	dir, err := owned.MkdirTemp("", "acn-bench-daemon-")
	if err != nil {
		return err
	}
	defer owned.RemoveDir(dir)
	bin, _ := filepath.Abs(opts.binDir)
	c, err := cluster.New(ctx, cluster.Config{Nodes: 1, NoNPM: true, BinDir: bin, Dir: dir,
		NPMConfig: fmt.Sprintf("batchWindow: %s\n", opts.batchWindow)})
	if err != nil {
		return err
	}
	defer c.Close()
	node := c.Nodes[0]
	cfg := scaleworld.Default(node.Name)
	cfg.Pods, cfg.Policies = nPods, nPolicies
	w := scaleworld.Build(cfg)
	t0 := time.Now()
	if err := load(ctx, c.Client, w); err != nil {
		return err
	}
	fmt.Printf("loaded %d namespaces, %d pods, %d policies into the API server in %.1fs\n", len(w.Namespaces), len(w.Pods), len(w.Policies), time.Since(t0).Seconds())

	var rs []benchfmt.Result
	for i, dp := range dataplanes {
		r, err := measureDataplane(ctx, c, node, w, cfg, dp, i, samples, fl, ch, opts)
		if err != nil {
			return fmt.Errorf("%s: %w", dp, err)
		}
		rs = append(rs, r...)
	}
	benchfmt.PrintTable(os.Stdout, rs)
	return benchfmt.WriteJSON(out, rs)
}

// measureDataplane starts azure-npm with one dataplane on the loaded
// cluster (the previous run's rules are replaced by its first sync) and
// measures it; new objects get names of their own per dataplane.
func measureDataplane(ctx context.Context, c *cluster.Cluster, node *cluster.Node, w *scaleworld.World, cfg scaleworld.Config, dp string, dpIndex, samples int, fl flood, ch churn, opts options) ([]benchfmt.Result, error) {
	c.SetDataplane(dp)
	start := time.Now()
	if err := node.StartNPM(ctx); err != nil {
		return nil, err
	}
	defer node.StopNPM(false)
	coldReady := time.Since(start)
	pid := node.NPMPid()
	cpuCold := cpuSeconds(pid)
	params := map[string]string{"pods": strconv.Itoa(cfg.Pods), "policies": strconv.Itoa(cfg.Policies), "local_pods": strconv.Itoa(cfg.Local), "dataplane": dp,
		"batch_window": opts.batchWindow.String()}
	rs := []benchfmt.Result{
		{Name: "npm_daemon_start_to_ready", Value: coldReady.Seconds(), Unit: "s", Params: params},
		{Name: "npm_daemon_cpu_to_ready", Value: cpuCold, Unit: "cpu-s", Params: params},
	}

	measure := func(kind, queries string, f func(i int) (cluster.Write, error)) error {
		var lat []float64
		for i := 0; i < samples; i++ {
			wr, err := f(i)
			if err != nil {
				return fmt.Errorf("%s %d: %w", kind, i, err)
			}
			t := time.Now()
			for {
				ok, err := node.ObjectEnforced(wr.Key, wr.RV)
				if ok {
					break
				}
				if time.Since(t) > 30*time.Second {
					return fmt.Errorf("%s %d: %s not enforced after 30s (%v)", kind, i, wr.Key, err)
				}
				time.Sleep(500 * time.Microsecond)
			}
			lat = append(lat, float64(time.Since(t).Microseconds())/1000)
		}
		p := map[string]string{"event": kind, "query_flood": queries}
		for k, v := range params {
			p[k] = v
		}
		rs = append(rs,
			benchfmt.Result{Name: "npm_event_to_enforced_p50", Value: benchfmt.Percentile(lat, 50), Unit: "ms", Params: p},
			benchfmt.Result{Name: "npm_event_to_enforced_p99", Value: benchfmt.Percentile(lat, 99), Unit: "ms", Params: p})
		return nil
	}
	// round measures the three kinds of events; objects are named by
	// dataplane and round, so each round creates its own.
	round := func(queries string) error {
		tag := fmt.Sprintf("%s-%s", dp, strings.TrimSuffix(queries, "/s"))
		sub := 2 * dpIndex
		if queries != "0" {
			sub++
		}
		if err := measure("pod_add", queries, func(i int) (cluster.Write, error) {
			p := scaleworld.Pod("ns1", fmt.Sprintf("new-%s-%d", tag, i), fmt.Sprintf("10.250.%d.%d", sub, i+2), map[string]string{"app": "app-3", "tier": "api"})
			p.Spec.NodeName = node.Name
			return createPod(ctx, c.Client, p)
		}); err != nil {
			return err
		}
		if err := measure("label_change", queries, func(i int) (cluster.Write, error) {
			return c.SetPodLabels(ctx, "ns1", fmt.Sprintf("new-%s-%d", tag, i), map[string]string{"app": "app-4", "tier": "db"})
		}); err != nil {
			return err
		}
		return measure("policy_add", queries, func(i int) (cluster.Write, error) {
			np := scaleworld.Policy(fmt.Sprintf("ns%d", i%cfg.Namespaces), fmt.Sprintf("extra-%s-%d", tag, i), i%10, i)
			return c.CreatePolicy(ctx, np)
		})
	}
	cpuBefore, wallBefore := cpuSeconds(pid), time.Now()
	if err := round("0"); err != nil {
		return nil, err
	}
	cpuSteady := (cpuSeconds(pid) - cpuBefore) / time.Since(wallBefore).Seconds()
	rss, hwm := memKiB(pid)
	if opts.heapDir != "" {
		heap, err := node.NPMGet("/debug/pprof/heap")
		if err != nil {
			return nil, fmt.Errorf("heap profile: %w", err)
		}
		if err := os.WriteFile(filepath.Join(opts.heapDir, "heap-"+dp+".pb.gz"), heap, 0o644); err != nil {
			return nil, err
		}
	}
	rs = append(rs,
		benchfmt.Result{Name: "npm_daemon_rss", Value: float64(rss) / 1024, Unit: "MiB", Params: params},
		benchfmt.Result{Name: "npm_daemon_rss_peak", Value: float64(hwm) / 1024, Unit: "MiB", Params: params},
		benchfmt.Result{Name: "npm_daemon_cpu_during_events", Value: cpuSteady * 100, Unit: "%cpu", Params: params})
	if ch.rate > 0 {
		st, err := ch.run(ctx, c, node, w, int64(dpIndex))
		if err != nil {
			return nil, fmt.Errorf("churn: %w", err)
		}
		if st.failed > 0 {
			return nil, fmt.Errorf("churn: %d of %d label changes failed", st.failed, st.failed+st.events)
		}
		p := map[string]string{"churn": fmt.Sprintf("%d/s label changes for %s", ch.rate, ch.dur)}
		for k, v := range params {
			p[k] = v
		}
		fmt.Printf("%s: churn: %d label changes in %.1fs, %d kernel transactions\n", dp, st.events, st.elapsed.Seconds(), st.transactions)
		rs = append(rs,
			benchfmt.Result{Name: "npm_churn_event_rate", Value: float64(st.events) / st.elapsed.Seconds(), Unit: "events/s", Params: p},
			benchfmt.Result{Name: "npm_churn_transactions_per_second", Value: float64(st.transactions) / st.elapsed.Seconds(), Unit: "tx/s", Params: p})
	}
	if fl.qps <= 0 {
		return rs, nil
	}
	queries := fmt.Sprintf("%d/s", fl.qps)
	stop := fl.start(node, w)
	err := round(queries)
	st := stop()
	if err != nil {
		return nil, err
	}
	fmt.Printf("%s: query flood %s: %d queries in %.1fs (%d failed, %d not sent: every sender busy)\n", dp, queries, st.served+st.failed, st.elapsed.Seconds(), st.failed, st.skipped)
	if st.failed > 0 {
		return nil, fmt.Errorf("query flood: %d of %d queries failed, first: %v", st.failed, st.served+st.failed, st.firstErr)
	}
	p := map[string]string{"query_flood": queries}
	for k, v := range params {
		p[k] = v
	}
	rs = append(rs,
		benchfmt.Result{Name: "npm_query_flood_rate", Value: float64(st.served) / st.elapsed.Seconds(), Unit: "queries/s", Params: p},
		benchfmt.Result{Name: "npm_query_flood_duration", Value: st.elapsed.Seconds(), Unit: "s", Params: p},
		benchfmt.Result{Name: "npm_query_latency_p99", Value: benchfmt.Percentile(st.latencies, 99), Unit: "ms", Params: p})
	return rs, nil
}

func createPod(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) (cluster.Write, error) {
	status := p.Status
	created, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return cluster.Write{}, err
	}
	created.Status = status
	updated, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return cluster.Write{}, err
	}
	rv, _ := strconv.ParseUint(updated.ResourceVersion, 10, 64)
	return cluster.Write{Key: "pod/" + p.Namespace + "/" + p.Name, RV: rv}, nil
}

// load creates the world with parallel clients (pods need a create and a
// status update each).
func load(ctx context.Context, cs kubernetes.Interface, w *scaleworld.World) error {
	for _, ns := range w.Namespaces {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	var firstErr error
	work := make(chan func() error)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if err := f(); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, p := range w.Pods {
		p := p
		work <- func() error { _, err := createPod(ctx, cs, p); return err }
	}
	for _, np := range w.Policies {
		np := np
		work <- func() error {
			_, err := cs.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
			return err
		}
	}
	close(work)
	wg.Wait()
	return firstErr
}

func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func memKiB(pid int) (rss, hwm int) {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			switch f[0] {
			case "VmRSS:":
				rss, _ = strconv.Atoi(f[1])
			case "VmHWM:":
				hwm, _ = strconv.Atoi(f[1])
			}
		}
	}
	return rss, hwm
}
