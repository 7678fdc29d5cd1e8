//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/iptables"
	"github.com/open-acn/acn/npm/nftables"
)

// bench is what differs between the dataplanes; the measurements are the
// same (main.go).
type bench struct {
	name       string   // -dataplanes value
	params     []string // on every row
	coldTarget string   // target of npm_cold_program, ms
	newDP      func(ctx context.Context, ns *netnstest.NS) dataplane.Dataplane
	// coldParams are extra params of the cold-programming rows.
	coldParams func(d dataplane.Dataplane) []string
	// counts adds the rows counting what the dataplane put in the kernel.
	counts func(ctx context.Context, ns *netnstest.NS, add adder)
	// restartNote, when set, measures npm_restart_replace: a new dataplane
	// (a restarted daemon) applying the same state over the old one.
	restartNote string
	// conntrack gives the connection-rate node the conntrack rules of a
	// Kubernetes node (kube-proxy) before the baseline is measured.
	conntrack func(ctx context.Context, node *netnstest.NS)
	conn      connParams
}

// connParams are the extra params of the connection-rate rows; bare nil
// means the bare-node rate is not measured.
type connParams struct{ bare, base, with, ratio, ratioBare []string }

var benches = map[string]*bench{
	"iptables": {
		name:       "iptables",
		coldTarget: "<=3000",
		newDP: func(ctx context.Context, ns *netnstest.NS) dataplane.Dataplane {
			var run dataplane.Runner = dataplane.Exec{Netns: ns.Path}
			if *trace {
				run = traceRunner{run}
			}
			d, err := iptables.New(ctx, iptables.Options{Runner: run, Logger: zap.NewNop(), Mode: iptables.Mode(*mode)})
			if err != nil {
				die(err)
			}
			return d
		},
		coldParams: func(d dataplane.Dataplane) []string {
			return []string{"backend", string(d.(*iptables.Dataplane).Mode())}
		},
		counts:    iptablesCounts,
		conntrack: kubeForward,
		conn: connParams{
			bare:      []string{"node", "no iptables rules at all (no conntrack)"},
			base:      []string{"node", "kube-proxy KUBE-FORWARD conntrack rules"},
			with:      []string{"node", "kube-proxy KUBE-FORWARD + NPM"},
			ratio:     []string{"baseline", "kube-proxy node without policies"},
			ratioBare: []string{"baseline", "node without any iptables rule"},
		},
	},
	"nftables": {
		name:       "nftables",
		params:     []string{"dataplane", "nftables"},
		coldTarget: "<=1000",
		newDP: func(_ context.Context, ns *netnstest.NS) dataplane.Dataplane {
			d, err := nftables.New(nftables.Options{NetNSPath: ns.Path, Logger: zap.NewNop()})
			if err != nil {
				die(err)
			}
			return d
		},
		coldParams:  func(dataplane.Dataplane) []string { return nil },
		counts:      nftCounts,
		restartNote: "read back the previous table, replace it in one transaction",
		conntrack: func(_ context.Context, node *netnstest.NS) {
			if _, err := node.Exec("nft", "add table inet bench-conntrack; add chain inet bench-conntrack c { type filter hook forward priority 100; policy accept; }; add rule inet bench-conntrack c ct state new counter"); err != nil {
				die(err)
			}
		},
		conn: connParams{base: []string{"note", "conntrack on in both runs"}},
	},
}

type traceRunner struct{ dataplane.Runner }

func (t traceRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	t0 := time.Now()
	out, err := t.Runner.Run(ctx, stdin, name, args...)
	fmt.Fprintf(os.Stderr, "trace: %s %v: %v (%d bytes in)\n", name, args, time.Since(t0), len(stdin))
	return out, err
}

// iptablesCounts counts our rules in both backends and families
// (iptables-save) and our sets and members (ipset save).
func iptablesCounts(ctx context.Context, ns *netnstest.NS, add adder) {
	run := dataplane.Exec{Netns: ns.Path}
	rules, sets, members := 0, 0, 0
	for _, t := range []string{"iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"} {
		b, err := run.Run(ctx, nil, t, "-t", iptables.Table)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "-A ") && strings.Contains(l, iptables.ChainPrefix) {
				rules++
			}
		}
	}
	b, err := run.Run(ctx, nil, "ipset", "save")
	if err != nil {
		die(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "create "+iptables.SetPrefix):
			sets++
		case strings.HasPrefix(l, "add "+iptables.SetPrefix):
			members++
		}
	}
	add("npm_iptables_rules", float64(rules), "rules", "families", "ipv4+ipv6")
	add("npm_iptables_rules_per_policy", float64(rules)/float64(*policies), "rules/policy")
	add("npm_ipsets", float64(sets), "sets")
	add("npm_ipsets_per_policy", float64(sets)/float64(*policies), "sets/policy")
	add("npm_ipset_members", float64(members), "members")
}

// kubeForward installs kube-proxy's KUBE-FORWARD conntrack rules in the
// backend the dataplane uses (NPM's jump goes before them).
func kubeForward(ctx context.Context, node *netnstest.NS) {
	run := dataplane.Exec{Netns: node.Path}
	backend := *mode
	if backend == "" {
		backend = string(iptables.Detect(ctx, run))
	}
	kube := "*filter\n:KUBE-FORWARD - [0:0]\n-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n" +
		"-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n" +
		"-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n"
	if _, err := run.Run(ctx, []byte(kube), "iptables-"+backend+"-restore", "--noflush"); err != nil {
		die(err)
	}
}

// nftCounts reads our table back with the nft CLI (an independent reader)
// and counts rules, sets/maps and their elements.
func nftCounts(_ context.Context, ns *netnstest.NS, add adder) {
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
	rules, sets, elems := 0, 0, 0
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
	add("npm_nft_rules", float64(rules), "rules", "families", "inet (ipv4+ipv6)")
	add("npm_nft_rules_per_policy", float64(rules)/float64(*policies), "rules/policy")
	add("npm_nft_sets", float64(sets), "sets", "note", "sets and verdict maps")
	add("npm_nft_set_elements", float64(elems), "elements")
}
