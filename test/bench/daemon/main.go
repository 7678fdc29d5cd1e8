//go:build linux

// Command daemon benchmarks the azure-npm binary against the real
// kube-apiserver at the reference scale (10,000 pods, 100 namespaces,
// 1,000 policies, 250 pods on the node): time from start to ready, event ->
// enforced latency (API write accepted -> the node's daemon reports it
// programmed in the kernel) for pod add, label change and policy add, and
// the daemon's RSS and CPU; for each kind also where the time went (the
// agent's npm_batch_phase_seconds: batching wait, translation, the
// dataplane transaction, publishing; rows npm_event_phase_mean) and the
// agent's own event->enforced mean, from the informer event; and the
// kernel transactions per second under a churn of label changes
// (npm_churn_transactions_per_second). The latencies are measured twice: quiet, and
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
	"time"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/procstat"
	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/npm/localsock"
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
	cpuDir := flag.String("cpu-profile", "", "directory to write each dataplane's CPU and allocation profiles (pprof cpu-DATAPLANE.pb.gz and allocs-DATAPLANE.pb.gz, over the quiet round's first -cpu-seconds) to")
	cpuSecs := flag.Int("cpu-seconds", 30, "length of the CPU profile")
	churnRate := flag.Int("churn-rate", 200, "label changes per second cluster-wide during the churn round (0: no churn round)")
	churnFor := flag.Duration("churn-for", 15*time.Second, "how long the churn round lasts")
	traceDir := flag.String("trace-dir", "", "directory to write each sample's latency (samples-<dataplane>.csv: when it started, kind, ms) and the agent's debug log (agent-<dataplane>.log, one line per transaction with its phases) to, to tell what the slowest events waited for")
	flag.Parse()
	fl := flood{qps: *floodQPS, min: *floodMin}
	ch := churn{rate: *churnRate, dur: *churnFor}
	opts := options{batchWindow: *batchWindow, heapDir: *heapDir, binDir: *binDir, cpuDir: *cpuDir, cpuSecs: *cpuSecs, traceDir: *traceDir}
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
	cpuDir      string
	cpuSecs     int
	binDir      string
	traceDir    string
}

func run(ctx context.Context, out string, samples, nPods, nPolicies int, dataplanes []string, fl flood, ch churn, opts options) error {
	dir, err := owned.MkdirTemp("", "acn-bench-daemon-")
	if err != nil {
		return err
	}
	defer owned.RemoveDir(dir)
	bin, _ := filepath.Abs(opts.binDir)
	// The product's reconcile interval, not the harness's 5s: a kernel
	// read-back holds the worker, and one every 5s would be the p99 of
	// back-to-back events rather than anything a node sees.
	npmConfig := fmt.Sprintf("batchWindow: %s\nreconcileInterval: 60s\n", opts.batchWindow)
	if opts.traceDir != "" {
		npmConfig += "log:\n  level: debug\n"
		if err := os.MkdirAll(opts.traceDir, 0o755); err != nil {
			return err
		}
	}
	c, err := cluster.New(ctx, cluster.Config{Nodes: 1, NoNPM: true, BinDir: bin, Dir: dir, NPMConfig: npmConfig})
	if err != nil {
		return err
	}
	defer c.Close()
	node := c.Nodes[0]
	cfg := scaleworld.Default(node.Name)
	cfg.Pods, cfg.Policies = nPods, nPolicies
	w := scaleworld.Build(cfg)
	t0 := time.Now()
	if err := scaleworld.Load(ctx, c.Client, w, 16); err != nil {
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
	cpuCold := procstat.CPUSeconds(pid)
	params := map[string]string{"pods": strconv.Itoa(cfg.Pods), "policies": strconv.Itoa(cfg.Policies), "local_pods": strconv.Itoa(cfg.Local), "dataplane": dp,
		"batch_window": opts.batchWindow.String()}
	rs := []benchfmt.Result{
		{Name: "npm_daemon_start_to_ready", Value: coldReady.Seconds(), Unit: "s", Params: params},
		{Name: "npm_daemon_cpu_to_ready", Value: cpuCold, Unit: "cpu-s", Params: params},
	}

	var trace *os.File
	if opts.traceDir != "" {
		f, err := os.Create(filepath.Join(opts.traceDir, "samples-"+dp+".csv"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		trace = f
		fmt.Fprintln(trace, "start,kind,query_flood,i,ms")
		defer func() {
			// the agent's log (what each transaction spent): copied before
			// the cluster's directory goes
			if b, err := os.ReadFile(node.NPMLog()); err == nil {
				_ = os.WriteFile(filepath.Join(opts.traceDir, "agent-"+dp+".log"), b, 0o644)
			}
			// its stderr: the Go runtime's (GODEBUG=gctrace=1 in the bench's environment)
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(node.NPMLog()), "azure-npm.stderr")); err == nil {
				_ = os.WriteFile(filepath.Join(opts.traceDir, "agent-"+dp+".stderr"), b, 0o644)
			}
		}()
	}
	measure := func(kind, queries string, f func(i int) (cluster.Write, error)) error {
		var lat []float64
		before, err := readPhases(node)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
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
			if trace != nil {
				fmt.Fprintf(trace, "%s,%s,%s,%d,%.3f\n", t.UTC().Format("15:04:05.000000"), kind, queries, i, lat[len(lat)-1])
			}
		}
		p := map[string]string{"event": kind, "query_flood": queries}
		for k, v := range params {
			p[k] = v
		}
		rs = append(rs,
			benchfmt.Result{Name: "npm_event_to_enforced_p50", Value: benchfmt.Percentile(lat, 50), Unit: "ms", Params: p},
			benchfmt.Result{Name: "npm_event_to_enforced_p99", Value: benchfmt.Percentile(lat, 99), Unit: "ms", Params: p})
		// Where the time went, from the agent's histograms: the mean of
		// each phase per kernel transaction of the round, and the agent's
		// own event->enforced mean (from the informer event, so the rest
		// of the p50 above is the API server's watch and the polling).
		after, err := readPhases(node)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		_, tx := after.meanMs(before, "apply")
		for _, phase := range []string{"wait", "translate", "apply", "publish"} {
			mean, _ := after.meanMs(before, phase)
			pp := map[string]string{"phase": phase, "transactions": strconv.Itoa(int(tx))}
			for k, v := range p {
				pp[k] = v
			}
			rs = append(rs, benchfmt.Result{Name: "npm_event_phase_mean", Value: mean, Unit: "ms", Params: pp})
		}
		agentKind := map[string]string{"pod_add": "pod", "label_change": "pod", "policy_add": "policy"}[kind]
		if mean, n := after.meanMs(before, "enforced/"+agentKind); n > 0 {
			rs = append(rs, benchfmt.Result{Name: "npm_event_agent_to_enforced_mean", Value: mean, Unit: "ms", Params: p})
		}
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
			rv, err := scaleworld.CreatePod(ctx, c.Client, p)
			return cluster.Write{Key: "pod/" + p.Namespace + "/" + p.Name, RV: rv}, err
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
	cpuBefore, wallBefore := procstat.CPUSeconds(pid), time.Now()
	cpuProfile := make(chan error, 1)
	if opts.cpuDir != "" {
		go func() { cpuProfile <- writeCPUProfile(ctx, node, opts, dp) }()
	} else {
		cpuProfile <- nil
	}
	if err := round("0"); err != nil {
		return nil, err
	}
	if err := <-cpuProfile; err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	cpuSteady := (procstat.CPUSeconds(pid) - cpuBefore) / time.Since(wallBefore).Seconds()
	rss, hwm := procstat.MemKiB(pid)
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

// writeCPUProfile writes the agent's CPU profile, and what it allocated
// (the garbage its collections follow), over the next opts.cpuSecs seconds
// to opts.cpuDir.
func writeCPUProfile(ctx context.Context, node *cluster.Node, opts options, dp string) error {
	timeout := time.Duration(opts.cpuSecs)*time.Second + 10*time.Second
	client := localsock.Client(node.NPMSocket(), timeout)
	allocs := make(chan error, 1)
	go func() {
		b, err := localsock.Get(ctx, client, node.NPMSocket(), fmt.Sprintf("/debug/pprof/allocs?seconds=%d", opts.cpuSecs))
		if err == nil {
			err = os.WriteFile(filepath.Join(opts.cpuDir, "allocs-"+dp+".pb.gz"), b, 0o644)
		}
		allocs <- err
	}()
	b, err := localsock.Get(ctx, client, node.NPMSocket(), fmt.Sprintf("/debug/pprof/profile?seconds=%d", opts.cpuSecs))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(opts.cpuDir, "cpu-"+dp+".pb.gz"), b, 0o644); err != nil {
		return err
	}
	return <-allocs
}
