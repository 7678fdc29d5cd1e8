//go:build linux

// Command flowlog benchmarks flow logs on the iptables and nftables
// dataplanes, in throw-away network namespaces: the new-connection rate
// through a node whose client and server pods are isolated by policies
// that allow them, with flow logs on for every namespace (allow and deny,
// the default rate limit) as a ratio to flow logs off, and the CPU the
// flow-log reader (the daemon's side: NFLOG socket, attribution, JSON
// file) uses while the kernel sends at the rate limit.
//
//	go run ./test/bench/flowlog -out out/bench/flowlog.json [-dataplanes iptables,nftables]
//
// The connections of the CPU phase come from a child process (this binary
// with -flood, in the client pod's namespace), so this process's CPU time
// in that phase is the reader's.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/iptables"
	"github.com/open-acn/acn/npm/nftables"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
)

var (
	out        = flag.String("out", "out/bench/flowlog.json", "JSON results file")
	dataplanes = flag.String("dataplanes", "iptables,nftables", "dataplanes to benchmark, comma-separated")
	connDur    = flag.Duration("conn-duration", 600*time.Millisecond, "duration of each connection-rate run")
	rounds     = flag.Int("conn-rounds", 9, "alternated on/off connection-rate runs (medians reported)")
	cpuDur     = flag.Duration("cpu-duration", 5*time.Second, "duration of the CPU phase")
	flood      = flag.Duration("flood", 0, "internal: open connections to -flood-addr for this long (the child process)")
	floodAddr  = flag.String("flood-addr", "", "internal: address the child connects to")
)

const node = "bench-node"

func main() {
	flag.Parse()
	if *flood > 0 {
		n := connect(*floodAddr, *flood, 4)
		fmt.Println(n)
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "flowlog bench: needs root (network namespaces, iptables, nftables)")
		os.Exit(1)
	}
	owned.Main(benchAll)
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "flowlog bench:", err)
	owned.Exit(1)
}

// connect opens and closes TCP connections to addr from g goroutines for
// d; it returns how many succeeded.
func connect(addr string, d time.Duration, g int) int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return n.Load()
}

func benchAll(ctx context.Context) error {
	def := config.Default().FlowLog
	fl := dataplane.FlowLog{Group: uint16(def.NFLOGGroup), Rate: def.RatePerSecond, Burst: def.Burst}
	var rs []benchfmt.Result
	for _, name := range strings.Split(*dataplanes, ",") {
		add := func(n string, v float64, unit string, kv ...string) {
			p := map[string]string{"dataplane": name, "rate_limit": fmt.Sprintf("%d/s burst %d", fl.Rate, fl.Burst)}
			for i := 0; i+1 < len(kv); i += 2 {
				p[kv[i]] = kv[i+1]
			}
			rs = append(rs, benchfmt.Result{Name: n, Value: v, Unit: unit, Params: p})
		}
		if err := run(ctx, strings.TrimSpace(name), fl, add); err != nil {
			return err
		}
	}
	benchfmt.PrintTable(os.Stdout, rs)
	return benchfmt.WriteJSON(*out, rs)
}

func newDP(name string, ns *netnstest.NS, fl dataplane.FlowLog) (dataplane.Dataplane, error) {
	switch name {
	case "iptables":
		return iptables.New(context.Background(), iptables.Options{Runner: dataplane.Exec{Netns: ns.Path}, FlowLog: fl})
	case "nftables":
		return nftables.New(nftables.Options{NetNSPath: ns.Path, FlowLog: fl})
	}
	return nil, fmt.Errorf("-dataplanes: unknown dataplane %q (iptables, nftables)", name)
}

// state is the node's desired state: client and server pods, each
// isolated by a policy allowing the connection, flow logs fl for their
// namespace.
func state(mode policy.FlowLog) *policy.State {
	e := translate.NewEngine(translate.Options{NodeName: node, FlowLog: mode})
	pod := func(name, ip string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}}
	}
	e.UpsertPod(pod("client", "10.200.1.2"))
	e.UpsertPod(pod("server", "10.200.2.2"))
	port := intstr.FromInt32(8080)
	sel := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	e.UpsertPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "server"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: *sel("server"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("client")}}, Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}}}})
	e.UpsertPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "client"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: *sel("client"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("server")}}}}}})
	return e.State().Clone()
}

func run(ctx context.Context, name string, fl dataplane.FlowLog, add func(string, float64, string, ...string)) error {
	fmt.Fprintf(os.Stderr, "flowlog bench: %s\n", name)
	nodeNS, err := netnstest.Create(name + "-flow-node")
	if err != nil {
		return err
	}
	defer nodeNS.Delete()
	cli, err := netnstest.Create(name + "-flow-cli")
	if err != nil {
		return err
	}
	defer cli.Delete()
	srv, err := netnstest.Create(name + "-flow-srv")
	if err != nil {
		return err
	}
	defer srv.Delete()
	if _, err := nodeNS.Exec("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	for _, l := range []struct {
		ns          *netnstest.NS
		nIf, nA, pA string
		gw          string
	}{{cli, "vcli", "10.200.1.1/24", "10.200.1.2/24", "10.200.1.1"}, {srv, "vsrv", "10.200.2.1/24", "10.200.2.2/24", "10.200.2.1"}} {
		if err := netnstest.LinkNS(nodeNS, l.nIf, l.nA, l.ns, "eth0", l.pA); err != nil {
			return err
		}
		if _, err := l.ns.Exec("ip", "route", "add", "default", "via", l.gw); err != nil {
			return err
		}
	}
	_, _ = cli.Exec("sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000", "net.ipv4.tcp_tw_reuse=1")
	var ln net.Listener
	if err := srv.Do(func() error { var err error; ln, err = net.Listen("tcp", ":8080"); return err }); err != nil {
		return err
	}
	defer ln.Close()
	probe.AcceptAndClose(ln)
	dp, err := newDP(name, nodeNS, fl)
	if err != nil {
		return err
	}
	defer func() { _ = dp.Cleanup(context.Background()) }()
	off, on := state(policy.FlowLogNone), state(policy.FlowLogAll)
	dir, err := owned.MkdirTemp("", "acn-flowbench-")
	if err != nil {
		return err
	}
	defer owned.RemoveDir(dir)
	idx := &flowlog.Index{}
	idx.Update(on)
	rec, err := flowlog.Start(flowlog.Options{Node: node, Group: fl.Group, NetNSPath: nodeNS.Path, File: filepath.Join(dir, "flows.log"),
		MaxSizeMB: 100, MaxBackups: 1, Dedup: config.Default().FlowLog.DedupWindow.D(), Index: idx,
		Dropped: dp.(dataplane.FlowLogCounter).FlowLogDropped})
	if err != nil {
		return err
	}
	defer rec.Close()
	measure := func() float64 {
		var n int64
		_ = cli.Do(func() error { n = connect("10.200.2.2:8080", *connDur, 4); return nil })
		return float64(n) / connDur.Seconds()
	}
	var offs, ons []float64
	for r := 0; r < *rounds && ctx.Err() == nil; r++ {
		for _, c := range []struct {
			st  *policy.State
			out *[]float64
		}{{on, &ons}, {off, &offs}} {
			if err := dp.Apply(ctx, c.st, nil); err != nil {
				return err
			}
			*c.out = append(*c.out, measure())
		}
	}
	offRate, onRate := benchfmt.Percentile(offs, 50), benchfmt.Percentile(ons, 50)
	add("flowlog_conn_rate_off", offRate, "conn/s", "note", "client and server isolated, allowed by one rule each; no log rules")
	add("flowlog_conn_rate_on", onRate, "conn/s", "note", "the same with flow logs (allow and deny) on for the namespace")
	add("flowlog_conn_rate_ratio", 100*onRate/offRate, "%", "target", ">=90")

	// CPU of the reader while the kernel logs at the rate limit: the
	// connections come from a child process; this process also accepts
	// them (the server), so the same flood with flow logs off is the
	// baseline and the reader's share is the difference.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	phase := func(st *policy.State) (cpu time.Duration, elapsed time.Duration, conns float64, dropped uint64, err error) {
		if err := dp.Apply(ctx, st, nil); err != nil {
			return 0, 0, 0, 0, err
		}
		before, droppedBefore, t0 := cpuTime(), rec.Dropped(), time.Now()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", cli.Name, self, "-flood", cpuDur.String(), "-flood-addr", "10.200.2.2:8080")
		outp, err := cmd.Output()
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("flood child: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
		n, _ := strconv.ParseFloat(strings.TrimSpace(string(outp)), 64)
		return cpuTime() - before, time.Since(t0), n, rec.Dropped() - droppedBefore, nil
	}
	offCPU, offT, offN, _, err := phase(off)
	if err != nil {
		return err
	}
	onCPU, onT, onN, dropped, err := phase(on)
	if err != nil {
		return err
	}
	lines := 0
	if b, err := os.ReadFile(filepath.Join(dir, "flows.log")); err == nil {
		lines = strings.Count(string(b), "\n")
	}
	share := 100 * (onCPU.Seconds()/onT.Seconds() - offCPU.Seconds()/offT.Seconds())
	add("flowlog_reader_cpu_at_limit", share, "% of a core",
		"note", "this process's CPU with flow logs on minus off, same flood (it also serves the connections)",
		"attempts_on", fmt.Sprintf("%.0f/s", onN/cpuDur.Seconds()), "attempts_off", fmt.Sprintf("%.0f/s", offN/cpuDur.Seconds()),
		"messages_dropped_by_limit", fmt.Sprint(dropped), "messages_logged", fmt.Sprintf("%.0f", 2*onN-float64(dropped)), "lines_written", fmt.Sprint(lines))
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
