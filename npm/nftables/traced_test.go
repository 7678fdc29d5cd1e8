//go:build linux

package nftables

import (
	"context"
	"fmt"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/dataplane/dptest"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// Tests without root: the dataplane programs a fake netlink kernel
// (fake_test.go) that checks every message as the kernel would and traces
// packets through the table.

func newTraced(t testing.TB, k *fakeNft) dptest.Traced {
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.dial = k.dial
	return dptest.Traced{Dataplane: d, Allowed: k.allowed, Dump: k.dump}
}

func fresh(t testing.TB) dptest.Traced { return newTraced(t, &fakeNft{}) }

// TestRenderGolden: every case of the shared table as the table the
// dataplane sends, printed like `nft list table` (testdata/golden;
// -update rewrites), and the tracer makes every decision of the case table.
func TestRenderGolden(t *testing.T) { dptest.RunGolden(t, fresh) }

// TestTracerAgreesWithEvaluate: random worlds programmed one after the
// other (full and incremental): the tracer's decision through the table
// equals policy.State.Evaluate on every probe, and a Reconcile reading the
// fake kernel back finds nothing to repair.
func TestTracerAgreesWithEvaluate(t *testing.T) {
	worlds := 60
	if testing.Short() {
		worlds = 10
	}
	n := dptest.RunTracedProperty(t, fresh, worlds, 3)
	t.Logf("%d decisions equal to Evaluate", n)
}

// TestOneTransactionPerBatch: policy replacements and dispatch group moves
// are each exactly one transaction whose every message is valid where it
// stands (the fake refuses a rule or element referencing a missing set or
// chain, a deletion of something still referenced); chains and sets go
// in before the rules and elements using them, removals come last; a
// Reconcile after each batch finds the fake kernel equal to the desired
// table.
func TestOneTransactionPerBatch(t *testing.T) {
	k := &fakeNft{}
	tr := newTraced(t, k)
	tp := dptest.Addresses(dptest.Pods)
	e := tp.Engine(dptest.BasicPolicies()...)
	ctx := context.Background()
	if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for i := 0; i < 24; i++ {
		if i < 12 {
			sel := dptest.Labels("app", "cli")
			if i%3 == 1 {
				sel = translatetest.Expr("app", "In", "cli", "x")
			} else if i%3 == 2 {
				sel = translatetest.Expr("app", "NotIn", "web", "other")
			}
			e.UpsertPolicy(translatetest.Policy("a", "web", networkingv1.NetworkPolicySpec{
				PodSelector: *dptest.Labels("app", "web"),
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel}}, Ports: []networkingv1.NetworkPolicyPort{translatetest.TCP(80 + i%2)}}},
			}))
		} else if i%2 == 0 {
			e.UpsertPolicy(translatetest.Policy("a", "extra", networkingv1.NetworkPolicySpec{
				PodSelector: *dptest.Labels("app", "web"),
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: dptest.Labels("app", "cli")}}, Ports: []networkingv1.NetworkPolicyPort{translatetest.TCP(81)}}},
			}))
		} else {
			e.DeletePolicy("a", "extra")
		}
		before := len(k.txs)
		if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if n := len(k.txs) - before; n != 1 {
			t.Fatalf("batch %d: %d transactions, want 1", i, n)
		}
		// order: creations, then rules and elements, then removals
		stage := 0
		for _, m := range k.txs[len(k.txs)-1] {
			var verb string
			fmt.Sscan(m, &verb)
			s := map[string]int{"add": 1, "flush": 2, "delete": 3}[verb]
			if m == "add table" {
				continue
			}
			if len(m) > 8 && (m[:8] == "add set " || m[:10] == "add chain ") {
				s = 0
			}
			if len(m) > 15 && m[:15] == "delete elements" {
				s = 1
			}
			if s < stage && !(s == 1 && stage == 2) {
				t.Errorf("batch %d: %q after a later stage in %v", i, m, k.txs[len(k.txs)-1])
			}
			stage = max(stage, s)
			kinds[verb] = true
		}
		if n, err := tr.Dataplane.Reconcile(ctx); err != nil || n != 0 {
			t.Fatalf("batch %d: reconcile %d, %v", i, n, err)
		}
	}
	if !kinds["delete"] || !kinds["flush"] || !kinds["add"] {
		t.Errorf("messages seen %v: the batches should create, rewrite and delete", kinds)
	}
}

// TestRuleCountIsWhatTheKernelHolds: RuleCount (the npm_rules gauge) is
// the number of rules in the table, after programming, after a change and
// after a read-back by another process.
func TestRuleCountIsWhatTheKernelHolds(t *testing.T) {
	k := &fakeNft{}
	d := newTraced(t, k).Dataplane.(*Dataplane)
	kernelRules := func() int {
		n := 0
		for _, ch := range k.cur.chains {
			n += len(ch.rules)
		}
		return n
	}
	tp := dptest.Addresses(dptest.Pods)
	e := tp.Engine(dptest.BasicPolicies()...)
	ctx := context.Background()
	if d.RuleCount() != 0 {
		t.Fatalf("RuleCount %d before any Apply", d.RuleCount())
	}
	if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	if n := kernelRules(); n < 10 || d.RuleCount() != n {
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
	if err := d2.Apply(ctx, e.State(), nil); err != nil {
		t.Fatal(err)
	}
	if n := kernelRules(); d2.RuleCount() != n {
		t.Fatalf("a new process: RuleCount %d, the kernel holds %d rules", d2.RuleCount(), n)
	}
}

// TestClusterPolicyRuleLogs: one line per rule change names the
// ClusterNetworkPolicy and its tier.
func TestClusterPolicyRuleLogs(t *testing.T) {
	dptest.RunClusterPolicyLogs(t, func(t testing.TB, log *zap.Logger) dataplane.Dataplane {
		d, err := New(Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		d.dial = (&fakeNft{}).dial
		return d
	})
}

// TestFlowLogTracer: with flow logs programmed, every probe of random
// worlds is logged with exactly the IDs State.Evaluate's explanation names
// (none where the namespace did not opt in), verdicts unchanged; over the
// rate limit nothing is logged, the verdicts still equal Evaluate and the
// counter object counts every suppressed message.
func TestFlowLogTracer(t *testing.T) {
	newT := func(k *fakeNft) dptest.NewTraced {
		return func(t testing.TB) dptest.Traced {
			d, err := New(Options{FlowLog: dptest.FlowLogTest})
			if err != nil {
				t.Fatal(err)
			}
			d.dial = k.dial
			return dptest.Traced{Dataplane: d, Allowed: k.allowed, Dump: k.dump}
		}
	}
	dptest.RunGoldenFlowLog(t, newT(&fakeNft{}))
	k := &fakeNft{}
	n := dptest.RunTracedFlowLog(t, newT(k), k.trace, 30, 7, false)
	t.Logf("%d probes logged as Evaluate explains", n)
	if k.dropped != 0 {
		t.Errorf("within the limit, %d messages counted as dropped", k.dropped)
	}
	k = &fakeNft{overLimit: true}
	var tr dptest.Traced
	wrap := func(t testing.TB) dptest.Traced { tr = newT(k)(t); return tr }
	dptest.RunTracedFlowLog(t, wrap, k.trace, 5, 8, true)
	if k.dropped == 0 {
		t.Error("over the limit, nothing counted as dropped")
	}
	got, err := tr.Dataplane.(*Dataplane).FlowLogDropped(context.Background())
	if err != nil || got != k.dropped {
		t.Errorf("FlowLogDropped = %d, %v; the counter object holds %d", got, err, k.dropped)
	}
}

// TestReconcileFromReading: drift found by a reading taken outside the
// daemon's lock is repaired like Reconcile's own read-back.
func TestReconcileFromReading(t *testing.T) {
	k := &fakeNft{}
	dptest.RunReconcileFromReading(t, newTraced(t, k), newTraced(t, k))
}
