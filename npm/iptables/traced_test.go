//go:build linux

package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/dataplane/dptest"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// Tests without root: the dataplane programs a fake kernel (fake_test.go)
// that checks what a kernel would and traces packets through the rules.

func newTraced(t testing.TB, k *fakeKernel) dptest.Traced {
	d, err := New(context.Background(), Options{Runner: k}) // auto: the fake has only the nft backend
	if err != nil {
		t.Fatal(err)
	}
	if d.Mode() != ModeNFT {
		t.Fatalf("detected %q, want nft", d.Mode())
	}
	return dptest.Traced{Dataplane: d, Allowed: k.allowed, Dump: k.dump}
}

func fresh(t testing.TB) dptest.Traced { return newTraced(t, newFakeKernel()) }

// TestRenderGolden: every case of the shared table as iptables-save and
// ipset save print it (testdata/golden; -update rewrites), and the tracer
// makes every decision of the case table.
func TestRenderGolden(t *testing.T) { dptest.RunGolden(t, fresh) }

// TestTracerAgreesWithEvaluate: random worlds, programmed one after the
// other (full and incremental), with a shallow and a deep dispatch trie:
// the packet tracer's decision through the programmed chains and sets
// equals policy.State.Evaluate on every probe.
func TestTracerAgreesWithEvaluate(t *testing.T) {
	for _, leaf := range []int{4, 1} {
		t.Run(fmt.Sprintf("trie-leaf-%d", leaf), func(t *testing.T) {
			old := trieLeaf
			trieLeaf = leaf
			t.Cleanup(func() { trieLeaf = old })
			worlds := 60
			if testing.Short() {
				worlds = 10
			}
			n := dptest.RunTracedProperty(t, fresh, worlds, int64(leaf))
			t.Logf("%d decisions equal to Evaluate", n)
		})
	}
}

// TestTransactionOrderWithoutGap replays policy replacements and dispatch
// group moves and checks, after every single kernel call, that no probe
// whose decision is the same before and after the batch changes, and that
// each batch runs the four phases in order: ipset restore (new sets,
// creation of dispatch sets), iptables-restore per family, ipset restore
// (dispatch members), ipset destroy.
func TestTransactionOrderWithoutGap(t *testing.T) {
	k := newFakeKernel()
	tr := newTraced(t, k)
	tp := dptest.Addresses(dptest.Pods)
	e := tp.Engine(dptest.BasicPolicies()...)
	ctx := context.Background()
	if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	type probe struct {
		src, dst int
		want     bool
	}
	probes := []probe{{2, 0, false}, {-1, 0, false}, {1, 0, true}}
	k.after = func(call string) {
		for _, p := range probes {
			for fam := 0; fam < 2; fam++ {
				pk := policy.Packet{Src: netip.MustParseAddr(tp.Addr(p.src, fam)), Dst: netip.MustParseAddr(tp.Addr(p.dst, fam)), Protocol: policy.TCP, Port: 80}
				if got := k.allowed(pk); got != p.want {
					t.Errorf("after %s: pod%d -> pod%d IPv%d allowed=%v, want %v", call, p.src, p.dst, 4+2*fam, got, p.want)
				}
			}
		}
	}
	rank := map[string]int{"iptables-restore": 2, "ip6tables-restore": 2, "ipset destroy": 4}
	seen := map[int]bool{}
	forms := []string{"cli", "cli,x", "!web,other"}
	for i := 0; i < 24; i++ {
		if i < 12 {
			sel := dptest.Labels("app", "cli")
			if i%3 == 1 {
				sel = translatetest.Expr("app", "In", "cli", "x")
			} else if i%3 == 2 {
				sel = translatetest.Expr("app", "NotIn", "web", "other")
			}
			ps := []networkingv1.NetworkPolicyPort{{Port: dptest.NamedPort("http")}}
			if i%2 == 1 {
				ps = []networkingv1.NetworkPolicyPort{translatetest.TCP(79), translatetest.TCP(80)}
			}
			e.UpsertPolicy(translatetest.Policy("a", "web", networkingv1.NetworkPolicySpec{
				PodSelector: *dptest.Labels("app", "web"),
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel}}, Ports: ps}},
			}))
		} else if i%2 == 0 {
			e.UpsertPolicy(translatetest.Policy("a", "extra", networkingv1.NetworkPolicySpec{
				PodSelector: *dptest.Labels("app", "web"),
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: dptest.Labels("app", "cli")}}, Ports: []networkingv1.NetworkPolicyPort{translatetest.TCP(81)}}},
			}))
		} else {
			e.DeletePolicy("a", "extra")
		}
		k.calls = nil
		if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatalf("batch %d (%s): %v", i, forms[i%3], err)
		}
		last, iptDone := 0, false
		for _, c := range k.calls {
			r := rank[c]
			if r == 0 { // ipset restore: phase 1 before the chains, phase 3 after
				r = 1
				if iptDone {
					r = 3
				}
			}
			if r == 2 {
				iptDone = true
			}
			if r < last || (r == last && r != 2) {
				t.Errorf("batch %d: calls %v are not in phase order", i, k.calls)
			}
			last = r
			seen[r] = true
		}
	}
	if len(seen) != 4 {
		t.Errorf("phases seen %v, want all four over the batches", seen)
	}
}

// TestNamesDoNotGrowWithChurn: namespaces with a pod and a policy come and
// go; the kernel names the dataplane holds for collision detection stay
// those of the live objects instead of growing with every namespace ever
// seen.
func TestNamesDoNotGrowWithChurn(t *testing.T) {
	k := newFakeKernel()
	tr := newTraced(t, k)
	d := tr.Dataplane.(*Dataplane)
	tp := dptest.Addresses(40)
	e := tp.Engine()
	ctx := context.Background()
	var sizes []int
	for round := 0; round < 36; round++ {
		ns := fmt.Sprintf("churn%d", round)
		e.UpsertNamespace(translatetest.Namespace(ns, nil))
		e.UpsertPod(translatetest.Pod(ns, "p", dptest.NodeName, map[string]string{"app": ns}, tp.IPs[4+round][:]))
		e.UpsertPolicy(translatetest.Policy(ns, "web", networkingv1.NetworkPolicySpec{
			PodSelector: *dptest.Labels("app", ns),
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: dptest.Labels("app", ns)}}}},
		}))
		if round >= 3 {
			old := fmt.Sprintf("churn%d", round-3)
			e.DeletePolicy(old, "web")
			e.DeletePod(old, "p")
			e.DeleteNamespace(old)
		}
		if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(d.want.Names))
	}
	if sizes[len(sizes)-1] > sizes[5] {
		t.Errorf("names grow with churn: %v", sizes)
	}
	if live := len(d.want.Sets) + 2*len(d.want.Groups[policy.Ingress]); sizes[len(sizes)-1] != live {
		t.Errorf("%d names for %d live kernel sets and group sets", sizes[len(sizes)-1], live)
	}
	if s := k.dump(); strings.Contains(s, "churn0") {
		t.Errorf("a deleted namespace's rules remain:\n%s", s)
	}
}

// TestRuleCountIsWhatTheKernelHolds: RuleCount (the npm_rules gauge) is
// the number of rules in NPM's chains plus the FORWARD and INPUT jumps, both
// families, as the kernel holds them — after programming, after a change,
// and after a read-back.
func TestRuleCountIsWhatTheKernelHolds(t *testing.T) {
	k := newFakeKernel()
	tr := newTraced(t, k)
	d := tr.Dataplane.(*Dataplane)
	kernelRules := func() int {
		n := 0
		for _, f := range policy.Families {
			for c, lines := range k.chains[f] {
				for _, l := range lines {
					if strings.HasPrefix(c, ChainPrefix) || isNPMJump(l) {
						n++
					}
				}
			}
		}
		return n
	}
	tp := dptest.Addresses(dptest.Pods)
	e := tp.Engine(dptest.BasicPolicies()...)
	ctx := context.Background()
	if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	if n := kernelRules(); n < 20 || d.RuleCount() != n {
		t.Fatalf("RuleCount %d, the kernel holds %d rules", d.RuleCount(), n)
	}
	e.DeletePolicy("b", "out")
	if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	if n := kernelRules(); d.RuleCount() != n {
		t.Fatalf("after a deletion: RuleCount %d, the kernel holds %d rules", d.RuleCount(), n)
	}
	d2 := newTraced(t, k).Dataplane.(*Dataplane)
	if n, err := d2.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("reconcile before any Apply: %d, %v (nothing to repair towards)", n, err)
	}
	if err := d2.Apply(ctx, e.State(), nil); err != nil {
		t.Fatal(err)
	}
	if n := kernelRules(); d2.RuleCount() != n {
		t.Fatalf("a new process: RuleCount %d, the kernel holds %d rules", d2.RuleCount(), n)
	}
	if n, err := d2.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("reconcile after the restart: %d, %v", n, err)
	}
}

// TestClusterPolicyRuleLogs: one line per rule change names the
// ClusterNetworkPolicy and its tier.
func TestClusterPolicyRuleLogs(t *testing.T) {
	dptest.RunClusterPolicyLogs(t, func(t testing.TB, log *zap.Logger) dataplane.Dataplane {
		d, err := New(context.Background(), Options{Runner: newFakeKernel(), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// TestFlowLogTracer: with flow logs programmed, every probe of random
// worlds is logged with exactly the IDs State.Evaluate's explanation names
// (none where the namespace did not opt in), the verdicts are unchanged,
// and over the rate limit nothing is logged and the verdict still equals
// Evaluate.
func TestFlowLogTracer(t *testing.T) {
	k := newFakeKernel()
	newT := func(t testing.TB) dptest.Traced {
		d, err := New(context.Background(), Options{Runner: k, FlowLog: dptest.FlowLogTest})
		if err != nil {
			t.Fatal(err)
		}
		return dptest.Traced{Dataplane: d, Allowed: k.allowed, Dump: k.dump}
	}
	dptest.RunGoldenFlowLog(t, func(t testing.TB) dptest.Traced {
		k := newFakeKernel()
		d, err := New(context.Background(), Options{Runner: k, FlowLog: dptest.FlowLogTest})
		if err != nil {
			t.Fatal(err)
		}
		return dptest.Traced{Dataplane: d, Allowed: k.allowed, Dump: k.dump}
	})
	n := dptest.RunTracedFlowLog(t, newT, k.trace, 30, 7, false)
	t.Logf("%d probes logged as Evaluate explains", n)
	k.overLimit = true
	dptest.RunTracedFlowLog(t, newT, k.trace, 5, 8, true)
}

// TestReconcileFromReading: drift found by a reading taken outside the
// daemon's lock is repaired like Reconcile's own read-back.
func TestReconcileFromReading(t *testing.T) {
	k := newFakeKernel()
	dptest.RunReconcileFromReading(t, newTraced(t, k), newTraced(t, k))
}

// TestMemberChangesStartNoProcess: a pod of another node joining a peer set
// changes set members only: the batch is netlink requests, no ipset or
// iptables-restore process, and its new member is allowed at once.
func TestMemberChangesStartNoProcess(t *testing.T) {
	k := newFakeKernel()
	tr := newTraced(t, k)
	tp := dptest.Addresses(dptest.Pods)
	e := tp.Engine(dptest.BasicPolicies()...)
	ctx := context.Background()
	if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	probe := policy.Packet{Src: netip.MustParseAddr("10.9.200.2"), Dst: netip.MustParseAddr(tp.Addr(0, 0)), Protocol: policy.TCP, Port: 80}
	if k.allowed(probe) {
		t.Fatal("an unknown address is allowed to pod0 before it is a peer")
	}
	k.calls = nil
	e.UpsertPod(translatetest.Pod("a", "remote-cli", "other-node", map[string]string{"app": "cli"}, []string{"10.9.200.2", "fd09:0:200::2"}))
	if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	if len(k.calls) != 1 || k.calls[0] != "ipset netlink" {
		t.Errorf("a peer joining a set made the calls %v, want [ipset netlink]", k.calls)
	}
	if !k.allowed(probe) {
		t.Error("the new peer is not allowed to pod0")
	}
}

// TestRetiringGroupRewritesNoChain: a pod leaving the last group of its
// policies (a label change) while the group it joins exists already changes
// set members only: the group it left retires in its place in the trie's
// leaf, so no chain is rewritten (no iptables-restore, whose process costs
// milliseconds), while the pod is dispatched to its new group at once. The
// next batch drops the retired group.
func TestRetiringGroupRewritesNoChain(t *testing.T) {
	k := newFakeKernel()
	tr := newTraced(t, k)
	ctx := context.Background()
	e := translate.NewEngine(translate.Options{NodeName: "node"})
	e.UpsertNamespace(translatetest.Namespace("a", nil))
	apps := []string{"x", "y", "z"}
	pods := map[string]*corev1.Pod{}
	for i, app := range apps {
		// Each policy allows port 80+i from everywhere: a pod's group
		// shows in which port is open to it.
		e.UpsertPolicy(translatetest.Policy("a", "p-"+app, networkingv1.NetworkPolicySpec{PodSelector: *translatetest.Labels("app", app),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{translatetest.TCP(80 + i)}}}}))
		p := translatetest.Pod("a", "pod-"+app, "node", map[string]string{"app": app}, []string{fmt.Sprintf("10.0.0.%d", i+1)})
		pods[p.Namespace+"/"+p.Name] = p
		e.UpsertPod(p)
	}
	if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	// The group with the smallest ID retires: before its leaf was kept in
	// ID order, it moved to the leaf's end, which rewrote the chain.
	groups := e.State().Groups(policy.Ingress)
	if len(groups) != 3 {
		t.Fatalf("%d ingress groups, want 3", len(groups))
	}
	leaving, joined := pods[groups[0].Endpoints[0]], pods[groups[2].Endpoints[0]]
	port := map[string]int{}
	for i, app := range apps {
		port[app] = 80 + i
	}
	from := netip.MustParseAddr("10.9.0.1")
	to := netip.MustParseAddr(leaving.Status.PodIP)
	oldPort, newPort := port[leaving.Labels["app"]], port[joined.Labels["app"]]
	moved := leaving.DeepCopy()
	moved.Labels = map[string]string{"app": joined.Labels["app"]}
	e.UpsertPod(moved)
	k.calls = nil
	if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	for _, c := range k.calls {
		if strings.Contains(c, "tables-restore") {
			t.Errorf("a pod moving to an existing group made the calls %v: a chain was rewritten", k.calls)
		}
	}
	probe := func(port int) bool {
		return k.allowed(policy.Packet{Src: from, Dst: to, Protocol: policy.TCP, Port: uint16(port)})
	}
	if probe(oldPort) || !probe(newPort) {
		t.Errorf("after the move: port %d (old group) allowed %v, port %d (new group) allowed %v; want false, true", oldPort, probe(oldPort), newPort, probe(newPort))
	}
	k.calls = nil
	if err := tr.Dataplane.Apply(ctx, e.State(), policy.NewChanges()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(k.calls), "iptables-restore") || strings.Contains(k.dump(), GroupChain(groups[0])) {
		t.Errorf("the next batch made the calls %v and left the retired group's chain %s", k.calls, GroupChain(groups[0]))
	}
}
