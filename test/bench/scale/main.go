//go:build linux

// Command scale runs one node's azure-npm in a cluster at Kubernetes'
// supported limits (by default 5,000 nodes, 150,000 pods, 2,000 namespaces,
// 10,000 policies, generated from a seed by internal/scaleworld and created
// through a real kube-apiserver + etcd), with ~30 plumbed pods on the real
// node, under steady churn: pod creates, deletes and label changes across
// the cluster, label changes of local pods and policy changes. For each
// dataplane it measures startup to ready, RSS after sync and at the end,
// CPU under churn, event->enforced of local-pod and policy events, and the
// kernel transactions caused by remote events that change no set the node
// uses. `make bench-scale`; results in out/bench/scale.json.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/procstat"
	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/npm/localsock"
	"github.com/open-acn/acn/test/cluster"
)

type config struct {
	world                scaleworld.ClusterConfig
	local                int
	dataplanes           []string
	churnFor, remoteFor  time.Duration
	churnRate, probeRate float64
	parallel             int
	bin                  string
	batchWindow          time.Duration
	// profileDir: where each dataplane's profiles go (a CPU profile of
	// the start, heap profiles after sync and at the end); "" = none
	profileDir     string
	startupProfile time.Duration
}

func main() {
	lim := scaleworld.Limits("")
	out := flag.String("out", "out/bench/scale.json", "result file")
	var c config
	flag.Int64Var(&c.world.Seed, "seed", lim.Seed, "seed of the generated world")
	flag.IntVar(&c.world.Nodes, "nodes", lim.Nodes, "nodes in the cluster (one real)")
	flag.IntVar(&c.world.Pods, "pods", lim.Pods, "pods on the other nodes (API objects only)")
	flag.IntVar(&c.world.Namespaces, "namespaces", lim.Namespaces, "namespaces")
	flag.IntVar(&c.world.Policies, "policies", lim.Policies, "NetworkPolicies")
	flag.IntVar(&c.local, "local-pods", 30, "plumbed pods on the real node")
	dataplanes := flag.String("dataplanes", "iptables,nftables", "dataplanes, one after the other on the same cluster")
	flag.DurationVar(&c.churnFor, "churn-for", 3*time.Minute, "how long the churn lasts per dataplane")
	flag.Float64Var(&c.churnRate, "churn-rate", 50, "cluster-wide pod events per second (creates, deletes, label changes)")
	flag.Float64Var(&c.probeRate, "probe-rate", 1, "local-pod label changes and policy changes per second, each timed")
	flag.DurationVar(&c.remoteFor, "remote-for", 20*time.Second, "how long the remote-only round lasts (events in a namespace no policy of the node refers to)")
	flag.IntVar(&c.parallel, "parallel", 32, "API clients creating the world")
	flag.StringVar(&c.bin, "bin", "out", "directory of the azure-npm (and CNI) binaries")
	flag.DurationVar(&c.batchWindow, "batch-window", 20*time.Millisecond, "the agent's batchWindow")
	flag.StringVar(&c.profileDir, "profile-dir", "", "directory for each dataplane's pprof profiles: CPU of the start (startup-<dp>.pb.gz), heap after sync and at the end (heap-synced-<dp>.pb.gz, heap-end-<dp>.pb.gz)")
	flag.DurationVar(&c.startupProfile, "startup-profile", 30*time.Second, "length of the start's CPU profile (from the agent's first second; with -profile-dir)")
	flag.Parse()
	c.dataplanes = strings.Split(*dataplanes, ",")
	owned.Main(func(ctx context.Context) error {
		if err := run(ctx, *out, c); err != nil {
			return fmt.Errorf("bench scale: %w", err)
		}
		return nil
	})
}

func run(ctx context.Context, out string, cfg config) error {
	dir, err := owned.MkdirTemp("", "acn-bench-scale-")
	if err != nil {
		return err
	}
	defer owned.RemoveDir(dir)
	bin, _ := filepath.Abs(cfg.bin)
	c, err := cluster.New(ctx, cluster.Config{Nodes: 1, NoNPM: true, BinDir: bin, Dir: dir,
		// The list of every pod of the cluster comes first: at 150,000
		// pods on this shared VM that alone can take minutes.
		NPMReadyTimeout: 60*time.Second + time.Duration(cfg.world.Pods/1000)*2*time.Second,
		// The product's reconcile interval, not the harness's 5s: a kernel
		// read-back every 5s would dominate the CPU measured.
		NPMConfig: fmt.Sprintf("batchWindow: %s\nreconcileInterval: 60s\n", cfg.batchWindow)})
	if err != nil {
		return err
	}
	defer c.Close()
	node := c.Nodes[0]
	cfg.world.Node = node.Name
	w := scaleworld.BuildCluster(cfg.world)
	// The world is written with protobuf, as the agents read it: the API
	// server decodes and encodes it several times cheaper than JSON, and
	// on this machine the API server's CPU is what setup waits for.
	restCfg, err := c.API.RestConfig()
	if err != nil {
		return err
	}
	restCfg.ContentType = "application/vnd.kubernetes.protobuf"
	restCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	loader, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := scaleworld.Load(ctx, loader, w, cfg.parallel); err != nil {
		return fmt.Errorf("loading the world: %w", err)
	}
	setup := time.Since(t0)
	fmt.Printf("created %d nodes, %d namespaces, %d pods, %d policies through the API in %.1fs (%d clients)\n",
		len(w.Nodes), len(w.Namespaces), len(w.Pods), len(w.Policies), setup.Seconds(), cfg.parallel)
	// The real node's pods: plumbed by the CNI, in the first namespaces,
	// with the apps the policies select.
	var local []*cluster.Pod
	for i := 0; i < cfg.local; i++ {
		ns := fmt.Sprintf("ns%d", i%cfg.world.Namespaces)
		p, _, err := c.CreatePod(ctx, node, ns, fmt.Sprintf("local%d", i), localLabels(i, 0), []cluster.ContainerPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}})
		if err != nil {
			return fmt.Errorf("local pod %d: %w", i, err)
		}
		local = append(local, p)
	}
	if _, err := c.CreateNamespace(ctx, quietNS, map[string]string{"team": "none"}); err != nil {
		return err
	}
	setup = time.Since(t0)
	fmt.Printf("setup (world, %d plumbed pods, quiet namespace) took %.1fs\n", len(local), setup.Seconds())
	params := func(dp string) map[string]string {
		return map[string]string{"dataplane": dp, "nodes": strconv.Itoa(cfg.world.Nodes), "pods": strconv.Itoa(cfg.world.Pods),
			"namespaces": strconv.Itoa(cfg.world.Namespaces), "policies": strconv.Itoa(cfg.world.Policies), "local_pods": strconv.Itoa(len(local)),
			"seed": strconv.FormatInt(cfg.world.Seed, 10), "churn": fmt.Sprintf("%g pod events/s + %g local label and %g policy changes/s for %s", cfg.churnRate, cfg.probeRate, cfg.probeRate, cfg.churnFor),
			"batch_window": cfg.batchWindow.String()}
	}
	rs := []benchfmt.Result{{Name: "scale_setup_seconds", Value: setup.Seconds(), Unit: "s", Params: params(strings.Join(cfg.dataplanes, "+"))}}
	nextPod := int64(len(w.Pods))
	for round, dp := range cfg.dataplanes {
		r, err := measure(ctx, c, node, w, cfg, local, dp, round, params(dp), &nextPod)
		if err != nil {
			return fmt.Errorf("%s: %w", dp, err)
		}
		rs = append(rs, r...)
		// Each round's results as soon as they are in: a long run cut
		// short keeps the dataplanes it measured.
		if err := benchfmt.WriteJSON(out, rs); err != nil {
			return err
		}
	}
	benchfmt.PrintTable(os.Stdout, rs)
	return benchfmt.WriteJSON(out, rs)
}

// quietNS is a namespace no policy refers to (no policy in it, and its
// team label matches no namespaceSelector): events there change no set.
const quietNS = "quiet-remote"

func localLabels(i, gen int) map[string]string {
	return map[string]string{"app": fmt.Sprintf("app-%d", (i+gen)%scaleworld.AppsPerNamespace), "tier": []string{"web", "api", "db"}[(i+gen)%3]}
}

func measure(ctx context.Context, c *cluster.Cluster, node *cluster.Node, w *scaleworld.World, cfg config, local []*cluster.Pod, dp string, round int, params map[string]string, nextPod *int64) ([]benchfmt.Result, error) {
	c.SetDataplane(dp)
	startProfile := make(chan error, 1)
	if cfg.profileDir != "" {
		go func() { startProfile <- startupProfile(ctx, node, cfg, dp) }()
	}
	start := time.Now()
	if err := node.StartNPM(ctx); err != nil {
		return nil, err
	}
	defer func() {
		node.StopNPM(false)
		if cfg.profileDir != "" { // the agent's log, for its own timings
			if b, err := os.ReadFile(node.NPMLog()); err == nil {
				_ = os.WriteFile(filepath.Join(cfg.profileDir, "azure-npm-"+dp+".log"), b, 0o644)
			}
		}
	}()
	startup := time.Since(start)
	pid := node.NPMPid()
	time.Sleep(2 * time.Second) // the first list's garbage collected
	rssSynced, _ := procstat.MemKiB(pid)
	heapSynced, err := heapInuseMiB(node)
	if err != nil {
		return nil, err
	}
	fmt.Printf("%s: ready in %.1fs, RSS %d MiB, heap in use %.0f MiB\n", dp, startup.Seconds(), rssSynced/1024, heapSynced)
	if err := saveHeap(node, cfg, "heap-synced-"+dp); err != nil {
		return nil, err
	}
	if cfg.profileDir != "" {
		if err := <-startProfile; err != nil {
			return nil, err
		}
	}

	rng := rand.New(rand.NewSource(cfg.world.Seed + int64(round)*1000))
	var rngMu sync.Mutex
	intn := func(n int) int { rngMu.Lock(); defer rngMu.Unlock(); return rng.Intn(n) }

	cpu0, wall0 := procstat.CPUSeconds(pid), time.Now()
	gen0, err := node.NPMGeneration()
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var events, failed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	// Cluster-wide pod churn on the other nodes.
	wg.Add(1)
	go func() {
		defer wg.Done()
		podChurn(ctx, c, w, cfg, "", cfg.churnRate, stop, nextPod, intn, &events, fail)
	}()
	// Timed events: a local pod's labels, and a policy of a local namespace.
	var localLat, policyLat []float64
	var latMu sync.Mutex
	timed := func(lat *[]float64, write func(i int) (cluster.Write, error)) {
		defer wg.Done()
		tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.probeRate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wr, err := write(i)
			if err != nil {
				fail(err)
				continue
			}
			t := time.Now()
			for {
				if ok, _ := node.ObjectEnforced(wr.Key, wr.RV); ok {
					break
				}
				if time.Since(t) > 30*time.Second {
					fail(fmt.Errorf("%s not enforced after 30s", wr.Key))
					break
				}
				time.Sleep(500 * time.Microsecond)
			}
			latMu.Lock()
			*lat = append(*lat, float64(time.Since(t).Microseconds())/1000)
			latMu.Unlock()
		}
	}
	wg.Add(2)
	go timed(&localLat, func(i int) (cluster.Write, error) {
		p := local[i%len(local)]
		return c.SetPodLabels(ctx, p.Namespace, p.Name, localLabels(i, round*7+i/len(local)+1))
	})
	go timed(&policyLat, func(i int) (cluster.Write, error) {
		// 20 policies, created once and then updated in turn.
		ns := local[(i%20)%len(local)].Namespace
		rngMu.Lock()
		np := scaleworld.ClusterPolicy(rng, ns, fmt.Sprintf("churn-%s-%d", dp, i%20))
		rngMu.Unlock()
		if i < 20 {
			return c.CreatePolicy(ctx, np)
		}
		return c.UpdatePolicy(ctx, np)
	})
	time.Sleep(cfg.churnFor)
	close(stop)
	wg.Wait()
	wall := time.Since(wall0).Seconds()
	cpu := (procstat.CPUSeconds(pid) - cpu0) / wall
	gen1, err := node.NPMGeneration()
	if err != nil {
		return nil, err
	}
	rssEnd, hwm := procstat.MemKiB(pid)
	heapEnd, err := heapInuseMiB(node)
	if err != nil {
		return nil, err
	}
	if err := saveHeap(node, cfg, "heap-end-"+dp); err != nil {
		return nil, err
	}
	fmt.Printf("%s: churn %.0fs: %d pod events (%d failed), %d local and %d policy changes timed, %d kernel transactions, CPU %.1f%%, RSS %d MiB (peak %d)\n",
		dp, wall, events.Load(), failed.Load(), len(localLat), len(policyLat), gen1-gen0, cpu*100, rssEnd/1024, hwm/1024)
	if failed.Load() > int64(len(localLat)+len(policyLat)+int(events.Load()))/100 {
		return nil, fmt.Errorf("churn: %d writes failed, first: %v", failed.Load(), firstErr.Load())
	}

	// Remote-only: events in a namespace no policy refers to. First let
	// the churn's last events drain: no transaction for 2s.
	var remoteEvents atomic.Int64
	g0, err := node.NPMGeneration()
	for settled := time.Now(); err == nil && time.Since(settled) < 2*time.Second; {
		time.Sleep(250 * time.Millisecond)
		var g uint64
		if g, err = node.NPMGeneration(); g != g0 {
			g0, settled = g, time.Now()
		}
	}
	if err != nil {
		return nil, err
	}
	cpuRemote0 := procstat.CPUSeconds(pid)
	stop = make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		podChurn(ctx, c, w, cfg, quietNS, cfg.churnRate, stop, nextPod, intn, &remoteEvents, fail)
	}()
	time.Sleep(cfg.remoteFor)
	close(stop)
	wg.Wait()
	time.Sleep(time.Second) // the last batch
	cpuRemote := procstat.CPUSeconds(pid) - cpuRemote0
	g1, err := node.NPMGeneration()
	if err != nil {
		return nil, err
	}
	fmt.Printf("%s: %d remote events in %s: %d kernel transactions\n", dp, remoteEvents.Load(), quietNS, g1-g0)

	withEvent := func(kind string) map[string]string {
		p := map[string]string{"event": kind}
		for k, v := range params {
			p[k] = v
		}
		return p
	}
	return []benchfmt.Result{
		{Name: "scale_startup_seconds", Value: startup.Seconds(), Unit: "s", Params: params},
		{Name: "scale_rss_mib_synced", Value: float64(rssSynced) / 1024, Unit: "MiB", Params: params},
		{Name: "scale_rss_mib_end", Value: float64(rssEnd) / 1024, Unit: "MiB", Params: params},
		{Name: "scale_rss_mib_peak", Value: float64(hwm) / 1024, Unit: "MiB", Params: params},
		{Name: "scale_heap_inuse_mib_synced", Value: heapSynced, Unit: "MiB", Params: params},
		{Name: "scale_heap_inuse_mib_end", Value: heapEnd, Unit: "MiB", Params: params},
		{Name: "scale_cpu_fraction", Value: cpu, Unit: "cores", Params: params},
		{Name: "scale_churn_event_rate", Value: float64(events.Load()) / wall, Unit: "events/s", Params: params},
		{Name: "scale_churn_transactions_per_second", Value: float64(gen1-gen0) / wall, Unit: "tx/s", Params: params},
		{Name: "scale_local_event_p50_ms", Value: benchfmt.Percentile(localLat, 50), Unit: "ms", Params: withEvent("local_label_change")},
		{Name: "scale_local_event_p99_ms", Value: benchfmt.Percentile(localLat, 99), Unit: "ms", Params: withEvent("local_label_change")},
		{Name: "scale_policy_event_p50_ms", Value: benchfmt.Percentile(policyLat, 50), Unit: "ms", Params: withEvent("policy_change")},
		{Name: "scale_policy_event_p99_ms", Value: benchfmt.Percentile(policyLat, 99), Unit: "ms", Params: withEvent("policy_change")},
		{Name: "scale_churn_cpu_ms_per_event", Value: cpu * wall * 1000 / float64(events.Load()+int64(len(localLat)+len(policyLat))), Unit: "cpu-ms", Params: params},
		{Name: "scale_remote_event_cpu_ms", Value: cpuRemote * 1000 / float64(max(remoteEvents.Load(), 1)), Unit: "cpu-ms", Params: withEvent("remote pod event changing no set")},
		{Name: "scale_remote_event_kernel_writes", Value: float64(g1 - g0), Unit: "transactions", Params: withEvent(fmt.Sprintf("%d remote pod events in a namespace no policy refers to", remoteEvents.Load()))},
	}, nil
}

// heapInuseMiB is the agent's Go heap in use (go_memstats_heap_inuse_bytes
// of its /metrics): what RSS is made of besides GC headroom and memory not
// yet returned to the OS.
func heapInuseMiB(node *cluster.Node) (float64, error) {
	m, err := node.NPMMetrics()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(m), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f / (1 << 20), err
		}
	}
	return 0, fmt.Errorf("%s: no go_memstats_heap_inuse_bytes in /metrics", node.Name)
}

// saveHeap writes the agent's heap profile to the profile directory.
func saveHeap(node *cluster.Node, cfg config, name string) error {
	if cfg.profileDir == "" {
		return nil
	}
	b, err := node.NPMGet("/debug/pprof/heap")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return os.WriteFile(filepath.Join(cfg.profileDir, name+".pb.gz"), b, 0o644)
}

// startupProfile records a CPU profile of the agent's start: it asks the
// agent's socket as soon as it answers (retrying while the agent starts).
func startupProfile(ctx context.Context, node *cluster.Node, cfg config, dp string) error {
	hc := localsock.Client(node.NPMSocket(), cfg.startupProfile+30*time.Second)
	target := fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(cfg.startupProfile.Seconds()))
	for t := time.Now(); time.Since(t) < 30*time.Second; time.Sleep(20 * time.Millisecond) {
		b, err := localsock.Get(ctx, hc, node.NPMSocket(), target)
		if err != nil {
			continue
		}
		return os.WriteFile(filepath.Join(cfg.profileDir, "startup-"+dp+".pb.gz"), b, 0o644)
	}
	return fmt.Errorf("%s: no CPU profile of the start: the agent's socket did not answer", dp)
}

// podChurn creates, deletes and relabels pods of other nodes at rate per
// second until stop: in namespace ns, or across the world's namespaces when
// ns is empty. A tick that finds every writer busy is skipped (the API
// server sets the pace; the rate achieved is reported).
func podChurn(ctx context.Context, c *cluster.Cluster, w *scaleworld.World, cfg config, ns string, rate float64, stop chan struct{}, nextPod *int64, intn func(int) int, events *atomic.Int64, fail func(error)) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	var created []*corev1.Pod // churn pods alive, to delete or relabel
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue
		}
		op := intn(3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			mu.Lock()
			var victim *corev1.Pod
			if op > 0 && len(created) > 0 {
				k := intn(len(created))
				// Out of the list while in flight: no two writers on one pod.
				victim = created[k]
				created = append(created[:k], created[k+1:]...)
			}
			mu.Unlock()
			switch {
			case victim == nil || op == 0: // create
				i := int(atomic.AddInt64(nextPod, 1))
				p := scaleworld.ClusterPod(cfg.world, rand.New(rand.NewSource(int64(i))), i)
				if ns != "" {
					p.Namespace = ns
				}
				if _, err = scaleworld.CreatePod(ctx, c.Client, p); err == nil {
					mu.Lock()
					created = append(created, p)
					mu.Unlock()
				}
			case op == 1: // delete
				zero := int64(0)
				err = c.Client.CoreV1().Pods(victim.Namespace).Delete(ctx, victim.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			default: // label change
				labels := map[string]string{"app": fmt.Sprintf("app-%d", intn(scaleworld.AppsPerNamespace)), "tier": victim.Labels["tier"]}
				err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
					_, err := c.SetPodLabels(ctx, victim.Namespace, victim.Name, labels)
					return err
				})
				mu.Lock()
				created = append(created, victim)
				mu.Unlock()
			}
			if err != nil {
				fail(err)
				return
			}
			events.Add(1)
		}()
	}
}
