//go:build linux

// Command e2e runs the NetworkPolicy conformance cases on a simulated
// multi-node cluster, once per configuration (kube-proxy mode x NPM
// dataplane x probe mode, and x family when the pods have IPv6), and ends
// with one "CONFIGURATION: N passed, M failed" line per configuration.
//
//	go run ./test/e2e/cmd/e2e [--dataplanes iptables,nftables] [--nodes 2]
//	    [--kube-proxy none|iptables|nftables,...] [--probe-modes pod-ip,service-ip]
//	    [--cni transparent|bridge|overlay] [--ip-family ipv4|ipv6|dual]
//	    [--cases FILE] [--only 1,2,3]
//
// With kube-proxy, every pod has a Service and both probe modes run on the
// same cluster, each step probed once per mode.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mattfenwick/cyclonus/pkg/generator"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/test/cluster"
	"github.com/open-acn/acn/test/e2e"
)

func main() {
	// A flag set of its own: the cyclonus packages register Ginkgo's flags
	// on the global set, which would bury these in --help.
	fs := flag.NewFlagSet("e2e", flag.ExitOnError)
	dataplanes := fs.String("dataplanes", "iptables", "comma-separated dataplanes to run the suite against")
	nodes := fs.Int("nodes", 2, "nodes in the simulated cluster")
	cni := fs.String("cni", "transparent", "CNI mode of the pods: transparent, bridge or overlay")
	ipFamily := fs.String("ip-family", "ipv4", "the pods' addresses: ipv4, ipv6 or dual (every case runs over each family)")
	casesFile := fs.String("cases", "", "YAML/JSON file of cases (cyclonus TestCase format) instead of the generated ones")
	only := fs.String("only", "", "comma-separated case numbers (1-based) to run")
	timeout := fs.Duration("probe-timeout", 400*time.Millisecond, "timeout of one probe")
	kubeProxy := fs.String("kube-proxy", "none", "comma-separated kube-proxy modes to run a cluster with: none, iptables, nftables")
	flowLog := fs.String("flow-log", "deny", "the agents' flowLog.default (none, deny, all); each cluster's run ends with a summary of each node's flow log")
	binDir := fs.String("bin", "", "directory of azure-npm, azure-vnet, azure-vnet-ipam and podserver (default <module root>/out)")
	probeModes := fs.String("probe-modes", "pod-ip", "comma-separated probe modes (cyclonus's): pod-ip, service-ip (needs kube-proxy)")
	_ = fs.Parse(os.Args[1:]) // ExitOnError: never returns an error
	if _, err := cluster.ParseIPFamily(*ipFamily); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: --ip-family:", err)
		os.Exit(2)
	}
	var modes []generator.ProbeMode
	for _, m := range strings.Split(*probeModes, ",") {
		switch generator.ProbeMode(m) {
		case e2e.ProbeModePodIP, e2e.ProbeModeServiceIP:
			modes = append(modes, generator.ProbeMode(m))
		default:
			fmt.Fprintf(os.Stderr, "e2e: --probe-modes: %q is not pod-ip or service-ip\n", m)
			os.Exit(2)
		}
	}
	var proxies []string
	for _, kp := range strings.Split(*kubeProxy, ",") {
		switch kp {
		case "none", cluster.KubeProxyIPTables, cluster.KubeProxyNFTables:
			proxies = append(proxies, kp)
		default:
			fmt.Fprintf(os.Stderr, "e2e: --kube-proxy: %q is not none, iptables or nftables\n", kp)
			os.Exit(2)
		}
		if kp == "none" && slices.Contains(modes, e2e.ProbeModeServiceIP) {
			fmt.Fprintln(os.Stderr, "e2e: --probe-modes service-ip needs --kube-proxy iptables or nftables")
			os.Exit(2)
		}
	}
	// Interrupted (SIGINT, SIGTERM, stdout closed), the run stops and
	// removes every namespace, process and directory it made.
	owned.Main(func(ctx context.Context) error {
		return run(ctx, *dataplanes, *nodes, *cni, *ipFamily, *casesFile, *only, *timeout, proxies, modes, *binDir, *flowLog)
	})
}

func run(ctx context.Context, dataplanes string, nodes int, cni, ipFamily, casesFile, only string, timeout time.Duration, proxies []string, modes []generator.ProbeMode, binDir, flowLog string) error {
	var cases []*generator.TestCase
	if casesFile != "" {
		var err error
		if cases, err = e2e.LoadCases(casesFile); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(2)
		}
	}
	var onlyIdx []int
	for _, f := range strings.Split(only, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "e2e: --only: %q is not a case number\n", f)
			os.Exit(2)
		}
		onlyIdx = append(onlyIdx, n-1)
	}
	var summary []string
	failed := false
	// Every namespace the run makes is its own; the machine's root network
	// namespace must be the same afterwards (kube-proxy runs only in the
	// nodes').
	rootBefore, rootErr := cluster.RootNetnsState()
	for _, kp := range proxies {
		for _, dp := range strings.Split(dataplanes, ",") {
			if ctx.Err() != nil {
				break
			}
			lines, ok := runOne(ctx, config{kubeProxy: kp, dataplane: dp, nodes: nodes, cni: cni, ipFamily: ipFamily, modes: modes, binDir: binDir, flowLog: flowLog}, cases, onlyIdx, timeout)
			summary = append(summary, lines...)
			failed = failed || !ok
		}
	}
	if rootErr == nil {
		if after, err := cluster.RootNetnsState(); err != nil || after != rootBefore {
			fmt.Printf("the root network namespace changed during the run (%v):\nbefore:\n%s\nafter:\n%s\n", err, rootBefore, after)
			summary = append(summary, "root network namespace: CHANGED")
			failed = true
		} else {
			summary = append(summary, "root network namespace: unchanged (iptables, ip6tables, nftables, kube-proxy's sysctls)")
		}
	}
	fmt.Println()
	for _, l := range summary {
		fmt.Println(l)
	}
	if failed {
		return errors.New("e2e: some cases failed")
	}
	return ctx.Err()
}

// config is one cluster of the run.
type config struct {
	kubeProxy, dataplane string
	nodes                int
	cni, ipFamily        string
	modes                []generator.ProbeMode
	binDir               string
	flowLog              string
}

// label names a configuration in the summary: the dataplane alone
// without kube-proxy (as before Services were part of the run).
func (c config) label(mode generator.ProbeMode, family string) string {
	l := c.dataplane
	if c.kubeProxy != "none" {
		l = fmt.Sprintf("kube-proxy %s, npm %s, %s", c.kubeProxy, c.dataplane, mode)
	}
	// IPv4 pods alone keep the historical line; with IPv6 every family
	// has its own.
	if c.ipFamily != "" && c.ipFamily != "ipv4" {
		l += " " + family
	}
	return l
}

func (c config) failedAll() []string {
	var out []string
	for _, m := range c.modes {
		out = append(out, fmt.Sprintf("%s: 0 passed, 1 failed", c.label(m, "")))
	}
	return out
}

func runOne(ctx context.Context, cfg config, cases []*generator.TestCase, only []int, timeout time.Duration) ([]string, bool) {
	dataplane := cfg.dataplane
	kp := cfg.kubeProxy
	if kp == "none" {
		kp = ""
	}
	fmt.Printf("== %s dataplane, kube-proxy %s, %d nodes, %s CNI mode, probe modes %v\n", dataplane, cfg.kubeProxy, cfg.nodes, cfg.cni, cfg.modes)
	dir, err := owned.MkdirTemp("", "acn-e2e-")
	if err != nil {
		return cfg.failedAll(), false
	}
	defer owned.RemoveDir(dir)
	c, err := cluster.New(ctx, cluster.Config{Nodes: cfg.nodes, CNIMode: cfg.cni, IPFamily: cfg.ipFamily, Dataplane: dataplane, KubeProxy: kp, Dir: dir, BinDir: cfg.binDir, FlowLogDefault: cfg.flowLog,
		Logf: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }})
	if err != nil {
		fmt.Println("cluster:", err)
		return cfg.failedAll(), false
	}
	defer c.Close()
	r, err := e2e.NewRunner(ctx, c, e2e.Options{Cases: cases, Only: only, ProbeTimeout: timeout, ProbeModes: cfg.modes})
	if err != nil {
		fmt.Println("base layout:", err)
		return cfg.failedAll(), false
	}
	reps, err := r.Run(ctx)
	if err != nil {
		fmt.Println("run:", err)
	}
	var lines []string
	ok := err == nil && len(reps) == len(c.Families())
	for _, rep := range reps {
		var ms []float64
		for _, d := range rep.StepEnforce {
			ms = append(ms, float64(d.Microseconds())/1000)
		}
		sort.Float64s(ms)
		fmt.Printf("%s: wall %.1fs; step enforcement on every node: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d steps; %d allowed probes blocked at first and retried, %d then through\n",
			cfg.label(cfg.modes[0], rep.Family), rep.Wall.Seconds(), benchfmt.Percentile(ms, 50), benchfmt.Percentile(ms, 99), benchfmt.Percentile(ms, 100), len(ms), rep.Retried, rep.Recovered)
		for _, m := range cfg.modes {
			mr := rep.Modes[m]
			for _, f := range mr.Failures {
				fmt.Printf("%s: failed %s\n", cfg.label(m, rep.Family), f)
			}
			lines = append(lines, fmt.Sprintf("%s: %d passed, %d failed", cfg.label(m, rep.Family), mr.Passed, mr.Failed))
		}
		ok = ok && rep.Failed == 0
	}
	if len(lines) == 0 {
		lines = cfg.failedAll()
	}
	for _, n := range c.Nodes {
		flowSummary(dataplane, n.Name, n.NPMFlowLog())
	}
	if cfg.kubeProxy != "none" && ctx.Err() == nil {
		line, extOK := external(ctx, c, cfg)
		lines = append(lines, line)
		ok = ok && extOK
	}
	if ctx.Err() == nil {
		line, ntOK := nodeTraffic(ctx, c, cfg)
		lines = append(lines, line)
		ok = ok && ntOK
	}
	if cfg.kubeProxy != "none" && ctx.Err() == nil {
		line, rsOK := restarts(ctx, c, cfg)
		lines = append(lines, line)
		ok = ok && rsOK
	}
	return lines, ok
}

// restarts runs the probe loop across kube-proxy and azure-npm restarts
// and prints the table.
func restarts(ctx context.Context, c *cluster.Cluster, cfg config) (string, bool) {
	label := fmt.Sprintf("kube-proxy %s, npm %s, restarts", cfg.kubeProxy, cfg.dataplane)
	phases, err := e2e.Restarts(ctx, c, 300*time.Millisecond)
	fmt.Println()
	leaks := e2e.RenderRestarts(phases, fmt.Sprintf("kp %s, npm %s", cfg.kubeProxy, cfg.dataplane), os.Stdout)
	probes := 0
	var window time.Duration
	for _, ph := range phases {
		for _, n := range ph.Probes {
			probes += n
		}
		window = max(window, ph.Window)
	}
	line := fmt.Sprintf("%s: %d denied probes, %d got through, longest window %s", label, probes, leaks, window.Round(time.Millisecond))
	if err != nil {
		fmt.Println("restarts:", err)
		line += " (error: " + err.Error() + ")"
	}
	return line, leaks == 0 && err == nil
}

// nodeTraffic probes between nodes and pods and prints the table.
func nodeTraffic(ctx context.Context, c *cluster.Cluster, cfg config) (string, bool) {
	label := fmt.Sprintf("kube-proxy %s, npm %s, node traffic", cfg.kubeProxy, cfg.dataplane)
	checks, err := e2e.NodeTraffic(ctx, c, time.Second)
	if err != nil {
		fmt.Println("node traffic:", err)
		return label + ": 0 probes as expected, 1 not (error)", false
	}
	fmt.Println()
	bad := e2e.RenderChecks(checks, fmt.Sprintf("kp %s, npm %s", cfg.kubeProxy, cfg.dataplane), os.Stdout)
	return fmt.Sprintf("%s: %d probes as expected, %d not", label, len(checks)-bad, bad), bad == 0
}

// external probes NodePort and LoadBalancer Services from the outside host
// and prints the table.
func external(ctx context.Context, c *cluster.Cluster, cfg config) (string, bool) {
	label := fmt.Sprintf("kube-proxy %s, npm %s, NodePort/LoadBalancer from outside", cfg.kubeProxy, cfg.dataplane)
	rows, err := e2e.External(ctx, c, time.Second)
	if err != nil {
		fmt.Println("external traffic:", err)
		return label + ": 0 rows as expected, 0 fail closed (documented), 1 not (error)", false
	}
	fmt.Println()
	bad, failClosed := e2e.RenderExternal(rows, fmt.Sprintf("kp %s, npm %s", cfg.kubeProxy, cfg.dataplane), os.Stdout)
	return fmt.Sprintf("%s: %d rows as expected, %d fail closed (documented), %d not", label, len(rows)-bad-failClosed, failClosed, bad), bad == 0
}

// flowSummary prints what a node's flow log holds: attempts per verdict,
// how many were attributed to a policy rule, and a few denied ones.
func flowSummary(dataplane, node, path string) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Printf("%s: %s flow log: %v\n", dataplane, node, err)
		return
	}
	defer f.Close()
	count := map[string]int{}
	unattributed := 0
	var examples []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r flowlog.Record
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		count[r.Verdict] += r.Count
		if r.Policy == "" {
			unattributed++
		} else if r.Verdict == "deny" && !r.Repeat && len(examples) < 3 {
			examples = append(examples, flowlog.Format(r))
		}
	}
	fmt.Printf("%s: %s flow log: %d denied and %d allowed attempts logged (%d lines without a known policy)\n", dataplane, node, count["deny"], count["allow"], unattributed)
	for _, e := range examples {
		fmt.Printf("    %s\n", e)
	}
}
