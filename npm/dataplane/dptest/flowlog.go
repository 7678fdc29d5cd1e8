//go:build linux

package dptest

import (
	"context"
	"math/rand"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// FlowLogTest is the flow-log configuration the suites program: group,
// a rate no test reaches and a burst.
var FlowLogTest = dataplane.FlowLog{Group: 77, Rate: 10000, Burst: 10000}

// ExpectedLogs are the flow-log IDs the kernel must log for the first
// packet of a connection, from State.Evaluate's explanation: the egress
// decision at the source (the deciding ClusterNetworkPolicy rule, its
// allowing rule, or its group's default deny) when the deciding policy —
// for a default deny, one of the NetworkPolicies — logs that verdict, then — only if egress
// allowed it — the ingress decision at the destination likewise.
func ExpectedLogs(st *policy.State, p policy.Packet) []string {
	v := st.Evaluate(p)
	var out []string
	for _, dv := range []struct {
		d  policy.Direction
		dv policy.DirVerdict
	}{{policy.Egress, v.Egress}, {policy.Ingress, v.Ingress}} {
		if pol := st.Policies[dv.dv.Policy]; pol != nil && pol.Tier.Cluster() {
			// a ClusterNetworkPolicy rule decided (a Baseline Pass: the
			// default allow, attributed to that rule)
			if allow, ok := flowlog.Logged(pol, pol.Rules(dv.d)[dv.dv.Rule].Action); ok {
				out = append(out, flowlog.PolicyRuleID(pol, dv.d, dv.dv.Rule, allow))
			}
			if !dv.dv.Allowed {
				break
			}
			continue
		}
		if !dv.dv.Isolated {
			continue
		}
		if dv.dv.Allowed {
			if pol := st.Policies[dv.dv.Policy]; pol != nil && pol.FlowLog.Allow() {
				out = append(out, flowlog.RuleID(dv.dv.Policy, dv.d, dv.dv.Rule))
			}
			continue
		}
		deny := false
		for _, k := range dv.dv.Policies {
			if pol := st.Policies[k]; pol != nil && !pol.Tier.Cluster() && pol.FlowLog.Deny() {
				deny = true
			}
		}
		if deny {
			out = append(out, flowlog.DenyID(&policy.Group{ID: policy.Hash(policy.GroupKey(dv.d, dv.dv.Policies), 12), Direction: dv.d}))
		}
		break // dropped: the ingress side never sees it
	}
	return out
}

// flowLogModes are the annotations the property test gives namespaces.
var flowLogModes = []string{"", "none", "deny", "allow", "allow,deny", "bogus"}

// RunTracedFlowLog programs random worlds in which each namespace logs
// a random choice of verdicts (annotation, or the default "all") and
// checks that the tracer's logged IDs for every probe equal
// ExpectedLogs: exactly one per logged decision, none for a namespace
// that did not opt in. trace decides a packet and returns the IDs logged.
// overLimit: the tracer models an exhausted rate limit, so nothing may be
// logged, and the verdicts must still equal Evaluate's.
func RunTracedFlowLog(t *testing.T, newT NewTraced, trace func(policy.Packet) (bool, []string), worlds int, seed int64, overLimit bool) int {
	const pods = 5
	tr := newT(t)
	ctx := context.Background()
	r := rand.New(rand.NewSource(seed))
	rc := rand.New(rand.NewSource(seed + 1))
	checked, logged := 0, 0
	eng := translate.NewEngine(translate.Options{NodeName: NodeName, FlowLog: policy.FlowLogAll})
	for c := 0; c < worlds; c++ {
		w := translatetest.Random(r, translatetest.PropertyConfig(pods))
		// ClusterNetworkPolicies (logged in the default mode, all) from a
		// generator of their own, so the NetworkPolicy worlds of a seed
		// stay what they were.
		w.ClusterPolicies = translatetest.RandomCluster(rc, translatetest.ClusterConfig{Policies: 3, Networks: translatetest.PropertyConfig(pods).CIDRs})
		LoadFlowLogWorld(eng, r, w, flowLogModes)
		ch := eng.TakeChanges()
		if c%2 == 0 {
			ch = nil
		}
		if err := tr.Dataplane.Apply(ctx, eng.State(), ch); err != nil {
			t.Fatal(err)
		}
		for _, p := range w.Probes() {
			pk := p.Packet()
			wantOK, want := eng.State().Evaluate(pk).Allowed, ExpectedLogs(eng.State(), pk)
			if overLimit {
				logged += len(want) // what would have been logged
				want = nil
			}
			gotOK, got := trace(pk)
			if gotOK != wantOK || !slices.Equal(got, want) {
				t.Fatalf("world %d: %s -> %s %s/%d: traced %v logged %q; Evaluate %v, want logged %q\n%s\nkernel:\n%s", c, p.Src, p.Dst, p.Proto, p.Port, gotOK, got, wantOK, want, w, tr.Dump())
			}
			checked++
			logged += len(got)
		}
	}
	if logged == 0 {
		t.Fatal("no probe was logged: the test checks nothing")
	}
	return checked
}

// RunGoldenFlowLog programs the basic policies with flow logs on (allow
// and deny) and compares the fake kernel's content with
// testdata/golden/flowlog.txt.
func RunGoldenFlowLog(t *testing.T, newT NewTraced) {
	tp := Addresses(Pods)
	tr := newT(t)
	eng := translate.NewEngine(translate.Options{NodeName: NodeName, FlowLog: policy.FlowLogAll})
	nss, pods := tp.Cluster()
	for _, n := range nss {
		eng.UpsertNamespace(n)
	}
	for _, p := range pods {
		eng.UpsertPod(p)
	}
	for _, p := range BasicPolicies() {
		eng.UpsertPolicy(p)
	}
	if err := tr.Dataplane.Apply(context.Background(), eng.State(), nil); err != nil {
		t.Fatal(err)
	}
	Golden(t, "golden/flowlog.txt", tr.Dump())
}

// LoadFlowLogWorld is LoadWorld with each of w's namespaces annotated
// with a flow-log mode drawn from modes ("" leaves it unannotated).
func LoadFlowLogWorld(eng *translate.Engine, r *rand.Rand, w translatetest.World, modes []string) {
	annotated := make([]*corev1.Namespace, len(w.Namespaces))
	for i, n := range w.Namespaces {
		n = n.DeepCopy()
		if m := modes[r.Intn(len(modes))]; m != "" {
			n.Annotations = map[string]string{flowlog.Annotation: m}
		}
		annotated[i] = n
	}
	w.Namespaces = annotated
	LoadWorld(eng, w)
}
