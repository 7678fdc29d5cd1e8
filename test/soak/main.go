//go:build linux

// Command soak is `make soak`: hours of cluster churn compressed into
// minutes. On a one-node simulated cluster (test/cluster: the real
// kube-apiserver, pods plumbed by the CNI, a real azure-npm process) each
// cycle creates namespaces with pods and policies, waits until azure-npm
// enforces them, deletes them all and waits again — the cluster is then
// back where it started. After every cycle it prints the agent's RSS,
// goroutines and open files, the kernel objects in the node (rules, sets,
// set members) and the size of every map the agent keeps (/status
// "sizes"), once per dataplane, and exits 1 if any of them grows after
// the warm-up (tolerances in growth.go).
//
//	go run ./test/soak [--cycles 30] [--dataplanes iptables,nftables]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/test/cluster"
)

func main() {
	cycles := flag.Int("cycles", 30, "create/delete cycles per dataplane")
	dataplanes := flag.String("dataplanes", "iptables,nftables", "dataplanes to soak, one after the other")
	nss := flag.Int("namespaces", 3, "namespaces created per cycle")
	pods := flag.Int("pods", 3, "pods per namespace")
	warmup := flag.Int("warmup", 3, "first cycles not judged (caches, connection pools, heap growth)")
	window := flag.Int("window", 3, "cycles compared at the start and at the end of the judged run")
	flag.Parse()
	owned.Main(func(ctx context.Context) error {
		var failed []string
		for _, dp := range strings.Split(*dataplanes, ",") {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			grew, err := soak(ctx, dp, *cycles, *nss, *pods, *warmup, *window)
			if err != nil {
				return fmt.Errorf("%s: %w", dp, err)
			}
			for _, g := range grew {
				failed = append(failed, dp+": "+g)
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("soak: growth after the warm-up:\n  %s", strings.Join(failed, "\n  "))
		}
		fmt.Println("soak: flat on every dataplane")
		return nil
	})
}

func soak(ctx context.Context, dataplane string, cycles, nss, pods, warmup, window int) ([]string, error) {
	dir, err := owned.MkdirTemp("", "acn-soak-")
	if err != nil {
		return nil, err
	}
	defer owned.RemoveDir(dir)
	bin, _ := filepath.Abs("out")
	fmt.Printf("== %s dataplane: %d cycles of %d namespaces × %d pods with 3 policies each\n", dataplane, cycles, nss, pods)
	c, err := cluster.New(ctx, cluster.Config{Nodes: 1, Dataplane: dataplane, BinDir: bin, Dir: dir,
		Logf: func(f string, a ...any) { fmt.Printf("   "+f+"\n", a...) }})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	node := c.Nodes[0]
	fmt.Println("after each cycle (all its objects deleted); peak = kernel objects while they existed")
	fmt.Printf("%5s %7s %7s %4s %4s %6s %5s %7s %17s %5s  %s\n", "cycle", "seconds", "rss_MiB", "gor", "fds", "rules", "sets", "members", "peak rules/sets/m", "maps", "map sizes changed since cycle 1")
	var samples []sample
	for i := 1; i <= cycles; i++ {
		start := time.Now()
		var peak [3]int
		if err := cycle(ctx, c, node, i, nss, pods, func() (err error) {
			peak[0], peak[1], peak[2], err = kernelObjects(node)
			return err
		}); err != nil {
			return nil, fmt.Errorf("cycle %d: %w", i, err)
		}
		s, err := measure(node)
		if err != nil {
			return nil, fmt.Errorf("cycle %d: %w", i, err)
		}
		samples = append(samples, s)
		total := 0
		var changed []string
		for k, v := range s.Maps {
			total += v
			if len(samples) > 1 && samples[0].Maps[k] != v {
				changed = append(changed, fmt.Sprintf("%s=%d(%+d)", k, v, v-samples[0].Maps[k]))
			}
		}
		sort.Strings(changed)
		fmt.Printf("%5d %7.1f %7.1f %4.0f %4.0f %6d %5d %7d %17s %5d  %s\n", i, time.Since(start).Seconds(), s.RSSBytes/(1<<20), s.Goroutines, s.OpenFDs,
			s.Rules, s.Sets, s.Members, fmt.Sprintf("%d/%d/%d", peak[0], peak[1], peak[2]), total, strings.Join(changed, " "))
		if i == 1 {
			fmt.Printf("      maps after cycle 1: %s\n", mapsLine(s.Maps))
		}
	}
	fmt.Printf("      maps after cycle %d: %s\n", cycles, mapsLine(samples[len(samples)-1].Maps))
	grew := growth(samples, warmup, window)
	for _, g := range grew {
		fmt.Printf("%s: GROWTH: %s\n", dataplane, g)
	}
	if len(grew) == 0 {
		fmt.Printf("%s: flat over cycles %d-%d (warm-up %d)\n", dataplane, warmup+1, cycles, warmup)
	}
	return grew, nil
}

func mapsLine(m map[string]int) string {
	var kv []string
	for k, v := range m {
		kv = append(kv, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(kv)
	return strings.Join(kv, " ")
}

// cycle creates nss namespaces (labelled so the policies' selectors match
// across them) with pods and three policies each, waits until azure-npm
// enforces everything, then deletes the namespaces and waits again.
func cycle(ctx context.Context, c *cluster.Cluster, node *cluster.Node, i, nss, pods int, atPeak func() error) error {
	var writes []cluster.Write
	var names []string
	port := []cluster.ContainerPort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	for n := 0; n < nss; n++ {
		name := fmt.Sprintf("soak-%d-%d", i, n)
		names = append(names, name)
		team := []string{"x", "y"}[n%2]
		w, err := c.CreateNamespace(ctx, name, map[string]string{"team": team})
		if err != nil {
			return err
		}
		writes = append(writes, w)
		for p := 0; p < pods; p++ {
			app := []string{"a", "b", "c"}[p%3]
			_, w, err := c.CreatePod(ctx, node, name, fmt.Sprintf("pod-%d", p), map[string]string{"app": app}, port)
			if err != nil {
				return err
			}
			writes = append(writes, w)
		}
		for _, np := range policies(name) {
			w, err := c.CreatePolicy(ctx, np)
			if err != nil {
				return err
			}
			writes = append(writes, w)
		}
	}
	if _, err := c.WaitEnforced(ctx, writes, 2*time.Minute); err != nil {
		return err
	}
	if err := atPeak(); err != nil {
		return err
	}
	writes = nil
	for _, name := range names {
		ws, err := c.DeleteNamespace(ctx, name)
		if err != nil {
			return err
		}
		writes = append(writes, ws...)
	}
	_, err := c.WaitEnforced(ctx, writes, 2*time.Minute)
	return err
}

// policies of one namespace: default deny ingress, ingress to app=a on the
// named port from app=a pods of team=x namespaces, egress from app=b to
// the VNet except one block.
func policies(ns string) []*networkingv1.NetworkPolicy {
	http := intstr.FromString("http")
	tcp := corev1.ProtocolTCP
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	return []*networkingv1.NetworkPolicy{
		{ObjectMeta: meta("deny-ingress"), Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
		{ObjectMeta: meta("allow-a"), Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}}}}}},
		{ObjectMeta: meta("egress-b"), Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "b"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.224.0.0/16", Except: []string{"10.224.9.0/24"}}}}}}}},
	}
}

// measure samples the node's agent: process figures from /metrics (the
// network listener), map sizes from /status (the local socket), kernel
// objects from the node.
func measure(node *cluster.Node) (sample, error) {
	var s sample
	metrics, err := node.NPMMetrics()
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(strings.NewReader(string(metrics)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_goroutines":
			s.Goroutines = v
		case "process_resident_memory_bytes":
			s.RSSBytes = v
		case "process_open_fds":
			s.OpenFDs = v
		}
	}
	if s.RSSBytes == 0 {
		return s, errors.New("/metrics has no process_resident_memory_bytes")
	}
	status, err := node.NPMGet("/status")
	if err != nil {
		return s, err
	}
	var st struct {
		Sizes map[string]int `json:"sizes"`
	}
	if err := json.Unmarshal(status, &st); err != nil {
		return s, err
	}
	if len(st.Sizes) == 0 {
		return s, errors.New("/status has no sizes")
	}
	s.Maps = st.Sizes
	s.Rules, s.Sets, s.Members, err = kernelObjects(node)
	return s, err
}

// kernelObjects counts what NPM has in the node's kernel: iptables rules
// in or jumping to ACN-NPM chains (both backends, both families), ipsets
// acn-npm* and their members, and the rules, sets and set elements of
// the nftables table inet azure-npm.
func kernelObjects(node *cluster.Node) (rules, sets, members int, err error) {
	for _, tool := range []string{"iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save"} {
		out, err := node.NS.Exec(tool)
		if err != nil {
			continue // the backend is not installed
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "-A ") && strings.Contains(l, "ACN-NPM") {
				rules++
			}
		}
	}
	if out, err := node.NS.Exec("ipset", "save"); err == nil {
		for _, l := range strings.Split(out, "\n") {
			switch {
			case strings.HasPrefix(l, "create acn-npm"):
				sets++
			case strings.HasPrefix(l, "add acn-npm"):
				members++
			}
		}
	}
	out, nerr := node.NS.Exec("nft", "-j", "list", "table", "inet", "azure-npm")
	if nerr != nil {
		return rules, sets, members, nil // no table: the iptables dataplane
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return 0, 0, 0, fmt.Errorf("nft -j: %w", err)
	}
	for _, o := range doc.Nftables {
		if _, ok := o["rule"]; ok {
			rules++
		}
		for _, kind := range []string{"set", "map"} {
			if raw, ok := o[kind]; ok {
				sets++
				var set struct {
					Elem []json.RawMessage `json:"elem"`
				}
				_ = json.Unmarshal(raw, &set)
				members += len(set.Elem)
			}
		}
	}
	return rules, sets, members, nil
}
