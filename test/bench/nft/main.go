//go:build linux

// Command nft benchmarks the nftables dataplane of NPM (npm/nftables) in
// throw-away network namespaces, with the same cluster, policies and
// events as test/bench/npm (the iptables dataplane), so the rows sit side
// by side (params dataplane=nftables): cold programming time at 10,000
// pods / 100 namespaces / 1,000 policies (250 local pods and all 10,000
// local), incremental event -> kernel latency, table size, and connection
// setup rate through the node with the 1,000 policies vs none.
//
//	go run ./test/bench/nft -out out/bench/nft.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/nftables"
	"github.com/open-acn/acn/npm/translate"
)

var (
	out        = flag.String("out", "out/bench/nft.json", "JSON results file")
	pods       = flag.Int("pods", 10000, "pods in the cluster")
	nss        = flag.Int("namespaces", 100, "namespaces")
	policies   = flag.Int("policies", 1000, "network policies")
	local      = flag.Int("local", 250, "pods on the benchmark node")
	events     = flag.Int("events", 100, "incremental events measured per kind")
	connDur    = flag.Duration("conn-duration", time.Second, "duration of each connection-rate run")
	connRounds = flag.Int("conn-rounds", 5, "alternated with/without-policy connection-rate runs (medians reported)")
	cpuprof    = flag.String("cpuprofile", "", "write a CPU profile of the cold programming runs")
)

const node = "bench-node"

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "nft bench: needs root (network namespaces, nftables)")
		os.Exit(1)
	}
	var rs []benchfmt.Result
	add := func(name string, v float64, unit string, kv ...string) {
		p := map[string]string{"dataplane": "nftables", "pods": fmt.Sprint(*pods), "namespaces": fmt.Sprint(*nss), "policies": fmt.Sprint(*policies)}
		for i := 0; i+1 < len(kv); i += 2 {
			p[kv[i]] = kv[i+1]
		}
		rs = append(rs, benchfmt.Result{Name: name, Value: v, Unit: unit, Params: p})
	}
	ctx := context.Background()

	for _, nLocal := range []int{*local, *pods} {
		w := buildWorld(nLocal)
		t0 := time.Now()
		e := translate.NewEngine(translate.Options{NodeName: node})
		feed(e, w)
		tTranslate := time.Since(t0)
		st := e.State()
		e.TakeChanges()

		ns := mustNS("nft-bench")
		d := mustDP(ns)
		if *cpuprof != "" {
			f, err := os.Create(fmt.Sprintf("%s.%d", *cpuprof, nLocal))
			if err != nil {
				die(err)
			}
			_ = pprof.StartCPUProfile(f)
		}
		t1 := time.Now()
		if err := d.Apply(ctx, st, nil); err != nil {
			die(err)
		}
		tApply := time.Since(t1)
		if *cpuprof != "" {
			pprof.StopCPUProfile()
		}
		lp := fmt.Sprint(nLocal)
		add("npm_cold_program", ms(tApply), "ms", "local_pods", lp, "target", "<=1000")
		add("npm_cold_total", ms(tTranslate+tApply), "ms", "local_pods", lp)
		rules, sets, elems := tableCounts(ns)
		add("npm_nft_rules", float64(rules), "rules", "local_pods", lp, "families", "inet (ipv4+ipv6)")
		add("npm_nft_rules_per_policy", float64(rules)/float64(*policies), "rules/policy", "local_pods", lp)
		add("npm_nft_sets", float64(sets), "sets", "local_pods", lp, "note", "sets and verdict maps")
		add("npm_nft_set_elements", float64(elems), "elements", "local_pods", lp)

		// restart: a new process replaces the whole table in one transaction
		d2 := mustDP(ns)
		t3 := time.Now()
		if err := d2.Apply(ctx, st, nil); err != nil {
			die(err)
		}
		add("npm_restart_replace", ms(time.Since(t3)), "ms", "local_pods", lp, "note", "read back the previous table, replace it in one transaction")
		d = d2

		if nLocal == *local {
			lat := incremental(ctx, e, d, w, *events)
			for _, k := range []struct{ name, what string }{
				{"pod_add", "new local replica of a local pod (existing policy combination)"},
				{"pod_add_new_combination", "new local pod with labels no local pod has (new dispatch group: chains change)"},
				{"remote_pod_add", "new pod on another node (peer sets change)"},
				{"label_change", "label change of a random pod (cluster-wide)"},
			} {
				add("npm_event_"+k.name+"_to_kernel_p50", benchfmt.Percentile(lat[k.name], 50), "ms", "local_pods", lp, "event", k.what)
				add("npm_event_"+k.name+"_to_kernel_p99", benchfmt.Percentile(lat[k.name], 99), "ms", "local_pods", lp, "event", k.what, "target", "<=50")
			}
		}
		t2 := time.Now()
		n, err := d.Reconcile(ctx)
		if err != nil {
			die(err)
		}
		add("npm_reconcile_noop", ms(time.Since(t2)), "ms", "local_pods", lp, "repairs", fmt.Sprint(n))
		_ = d.Cleanup(ctx)
		_ = ns.Delete()
	}

	base, with := connRate(ctx)
	add("npm_conn_rate_no_policy", base, "conn/s", "note", "conntrack on in both runs")
	add("npm_conn_rate_1000_policies", with, "conn/s", "local_pods", fmt.Sprint(*local))
	add("npm_conn_rate_ratio", 100*with/base, "%", "target", ">=90")

	benchfmt.PrintTable(os.Stdout, rs)
	if err := benchfmt.WriteJSON(*out, rs); err != nil {
		die(err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func die(err error) {
	fmt.Fprintln(os.Stderr, "nft bench:", err)
	os.Exit(1)
}

func mustNS(name string) *netnstest.NS {
	ns, err := netnstest.Create(name)
	if err != nil {
		die(err)
	}
	return ns
}

func mustDP(ns *netnstest.NS) dataplane.Dataplane {
	d, err := nftables.New(nftables.Options{NetNSPath: ns.Path, Logger: zap.NewNop()})
	if err != nil {
		die(err)
	}
	return d
}

// tableCounts reads the table back with the nft CLI (an independent
// reader) and counts rules, sets/maps and their elements.
func tableCounts(ns *netnstest.NS) (rules, sets, elems int) {
	o, err := ns.Exec("nft", "-j", "list", "table", "inet", nftables.TableName)
	if err != nil {
		die(err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(o), &doc); err != nil {
		die(err)
	}
	for _, obj := range doc.Nftables {
		if _, ok := obj["rule"]; ok {
			rules++
		}
		for _, k := range []string{"set", "map"} {
			if raw, ok := obj[k]; ok {
				sets++
				var s struct {
					Elem []json.RawMessage `json:"elem"`
				}
				_ = json.Unmarshal(raw, &s)
				elems += len(s.Elem)
			}
		}
	}
	return
}

type world struct {
	nss  []*corev1.Namespace
	pods []*corev1.Pod
	pols []*networkingv1.NetworkPolicy
}

func podIP(i int) string { return fmt.Sprintf("10.%d.%d.%d", 128+i/65000, (i/250)%256, i%250+2) }

// buildWorld: pods spread over namespaces with app (20 per namespace), tier
// and a named port; 10 policy shapes per namespace covering pod and
// namespace selectors, expressions, named ports, ranges, ipBlock with
// except, egress and default deny.
func buildWorld(nLocal int) *world {
	w := &world{}
	tiers := []string{"web", "api", "db"}
	for i := 0; i < *nss; i++ {
		env := "dev"
		if i%2 == 0 {
			env = "prod"
		}
		w.nss = append(w.nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns%d", i), Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%10), "env": env}}})
	}
	every := *pods / max(nLocal, 1)
	for i := 0; i < *pods; i++ {
		p := mkPod(fmt.Sprintf("ns%d", i%*nss), fmt.Sprintf("pod%d", i), podIP(i), map[string]string{"app": fmt.Sprintf("app-%d", (i / *nss)%20), "tier": tiers[i%3]})
		if every <= 1 || i%every == 0 {
			p.Spec.NodeName = node
		} else {
			p.Spec.NodeName = "other"
		}
		w.pods = append(w.pods, p)
	}
	per := max(*policies / *nss, 1)
	for i := 0; i < *policies; i++ {
		ns := fmt.Sprintf("ns%d", i%*nss)
		k := i / *nss
		w.pols = append(w.pols, mkPolicy(ns, fmt.Sprintf("np%d", i), k%per, k))
	}
	return w
}

func mkPod(ns, name, ip string, lbls map[string]string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls}}
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	return p
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func port(p int) *intstr.IntOrString { v := intstr.FromInt32(int32(p)); return &v }

func mkPolicy(ns, name string, shape, k int) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	app := fmt.Sprintf("app-%d", k%20)
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	http := intstr.FromString("http")
	end := int32(8100)
	switch shape % 10 {
	case 0, 1, 2, 3:
		np.Spec.PodSelector = *sel("app", app)
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", fmt.Sprintf("app-%d", (k+1)%20))}}, Ports: []networkingv1.NetworkPolicyPort{{Port: port(8080)}}},
			{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", fmt.Sprintf("team-%d", k%10)), PodSelector: sel("tier", "api")}}, Ports: []networkingv1.NetworkPolicyPort{{Port: &http}}},
		}
	case 4, 5:
		np.Spec.PodSelector = *sel("tier", "db")
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"api"}}}}},
				{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.128.0.0/16"}}},
			},
			Ports: []networkingv1.NetworkPolicyPort{{Port: port(5432)}},
		}}
	case 6, 7:
		np.Spec.PodSelector = *sel("app", app)
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("env", "prod")}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: port(53)}, {Protocol: &tcp, Port: port(8000), EndPort: &end}},
		}}
	case 8:
		np.Spec.PodSelector = metav1.LabelSelector{}
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	default:
		np.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}}}}
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}}}}}}
	}
	return np
}

func feed(e *translate.Engine, w *world) {
	for _, n := range w.nss {
		e.UpsertNamespace(n)
	}
	for _, p := range w.pods {
		e.UpsertPod(p)
	}
	for _, p := range w.pols {
		e.UpsertPolicy(p)
	}
}

// incremental measures event → kernel: the engine update plus the Apply of
// its changes (one netlink transaction, acknowledged). n events of each kind, interleaved.
func incremental(ctx context.Context, e *translate.Engine, d dataplane.Dataplane, w *world, n int) map[string][]float64 {
	r := rand.New(rand.NewSource(1))
	var locals []*corev1.Pod
	for _, p := range w.pods {
		if p.Spec.NodeName == node {
			locals = append(locals, p)
		}
	}
	lat := map[string][]float64{}
	kinds := []string{"pod_add", "pod_add_new_combination", "remote_pod_add", "label_change"}
	next := *pods
	for i := 0; i < n*len(kinds); i++ {
		kind := kinds[i%len(kinds)]
		var p *corev1.Pod
		switch kind {
		case "pod_add":
			src := locals[r.Intn(len(locals))]
			p = mkPod(src.Namespace, fmt.Sprintf("new%d", i), podIP(next), src.Labels)
			p.Spec.NodeName = node
		case "pod_add_new_combination":
			p = mkPod(fmt.Sprintf("ns%d", r.Intn(*nss)), fmt.Sprintf("new%d", i), podIP(next), map[string]string{"app": fmt.Sprintf("app-x%d", i), "tier": []string{"web", "api", "db"}[r.Intn(3)]})
			p.Spec.NodeName = node
		case "remote_pod_add":
			p = mkPod(fmt.Sprintf("ns%d", r.Intn(*nss)), fmt.Sprintf("new%d", i), podIP(next), map[string]string{"app": fmt.Sprintf("app-%d", r.Intn(20)), "tier": "api"})
			p.Spec.NodeName = "other"
		default:
			p = w.pods[r.Intn(len(w.pods))].DeepCopy()
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
// to a server pod, without NPM rules and with the 1,000-policy world
// programmed (the server and client are local pods selected by policies).
func connRate(ctx context.Context) (base, with float64) {
	nodeNS := mustNS("nft-bench-node")
	defer nodeNS.Delete()
	cli := mustNS("nft-bench-cli")
	defer cli.Delete()
	srv := mustNS("nft-bench-srv")
	defer srv.Delete()
	// Connection tracking is on in every Kubernetes node (kube-proxy's NAT),
	// and a namespace registers it only when some rule needs it: a table of
	// the benchmark's own keeps it on in both measurements, so the ratio is
	// the cost of NPM's rules, not of conntrack.
	for _, c := range [][]string{{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"nft", "add table inet bench-conntrack; add chain inet bench-conntrack c { type filter hook forward priority 100; policy accept; }; add rule inet bench-conntrack c ct state new counter"}} {
		if _, err := nodeNS.Exec(c[0], c[1:]...); err != nil {
			die(err)
		}
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
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
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
	w := buildWorld(*local)
	server := mkPod("ns0", "server", "10.200.2.2", map[string]string{"app": "app-0", "tier": "db"})
	client := mkPod("ns0", "client", "10.200.1.2", map[string]string{"app": "app-6", "tier": "api"}) // egress-isolated too
	server.Spec.NodeName, client.Spec.NodeName = node, node
	w.pods = append(w.pods, server, client)
	e := translate.NewEngine(translate.Options{NodeName: node})
	feed(e, w)
	d := mustDP(nodeNS)
	if err := d.Apply(ctx, e.State(), nil); err != nil {
		die(err)
	}
	if !(func() bool {
		var ok bool
		_ = cli.Do(func() error {
			c, err := net.DialTimeout("tcp", "10.200.2.2:8080", time.Second)
			if ok = err == nil; ok {
				c.Close()
			}
			return nil
		})
		return ok
	})() {
		die(fmt.Errorf("connection-rate setup: the policies deny client -> server"))
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
	return benchfmt.Percentile(bs, 50), benchfmt.Percentile(ws, 50)
}
