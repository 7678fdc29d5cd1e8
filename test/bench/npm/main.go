//go:build linux

// Command npm benchmarks the NPM core (translator + dataplane) with the
// iptables/ipset and the nftables dataplanes side by side, in throw-away
// network namespaces, on the same cluster (internal/scaleworld): cold
// programming time at 10,000 pods / 100 namespaces / 1,000 policies (250
// local pods and all local), kernel objects per policy, incremental event →
// kernel latency, a no-op reconcile, and connection setup rate through the
// node with the policies vs none.
//
//	go run ./test/bench/npm -out out/bench/npm.json [-dataplanes iptables,nftables]
//
// The iptables rows carry no dataplane param (they predate the nftables
// dataplane), the nftables rows dataplane=nftables. What differs between
// the dataplanes (constructor, kernel object counts, the node's conntrack
// baseline, row labels) is in dataplanes.go.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/translate"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

var (
	out        = flag.String("out", "out/bench/npm.json", "JSON results file")
	dataplanes = flag.String("dataplanes", "iptables,nftables", "dataplanes to benchmark, comma-separated, in this order")
	pods       = flag.Int("pods", 10000, "pods in the cluster")
	nss        = flag.Int("namespaces", 100, "namespaces")
	policies   = flag.Int("policies", 1000, "network policies")
	local      = flag.Int("local", 250, "pods on the benchmark node")
	events     = flag.Int("events", 100, "incremental events measured per kind")
	connDur    = flag.Duration("conn-duration", 600*time.Millisecond, "duration of each connection-rate run")
	connRounds = flag.Int("conn-rounds", 9, "alternated with/without-policy connection-rate runs (medians reported)")
	mode       = flag.String("backend", "", "iptables dataplane: backend nft, legacy or empty to detect")
	trace      = flag.Bool("trace", false, "iptables dataplane: print the duration of every tool invocation")
	cnps       = flag.Int("cluster-policies", 100, "ClusterNetworkPolicies of the second pass (0: none): cold programming and events at -local pods beside the rows without them")
	cpuprof    = flag.String("cpuprofile", "", "CPU profiles to FILE.<dataplane>.cold.<local pods> (cold programming) and FILE.<dataplane>.events (incremental events)")
)

const node = "bench-node"

// adder records one result row; kv are extra params.
type adder func(name string, v float64, unit string, kv ...string)

func main() {
	flag.Parse()
	var bs []*bench
	for _, name := range strings.Split(*dataplanes, ",") {
		b := benches[strings.TrimSpace(name)]
		if b == nil {
			die(fmt.Errorf("-dataplanes: unknown dataplane %q (iptables, nftables)", name))
		}
		bs = append(bs, b)
	}
	if os.Geteuid() != 0 {
		die(fmt.Errorf("needs root (network namespaces, iptables, ipset, nftables)"))
	}
	// Interrupted, the namespaces made so far are removed on the way out
	// (internal/owned); die does the same.
	owned.Main(func(ctx context.Context) error { return benchAll(ctx, bs) })
}

func benchAll(ctx context.Context, bs []*bench) error {
	var rs []benchfmt.Result
	for _, b := range bs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "npm bench: %s\n", b.name)
		run(ctx, b, func(name string, v float64, unit string, kv ...string) {
			p := map[string]string{"pods": fmt.Sprint(*pods), "namespaces": fmt.Sprint(*nss), "policies": fmt.Sprint(*policies)}
			kv = append(append([]string(nil), b.params...), kv...)
			for i := 0; i+1 < len(kv); i += 2 {
				p[kv[i]] = kv[i+1]
			}
			rs = append(rs, benchfmt.Result{Name: name, Value: v, Unit: unit, Params: p})
		})
	}
	benchfmt.PrintTable(os.Stdout, rs)
	return benchfmt.WriteJSON(*out, rs)
}

// run measures one dataplane: a world with -local local pods and one with
// every pod local, then the connection rate.
func run(ctx context.Context, b *bench, add adder) {
	for _, nLocal := range []int{*local, *pods} {
		lp := fmt.Sprint(nLocal)
		addL := func(name string, v float64, unit string, kv ...string) {
			add(name, v, unit, append([]string{"local_pods", lp}, kv...)...)
		}
		w := world(nLocal)
		t0 := time.Now()
		e := translate.NewEngine(translate.Options{NodeName: node})
		feed(e, w)
		tTranslate := time.Since(t0)
		st := e.State()
		e.TakeChanges()

		ns := mustNS(b.name + "-bench")
		d := b.newDP(ctx, ns)
		stop := profile(fmt.Sprintf("%s.cold.%d", b.name, nLocal))
		t1 := time.Now()
		if err := d.Apply(ctx, st, nil); err != nil {
			die(err)
		}
		tApply := time.Since(t1)
		stop()
		cold := b.coldParams(d)
		addL("npm_translate_full", ms(tTranslate), "ms")
		addL("npm_cold_program", ms(tApply), "ms", append([]string{"target", b.coldTarget}, cold...)...)
		addL("npm_cold_total", ms(tTranslate+tApply), "ms", cold...)
		b.counts(ctx, ns, addL)

		if b.restartNote != "" {
			// restart: a new process replaces what the previous one left
			d = b.newDP(ctx, ns)
			t := time.Now()
			if err := d.Apply(ctx, st, nil); err != nil {
				die(err)
			}
			addL("npm_restart_replace", ms(time.Since(t)), "ms", "note", b.restartNote)
		}

		if nLocal == *local {
			stop := profile(b.name + ".events")
			lat := incremental(ctx, e, d, w, *events)
			stop()
			for _, k := range eventKinds {
				addL("npm_event_"+k.name+"_to_kernel_p50", benchfmt.Percentile(lat[k.name], 50), "ms", "event", k.what)
				addL("npm_event_"+k.name+"_to_kernel_p99", benchfmt.Percentile(lat[k.name], 99), "ms", "event", k.what, "target", "<=50")
			}
		}
		if nLocal == *local && *cnps > 0 {
			clusterPass(ctx, b, w, addL)
		}
		t2 := time.Now()
		n, err := d.Reconcile(ctx)
		if err != nil {
			die(err)
		}
		addL("npm_reconcile_noop", ms(time.Since(t2)), "ms", "repairs", fmt.Sprint(n))
		_ = d.Cleanup(ctx)
		_ = ns.Delete()
	}

	bare, base, with := connRate(ctx, b)
	c := b.conn
	if c.bare != nil {
		add("npm_conn_rate_bare_node", bare, "conn/s", c.bare...)
	}
	add("npm_conn_rate_no_policy", base, "conn/s", c.base...)
	add("npm_conn_rate_1000_policies", with, "conn/s", append([]string{"local_pods", fmt.Sprint(*local)}, c.with...)...)
	add("npm_conn_rate_ratio", 100*with/base, "%", append([]string{"target", ">=90"}, c.ratio...)...)
	if c.bare != nil {
		add("npm_conn_rate_ratio_vs_bare", 100*with/bare, "%", c.ratioBare...)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func die(err error) {
	fmt.Fprintln(os.Stderr, "npm bench:", err)
	owned.Exit(1)
}

func mustNS(name string) *netnstest.NS {
	ns, err := netnstest.Create(name)
	if err != nil {
		die(err)
	}
	return ns
}

// profile starts a CPU profile to -cpuprofile.suffix (when set) and
// returns its stop.
func profile(suffix string) (stop func()) {
	if *cpuprof == "" {
		return func() {}
	}
	f, err := os.Create(*cpuprof + "." + suffix)
	if err != nil {
		die(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		die(err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }
}

// world is the benchmark cluster with nLocal pods on the node, a random
// sample spread over namespaces and apps.
func world(nLocal int) *scaleworld.World {
	return scaleworld.Build(scaleworld.Config{Pods: *pods, Namespaces: *nss, Policies: *policies, Local: nLocal, Node: node, RandomLocal: true})
}

func feed(e *translate.Engine, w *scaleworld.World) {
	for _, n := range w.Namespaces {
		e.UpsertNamespace(n)
	}
	for _, p := range w.Pods {
		e.UpsertPod(p)
	}
	for _, p := range w.Policies {
		e.UpsertPolicy(p)
	}
}

var eventKinds = []struct{ name, what string }{
	{"pod_add", "new local replica of a local pod (existing policy combination)"},
	{"pod_add_new_combination", "new local pod with labels no local pod has (new dispatch group: chains change)"},
	{"remote_pod_add", "new pod on another node (peer sets change)"},
	{"label_change", "label change of a random pod (cluster-wide)"},
}

// incremental measures event → kernel: the engine update plus the Apply of
// its changes, returned. n events of each kind, interleaved.
func incremental(ctx context.Context, e *translate.Engine, d dataplane.Dataplane, w *scaleworld.World, n int) map[string][]float64 {
	return incrementalWith(ctx, e, d, w, n, nil)
}

// incrementalWith is incremental plus, when cnps is set, a fifth kind:
// a ClusterNetworkPolicy's priority moves and its first rule's action
// flips (Deny/Pass).
func incrementalWith(ctx context.Context, e *translate.Engine, d dataplane.Dataplane, w *scaleworld.World, n int, cnps []*cnpv1.ClusterNetworkPolicy) map[string][]float64 {
	kinds := eventKinds
	if cnps != nil {
		kinds = append(append([]struct{ name, what string }(nil), eventKinds...), cnpEventKind)
	}
	r := rand.New(rand.NewSource(1))
	var locals []*corev1.Pod
	for _, p := range w.Pods {
		if p.Spec.NodeName == node {
			locals = append(locals, p)
		}
	}
	lat := map[string][]float64{}
	next := *pods
	for i := 0; i < n*len(kinds); i++ {
		kind := kinds[i%len(kinds)].name
		if kind == cnpEventKind.name {
			c := cnps[r.Intn(len(cnps))].DeepCopy()
			c.Spec.Priority = int32(len(cnps) + i)
			for j := range c.Spec.Ingress[:min(1, len(c.Spec.Ingress))] {
				c.Spec.Ingress[j].Action = flip(c.Spec.Ingress[j].Action)
			}
			for j := range c.Spec.Egress[:min(1, len(c.Spec.Egress))] {
				c.Spec.Egress[j].Action = flip(c.Spec.Egress[j].Action)
			}
			t0 := time.Now()
			e.UpsertClusterPolicy(c)
			if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
				die(err)
			}
			lat[kind] = append(lat[kind], ms(time.Since(t0)))
			continue
		}
		name, ip := fmt.Sprintf("new%d", i), scaleworld.PodIP(next)
		var p *corev1.Pod
		switch kind {
		case "pod_add":
			src := locals[r.Intn(len(locals))]
			p = scaleworld.Pod(src.Namespace, name, ip, src.Labels)
			p.Spec.NodeName = node
		case "pod_add_new_combination":
			p = scaleworld.Pod(fmt.Sprintf("ns%d", r.Intn(*nss)), name, ip, map[string]string{"app": fmt.Sprintf("app-x%d", i), "tier": []string{"web", "api", "db"}[r.Intn(3)]})
			p.Spec.NodeName = node
		case "remote_pod_add":
			p = scaleworld.Pod(fmt.Sprintf("ns%d", r.Intn(*nss)), name, ip, map[string]string{"app": fmt.Sprintf("app-%d", r.Intn(20)), "tier": "api"})
			p.Spec.NodeName = "other"
		default:
			p = w.Pods[r.Intn(len(w.Pods))].DeepCopy()
			p.Labels["app"] = fmt.Sprintf("app-%d", r.Intn(20))
		}
		next++
		t0 := time.Now()
		e.UpsertPod(p)
		if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			die(err)
		}
		lat[kind] = append(lat[kind], ms(time.Since(t0)))
	}
	return lat
}

// connRate measures TCP connections/s from a client pod through the node
// to a server pod: on a bare node (when the dataplane reports it), on a
// node with the conntrack baseline of a Kubernetes node and no NPM, and
// with the -local world programmed (the server and client are local pods
// selected by policies). Returns medians.
func connRate(ctx context.Context, b *bench) (bare, base, with float64) {
	nodeNS := mustNS(b.name + "-bench-node")
	defer nodeNS.Delete()
	cli := mustNS(b.name + "-bench-cli")
	defer cli.Delete()
	srv := mustNS(b.name + "-bench-srv")
	defer srv.Delete()
	if _, err := nodeNS.Exec("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		die(err)
	}
	if err := netnstest.LinkNS(nodeNS, "vcli", "10.200.1.1/24", cli, "eth0", "10.200.1.2/24"); err != nil {
		die(err)
	}
	if err := netnstest.LinkNS(nodeNS, "vsrv", "10.200.2.1/24", srv, "eth0", "10.200.2.2/24"); err != nil {
		die(err)
	}
	for _, c := range []struct {
		ns *netnstest.NS
		gw string
	}{{cli, "10.200.1.1"}, {srv, "10.200.2.1"}} {
		if _, err := c.ns.Exec("ip", "route", "add", "default", "via", c.gw); err != nil {
			die(err)
		}
	}
	_, _ = cli.Exec("sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000", "net.ipv4.tcp_tw_reuse=1")
	var l net.Listener
	if err := srv.Do(func() error { var err error; l, err = net.Listen("tcp", ":8080"); return err }); err != nil {
		die(err)
	}
	defer l.Close()
	probe.AcceptAndClose(l)
	measure := func() float64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(*connDur)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = cli.Do(func() error {
					for time.Now().Before(stop) {
						c, err := net.DialTimeout("tcp", "10.200.2.2:8080", time.Second)
						if err == nil {
							c.Close()
							n.Add(1)
						}
					}
					return nil
				})
			}()
		}
		wg.Wait()
		return float64(n.Load()) / connDur.Seconds()
	}
	if b.conn.bare != nil {
		var bs []float64
		for i := 0; i < 3; i++ {
			bs = append(bs, measure())
		}
		bare = benchfmt.Percentile(bs, 50)
	}
	// Every Kubernetes node tracks connections (kube-proxy), and a namespace
	// does only when some rule needs it: the baseline has it too, so the
	// ratio is the cost of NPM's rules, not of conntrack.
	b.conntrack(ctx, nodeNS)
	w := world(*local)
	server := scaleworld.Pod("ns0", "server", "10.200.2.2", map[string]string{"app": "app-0", "tier": "db"})
	client := scaleworld.Pod("ns0", "client", "10.200.1.2", map[string]string{"app": "app-6", "tier": "api"}) // egress-isolated too
	server.Spec.NodeName, client.Spec.NodeName = node, node
	w.Pods = append(w.Pods, server, client)
	e := translate.NewEngine(translate.Options{NodeName: node})
	feed(e, w)
	d := b.newDP(ctx, nodeNS)
	if err := d.Apply(ctx, e.State(), nil); err != nil {
		die(err)
	}
	var ok bool
	_ = cli.Do(func() error {
		c, err := net.DialTimeout("tcp", "10.200.2.2:8080", time.Second)
		if ok = err == nil; ok {
			c.Close()
		}
		return nil
	})
	if !ok {
		die(fmt.Errorf("%s connection-rate setup: the policies deny client -> server", b.name))
	}
	// Alternate with/without (the machine may be shared) and take medians.
	var bs, ws []float64
	for round := 0; round < *connRounds; round++ {
		ws = append(ws, measure())
		_ = d.Cleanup(ctx)
		bs = append(bs, measure())
		if err := d.Apply(ctx, e.State(), nil); err != nil {
			die(err)
		}
	}
	_ = d.Cleanup(ctx)
	return bare, benchfmt.Percentile(bs, 50), benchfmt.Percentile(ws, 50)
}

var cnpEventKind = struct{ name, what string }{"cnp_update", "a ClusterNetworkPolicy's priority and first rule's action change"}

func flip(a cnpv1.ClusterNetworkPolicyRuleAction) cnpv1.ClusterNetworkPolicyRuleAction {
	if a == cnpv1.ClusterNetworkPolicyRuleActionDeny {
		return cnpv1.ClusterNetworkPolicyRuleActionPass
	}
	return cnpv1.ClusterNetworkPolicyRuleActionDeny
}

// clusterPass programs the same world plus -cluster-policies
// ClusterNetworkPolicies (scaleworld.ClusterPolicies) into a fresh node
// and measures cold programming and event → kernel, rows npm_cnp_* with
// param cluster_policies, beside the rows of the world without them.
func clusterPass(ctx context.Context, b *bench, w *scaleworld.World, add adder) {
	cps := scaleworld.ClusterPolicies(*cnps)
	n := fmt.Sprint(len(cps))
	addC := func(name string, v float64, unit string, kv ...string) {
		add(name, v, unit, append([]string{"cluster_policies", n}, kv...)...)
	}
	t0 := time.Now()
	e := translate.NewEngine(translate.Options{NodeName: node})
	feed(e, w)
	for _, c := range cps {
		e.UpsertClusterPolicy(c)
	}
	tTranslate := time.Since(t0)
	st := e.State()
	e.TakeChanges()
	ns := mustNS(b.name + "-cnp")
	defer func() { _ = ns.Delete() }()
	d := b.newDP(ctx, ns)
	t1 := time.Now()
	if err := d.Apply(ctx, st, nil); err != nil {
		die(err)
	}
	tApply := time.Since(t1)
	addC("npm_cnp_translate_full", ms(tTranslate), "ms")
	addC("npm_cnp_cold_program", ms(tApply), "ms", append([]string{"target", b.coldTarget}, b.coldParams(d)...)...)
	b.counts(ctx, ns, func(name string, v float64, unit string, kv ...string) {
		addC("npm_cnp_"+strings.TrimPrefix(name, "npm_"), v, unit, kv...)
	})
	lat := incrementalWith(ctx, e, d, w, *events, cps)
	for _, k := range append(append([]struct{ name, what string }(nil), eventKinds...), cnpEventKind) {
		addC("npm_cnp_event_"+k.name+"_to_kernel_p50", benchfmt.Percentile(lat[k.name], 50), "ms", "event", k.what)
		addC("npm_cnp_event_"+k.name+"_to_kernel_p99", benchfmt.Percentile(lat[k.name], 99), "ms", "event", k.what, "target", "<=50")
	}
	_ = d.Cleanup(ctx)
}
