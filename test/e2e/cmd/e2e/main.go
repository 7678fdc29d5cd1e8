//go:build linux

// Command e2e runs the NetworkPolicy conformance cases on a simulated
// multi-node cluster, once per dataplane and (dual-stack) once per family,
// and ends with one "DATAPLANE: N passed, M failed" line per dataplane
// ("DATAPLANE FAMILY: ..." per family when the pods have IPv6).
//
//	go run ./test/e2e/cmd/e2e [--dataplanes iptables,nftables] [--nodes 2]
//	    [--cni transparent|bridge|overlay] [--ip-family ipv4|ipv6|dual]
//	    [--cases FILE] [--only 1,2,3]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
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
	flowLog := fs.String("flow-log", "deny", "the agents' flowLog.default (none, deny, all); the run ends with a summary of each node's flow log")
	_ = fs.Parse(os.Args[1:]) // ExitOnError: never returns an error
	if _, err := cluster.ParseIPFamily(*ipFamily); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: --ip-family:", err)
		os.Exit(2)
	}
	// Interrupted (SIGINT, SIGTERM, stdout closed), the run stops and
	// removes every namespace, process and directory it made.
	owned.Main(func(ctx context.Context) error {
		return run(ctx, *dataplanes, *nodes, *cni, *ipFamily, *casesFile, *only, *timeout, *flowLog)
	})
}

func run(ctx context.Context, dataplanes string, nodes int, cni, ipFamily, casesFile, only string, timeout time.Duration, flowLog string) error {
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
	for _, dp := range strings.Split(dataplanes, ",") {
		if ctx.Err() != nil {
			break
		}
		lines, ok := runOne(ctx, dp, nodes, cni, ipFamily, cases, onlyIdx, timeout, flowLog)
		summary = append(summary, lines...)
		failed = failed || !ok
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

func runOne(ctx context.Context, dataplane string, nodes int, cni, ipFamily string, cases []*generator.TestCase, only []int, timeout time.Duration, flowLog string) ([]string, bool) {
	fmt.Printf("== %s dataplane, %d nodes, %s CNI mode, %s pods\n", dataplane, nodes, cni, ipFamily)
	failed := func() ([]string, bool) { return []string{fmt.Sprintf("%s: 0 passed, 1 failed", dataplane)}, false }
	dir, err := owned.MkdirTemp("", "acn-e2e-")
	if err != nil {
		return failed()
	}
	defer owned.RemoveDir(dir)
	c, err := cluster.New(ctx, cluster.Config{Nodes: nodes, CNIMode: cni, Dataplane: dataplane, IPFamily: ipFamily, Dir: dir, FlowLogDefault: flowLog,
		Logf: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }})
	if err != nil {
		fmt.Println("cluster:", err)
		return failed()
	}
	defer c.Close()
	r, err := e2e.NewRunner(ctx, c, e2e.Options{Cases: cases, Only: only, ProbeTimeout: timeout})
	if err != nil {
		fmt.Println("base layout:", err)
		return failed()
	}
	reps, err := r.Run(ctx)
	if err != nil {
		fmt.Println("run:", err)
	}
	// One family keeps the historical "DATAPLANE: ..." line.
	label := func(rep *e2e.Report) string {
		if len(c.Families()) == 1 && rep.Family == cluster.IPv4 {
			return dataplane
		}
		return dataplane + " " + rep.Family
	}
	var lines []string
	ok := err == nil && len(reps) == len(c.Families())
	for _, rep := range reps {
		var ms []float64
		for _, d := range rep.StepEnforce {
			ms = append(ms, float64(d.Microseconds())/1000)
		}
		sort.Float64s(ms)
		fmt.Printf("%s: wall %.1fs; step enforcement on every node: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d steps\n",
			label(rep), rep.Wall.Seconds(), benchfmt.Percentile(ms, 50), benchfmt.Percentile(ms, 99), benchfmt.Percentile(ms, 100), len(ms))
		for _, f := range rep.Failures {
			fmt.Printf("%s: failed %s\n", label(rep), f)
		}
		lines = append(lines, fmt.Sprintf("%s: %d passed, %d failed", label(rep), rep.Passed, rep.Failed))
		ok = ok && rep.Failed == 0
	}
	for _, n := range c.Nodes {
		flowSummary(dataplane, n.Name, n.NPMFlowLog())
	}
	if len(lines) == 0 {
		return failed()
	}
	return lines, ok
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
