//go:build linux

package iptables

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

func (tp *topo) tool(mode Mode, fam string) string { return fam + "-" + string(mode) }

// TestKernelUpdateWithoutGap replaces a policy 30 times (new selector
// forms, so new sets and chains each time, old ones destroyed) while probe
// loops run; the denied connection is never allowed and the allowed one is
// never denied.
func TestKernelUpdateWithoutGap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mode Mode) {
		tp := newTopo(t, 3)
		d := tp.dataplane(t, mode, nil)
		e := basicEngine(tp)
		ctx := context.Background()
		if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var leaks, drops, probes atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func(fam int) {
				defer wg.Done()
				for !stop.Load() {
					probes.Add(1)
					if tp.probeT(-1, tp.ips[0][fam], policy.TCP, 80, 30*time.Millisecond) { // ext is not egress-isolated: only pod0's ingress denies
						leaks.Add(1)
					}
				}
			}(w % 2)
		}
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func(fam int) {
				defer wg.Done()
				for !stop.Load() {
					probes.Add(1)
					if !tp.probe(1, tp.ips[0][fam], policy.TCP, 80) {
						drops.Add(1)
					}
				}
			}(w % 2)
		}
		forms := []*metav1.LabelSelector{
			{MatchLabels: map[string]string{"app": "cli"}},
			{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"cli", "x"}}}},
			{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"web", "other"}}}},
		}
		for i := 0; i < 30; i++ {
			ports := []networkingv1.NetworkPolicyPort{{Port: sport("http")}}
			if i%2 == 1 {
				ports = []networkingv1.NetworkPolicyPort{{Port: iport(79), EndPort: int32p(80)}, {Port: iport(81)}}
			}
			e.UpsertPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web"}, Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: forms[i%3]}}, Ports: ports}},
			}})
			if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Then pod0 moves between dispatch groups 20 times: a second policy
		// selecting it (same decisions) comes and goes, so its group
		// changes from {a/web} to {a/extra,a/web} and back; the group it
		// leaves is retired only after the new one is filled.
		for i := 0; i < 20; i++ {
			if i%2 == 0 {
				e.UpsertPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "extra"}, Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
					Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: forms[0]}}, Ports: []networkingv1.NetworkPolicyPort{{Port: iport(80)}}}},
				}})
			} else {
				e.DeletePolicy("a", "extra")
			}
			if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop.Store(true)
		wg.Wait()
		if leaks.Load() > 0 || drops.Load() > 0 {
			t.Errorf("during 30 policy replacements and 20 group moves: %d denied connections got through, %d allowed ones were dropped (of %d probes)", leaks.Load(), drops.Load(), probes.Load())
		} else {
			t.Logf("%d probes during 30 replacements and 20 group moves: no gap", probes.Load())
		}
		if n, err := d.Reconcile(ctx); err != nil || n != 0 {
			t.Errorf("reconcile after the incremental updates: %d repairs, %v", n, err)
		}
		if s := tp.ipsetSave(t); countLines(s, "create "+SetPrefix) != countLines(s, "create "+SetPrefix) || strings.Contains(s, "-t ") {
			t.Errorf("temporary sets left: %s", s)
		}
	})
}

func int32p(v int32) *int32 { return &v }

// TestKernelRestartReplacesStale: a new process (new Dataplane) replaces
// the previous run's rules and sets in one transaction without a flush:
// rules stay in force until then, stale chains and sets are gone after.
func TestKernelRestartReplacesStale(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mode Mode) {
		tp := newTopo(t, 3)
		ctx := context.Background()
		e := basicEngine(tp)
		// Run 1 also has a policy the restarted run no longer has.
		e.UpsertPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "old"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "cli"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.99.0.0/16"}}}}},
		}})
		d1 := tp.dataplane(t, mode, nil)
		if err := d1.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		oldChain := groupChainOf(policy.Ingress, "a/old")
		if !strings.Contains(tp.save(t, mode, "iptables"), oldChain) {
			t.Fatal("run 1 did not program a/old")
		}
		// "kill -9": d1 is dropped, the kernel keeps enforcing.
		tp.check(t, []expect{{2, 0, policy.TCP, 80, false}, {-1, 1, policy.TCP, 80, false}})
		e.DeletePolicy("a", "old")
		d2 := tp.dataplane(t, mode, nil)
		if err := d2.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		// The stale group is retired: its set is emptied now, its chain
		// goes at the next Apply or Reconcile.
		if s := tp.ipsetSave(t); strings.Contains(s, "add "+GroupSetName(policy.IPv4, &policy.Group{ID: strings.TrimPrefix(oldChain, ChainGroupIngressPrefix), Direction: policy.Ingress})+" ") {
			t.Errorf("the retired group's set still has members:\n%s", s)
		}
		tp.check(t, basicExpect)
		if _, err := d2.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		save := tp.save(t, mode, "iptables")
		if strings.Contains(save, oldChain) {
			t.Errorf("stale chain %s survived the restart", oldChain)
		}
		if n := countLines(save, "-j "+ChainMain+"\n"); n != 1 {
			t.Errorf("%d jumps to %s after restart, want 1", n, ChainMain)
		}
		sets := tp.ipsetSave(t)
		if strings.Contains(sets, "10.99.0.0/16") {
			t.Errorf("stale set of a/old survived the restart")
		}
		tp.check(t, basicExpect)
		if n, err := d2.Reconcile(ctx); err != nil || n != 0 {
			t.Errorf("reconcile after restart: %d repairs, %v", n, err)
		}
	})
}

// TestKernelReconcileRepairsDrift: someone deletes NPM's FORWARD jump, a
// policy chain, a set, a set member and adds a rule; one Reconcile restores
// everything and a second finds nothing.
func TestKernelReconcileRepairsDrift(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mode Mode) {
		tp := newTopo(t, 3)
		ctx := context.Background()
		e := basicEngine(tp)
		d := tp.dataplane(t, mode, nil)
		if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		ipt := tp.tool(mode, "iptables")
		g := d.groups[policy.Ingress][0]
		groupSet := GroupSetName(policy.IPv4, g)
		pc := groupChainOf(policy.Ingress, "a/web")
		var peerSet string
		for _, n := range d.sets.Names() {
			if strings.HasPrefix(n, SetPrefix+"4-i") {
				peerSet = n
			}
		}
		for _, c := range [][]string{
			{ipt, "-D", "FORWARD", "-m", "comment", "--comment", JumpComment, "-j", ChainMain},
			{ipt, "-F", ChainIngress},
			{ipt, "-F", GroupChain(g)},
			{ipt, "-F", pc},
			{ipt, "-X", pc},
			{"ipset", "destroy", groupSet},
			{"ipset", "del", peerSet, tp.ips[1][0]},
			{ipt, "-A", ChainEgress, "-j", "ACCEPT"},
		} {
			tp.node.MustExec(t, c[0], c[1:]...)
		}
		if !tp.probe(2, tp.ips[0][0], policy.TCP, 80) {
			t.Errorf("the IPv4 drift should have opened pod0")
		}
		n, err := d.Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n < 6 {
			t.Errorf("reconcile repaired %d objects, want ≥ 6", n)
		}
		tp.check(t, basicExpect)
		if n, err := d.Reconcile(ctx); err != nil || n != 0 {
			t.Errorf("second reconcile: %d repairs, %v", n, err)
		}
	})
}

// TestKernelPropertyMatchesOracle: random labels and policies, programmed
// incrementally one after another into the same node; for every pod pair
// (and an off-cluster peer), both families and TCP/UDP/SCTP ports, the
// kernel's decision equals cyclonus'.
func TestKernelPropertyMatchesOracle(t *testing.T) {
	cases := map[Mode]int{ModeNFT: 30, ModeLegacy: 12}
	if testing.Short() {
		cases = map[Mode]int{ModeNFT: 4, ModeLegacy: 2}
	}
	defer func(l int) { trieLeaf = l }(trieLeaf)
	trieLeaf = 1 // every group behind inner trie nodes
	forEachBackend(t, func(t *testing.T, mode Mode) {
		const pods = 5
		tp := newTopo(t, pods)
		ctx := context.Background()
		d := tp.dataplane(t, mode, nil)
		r := rand.New(rand.NewSource(int64(len(mode))))
		checked := 0
		// Odd cases go through the incremental engine (events from the
		// previous case's objects to this one's, Apply with its Changes and
		// member hints); even cases through a full Translate and a full diff.
		eng := translate.NewEngine(translate.Options{NodeName: "node"})
		var prevPols []*networkingv1.NetworkPolicy
		for c := 0; c < cases[mode]; c++ {
			w := translatetest.Random(r, propConfig(pods))
			for _, p := range prevPols {
				eng.DeletePolicy(p.Namespace, p.Name)
			}
			for _, n := range w.Namespaces {
				eng.UpsertNamespace(n)
			}
			for _, p := range w.Pods {
				eng.UpsertPod(p)
			}
			for _, p := range w.Policies {
				eng.UpsertPolicy(p)
			}
			prevPols = w.Policies
			if c%2 == 1 {
				if err := d.Apply(ctx, eng.State(), eng.TakeChanges()); err != nil {
					t.Fatal(err)
				}
			} else {
				eng.TakeChanges()
				st := translate.Translate(translate.Snapshot{Pods: w.Pods, Namespaces: w.Namespaces, Policies: w.Policies}, translate.Options{NodeName: "node"})
				if err := d.Apply(ctx, st, nil); err != nil {
					t.Fatal(err)
				}
			}
			// Flows of the previous case stay ESTABLISHED (by design: policy
			// changes do not cut existing connections); a UDP probe reusing a
			// source port would ride on one. Start each case clean.
			_, _ = tp.node.Exec("conntrack", "-F")
			_, _ = tp.node.Exec("conntrack", "-F", "-f", "ipv6")
			o := newOracle(w)
			type pr struct {
				src, dst, fam int
				proto         corev1.Protocol
				port          int
			}
			var prs []pr
			for src := -1; src < pods; src++ {
				for dst := -1; dst < pods; dst++ {
					if src == dst {
						continue
					}
					for fam := 0; fam < 2; fam++ {
						for _, pp := range translatetest.ProbePorts {
							prs = append(prs, pr{src, dst, fam, pp.Proto, pp.Port})
						}
					}
				}
			}
			got := make([]bool, len(prs))
			sem := make(chan struct{}, 48)
			var wg sync.WaitGroup
			for i, p := range prs {
				wg.Add(1)
				sem <- struct{}{}
				go func(i int, p pr) {
					defer wg.Done()
					got[i] = tp.probeWant(p.src, tp.addr(p.dst, p.fam), policy.Protocol(p.proto), p.port, o.allowed(tp.addr(p.src, p.fam), tp.addr(p.dst, p.fam), p.proto, p.port))
					<-sem
				}(i, p)
			}
			wg.Wait()
			for i, p := range prs {
				want := o.allowed(tp.addr(p.src, p.fam), tp.addr(p.dst, p.fam), p.proto, p.port)
				checked++
				if got[i] != want {
					t.Errorf("case %d: pod%d -> pod%d IPv%d %s/%d: kernel %v, oracle %v\n%s", c, p.src, p.dst, 4+2*p.fam, p.proto, p.port, got[i], want, dumpPolicies(w))
					return
				}
			}
			if n, err := d.Reconcile(ctx); err != nil || n != 0 {
				t.Errorf("case %d: reconcile found %d differences, %v", c, n, err)
			}
		}
		t.Logf("%s: %d cases, %d kernel decisions equal to the oracle", mode, cases[mode], checked)
	})
}

var _ = fmt.Sprint
