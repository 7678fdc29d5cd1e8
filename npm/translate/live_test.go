package translate

import (
	"fmt"
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// TestPropertyLiveSetsNarrowEqualsAllSets: an engine that computes only
// the sets of the policies applying to its Endpoints (the default) and one
// that computes every set (Options.AllSets) get the same random sequence
// of events (pods of this and other nodes added, relabelled, moved and
// deleted; namespaces relabelled and deleted; NetworkPolicies and
// ClusterNetworkPolicies added, replaced and deleted; nodes; external
// service backends). After each event what a dataplane programs
// (dataplane.Narrow) is the same for both, the changes the lazy engine
// reports, narrowed as the daemon narrows them (dataplane.Enforced), name
// everything that differs from the last narrowed state (member hints
// included), and no set or selector keeps pods it no longer needs.
func TestPropertyLiveSetsNarrowEqualsAllSets(t *testing.T) {
	r := rand.New(rand.NewSource(23))
	const sequences, steps = 60, 80
	total, becameLive, released := 0, 0, 0
	for sq := 0; sq < sequences; sq++ {
		cfg := translatetest.PropertyConfig(8)
		w := translatetest.Random(r, cfg)
		lazy := NewEngine(Options{NodeName: "node"})
		all := NewEngine(Options{NodeName: "node", AllSets: true})
		both := func(f func(*Engine)) { f(lazy); f(all) }
		for _, n := range w.Namespaces {
			both(func(e *Engine) { e.UpsertNamespace(n) })
		}
		for i, p := range w.Pods {
			if i%3 != 0 {
				p.Spec.NodeName = "other"
			}
			both(func(e *Engine) { e.UpsertPod(p) })
		}
		for i := 0; i < 3; i++ {
			n := nodeObj(fmt.Sprintf("n%d", i), fmt.Sprintf("10.200.0.%d", i), map[string]string{"zone": fmt.Sprint(i % 2)})
			both(func(e *Engine) { e.UpsertNode(n) })
		}
		var enf dataplane.Enforced
		prev, _ := enf.Project(lazy.State(), nil)
		prev = prev.Clone()
		enf.Commit()
		lazy.TakeChanges()
		all.TakeChanges()
		extra := 0
		for st := 0; st < steps; st++ {
			var ev string
			switch r.Intn(12) {
			case 0, 1: // relabel a pod (sometimes moving it between nodes)
				p := w.Pods[r.Intn(len(w.Pods))].DeepCopy()
				p.Labels = translatetest.Random(r, cfg).Pods[0].Labels
				if r.Intn(4) == 0 {
					p.Spec.NodeName = pick(r, "node", "other")
				}
				w.Pods = replacePod(w.Pods, p)
				both(func(e *Engine) { e.UpsertPod(p) })
				ev = "relabel " + p.Name
			case 2:
				p := w.Pods[r.Intn(len(w.Pods))]
				both(func(e *Engine) { e.DeletePod(p.Namespace, p.Name) })
				ev = "delete pod " + p.Name
			case 3:
				p := w.Pods[r.Intn(len(w.Pods))].DeepCopy()
				p.Name = fmt.Sprintf("x%d", extra)
				extra++
				p.Namespace = fmt.Sprintf("ns%d", r.Intn(3))
				p.Spec.NodeName = pick(r, "node", "other")
				both(func(e *Engine) { e.UpsertPod(p) })
				ev = "add pod " + p.Name
			case 4:
				n := mkNS(fmt.Sprintf("ns%d", r.Intn(3)), translatetest.Random(r, cfg).Namespaces[0].Labels)
				both(func(e *Engine) { e.UpsertNamespace(n) })
				ev = "relabel ns " + n.Name
			case 5:
				name := fmt.Sprintf("ns%d", r.Intn(3))
				both(func(e *Engine) { e.DeleteNamespace(name) })
				ev = "delete ns " + name
			case 6, 7:
				p := translatetest.Random(r, cfg).Policies[0]
				p.Name = fmt.Sprintf("np%d", r.Intn(5))
				both(func(e *Engine) { e.UpsertPolicy(p) })
				ev = "upsert policy " + p.Namespace + "/" + p.Name
			case 8:
				ns, name := fmt.Sprintf("ns%d", r.Intn(3)), fmt.Sprintf("np%d", r.Intn(5))
				both(func(e *Engine) { e.DeletePolicy(ns, name) })
				ev = "delete policy " + ns + "/" + name
			case 9:
				cnps := translatetest.RandomCluster(r, translatetest.ClusterConfig{Policies: 2, Networks: cfg.CIDRs})
				if len(cnps) == 0 {
					name := fmt.Sprintf("cnp%d", r.Intn(2))
					both(func(e *Engine) { e.DeleteClusterPolicy(name) })
					ev = "delete cluster policy " + name
					break
				}
				if r.Intn(2) == 0 { // a nodes peer (RandomCluster draws none)
					cnps[0].Spec.Egress = append(cnps[0].Spec.Egress, cnpv1.ClusterNetworkPolicyEgressRule{Name: "nodes", Action: randActionFor(r),
						To: []cnpv1.ClusterNetworkPolicyEgressPeer{{Nodes: translatetest.Labels("zone", fmt.Sprint(r.Intn(2)))}}})
				}
				both(func(e *Engine) { e.UpsertClusterPolicy(cnps[0]) })
				ev = "upsert cluster policy " + cnps[0].Name
			case 10: // some pods (of any node) back a NodePort service
				keys := map[string]struct{}{}
				for _, p := range w.Pods {
					if r.Intn(3) == 0 {
						keys[p.Namespace+"/"+p.Name] = struct{}{}
					}
				}
				both(func(e *Engine) {
					cp := make(map[string]struct{}, len(keys))
					for k := range keys {
						cp[k] = struct{}{}
					}
					e.SetExternalBackends(cp)
				})
				ev = fmt.Sprintf("%d external backends", len(keys))
			case 11:
				i := r.Intn(4)
				n := nodeObj(fmt.Sprintf("n%d", i), fmt.Sprintf("10.200.%d.%d", r.Intn(2), i), map[string]string{"zone": fmt.Sprint(r.Intn(2))})
				both(func(e *Engine) { e.UpsertNode(n) })
				ev = "node " + n.Name
			}
			want := dataplane.Narrow(all.State())
			got, ch := enf.Project(lazy.State(), lazy.TakeChanges())
			all.TakeChanges()
			if d := policy.Diff(got, want); !d.Empty() {
				t.Fatalf("seq %d step %d (%s): narrowed states differ: %+v\n--- live sets only\n%s--- all sets\n%s", sq, st, ev, d, render(got), render(want))
			}
			if err := changesCover(prev, got, ch); err != nil {
				t.Fatalf("seq %d step %d (%s): %v", sq, st, ev, err)
			}
			enf.Commit()
			if err := checkBookkeeping(lazy); err != nil {
				t.Fatalf("seq %d step %d (%s): %v", sq, st, ev, err)
			}
			l, rel, err := checkLive(lazy, got)
			if err != nil {
				t.Fatalf("seq %d step %d (%s): %v", sq, st, ev, err)
			}
			becameLive += l
			released += rel
			prev = got.Clone()
			total++
		}
	}
	if becameLive == 0 || released == 0 {
		t.Fatalf("degenerate sequences: %d live set-steps, %d released set-steps", becameLive, released)
	}
	t.Logf("%d events: narrowed state equal with and without AllSets (%d live and %d released set-steps)", total, becameLive, released)
}

// changesCover: every set, policy and endpoint that differs between two
// narrowed states is named by the narrowed changes, and a set's member
// hints (when given) name every member that came or went.
func changesCover(prev, cur *policy.State, ch *policy.Changes) error {
	want := policy.Diff(prev, cur)
	for k := range want.Sets {
		if _, ok := ch.Sets[k]; !ok {
			return fmt.Errorf("set %s changed but not reported", k)
		}
		h, hinted := ch.Members[k]
		if !hinted {
			continue
		}
		ps, cs := prev.Sets[k], cur.Sets[k]
		if ps == nil || cs == nil {
			return fmt.Errorf("member hints for set %s that entered or left the narrowed state", k)
		}
		for _, pair := range [][2]map[policy.Member]struct{}{{ps.Members, cs.Members}, {cs.Members, ps.Members}} {
			for m := range pair[0] {
				if _, in := pair[1][m]; !in {
					if _, ok := h[m]; !ok {
						return fmt.Errorf("member %s of %s came or went without a hint", m, k)
					}
				}
			}
		}
	}
	for k := range want.Policies {
		if _, ok := ch.Policies[k]; !ok {
			return fmt.Errorf("policy %s changed but not reported", k)
		}
	}
	for k := range want.Endpoints {
		if _, ok := ch.Endpoints[k]; !ok {
			return fmt.Errorf("endpoint %s changed but not reported", k)
		}
	}
	return nil
}

// checkLive: exactly the sets the narrowed state references are live
// (dynamic sets: a static ipBlock set holds its members either way), a
// selector keeps pods exactly while a live set is computed from it, and
// every policy's count of Endpoints listing it is right. It returns the
// number of live sets and of released ones with members it would hold.
func checkLive(e *Engine, narrowed *policy.State) (live, released int, err error) {
	for id, se := range e.sets {
		_, used := narrowed.Sets[id]
		if se.live != used {
			return 0, 0, fmt.Errorf("set %s (%s): live %v, referenced by an enforced policy %v", id, se.spec.key, se.live, used)
		}
		if se.live {
			live++
		} else if len(se.spec.sels) > 0 || se.spec.nodeSel != nil {
			released++
			if len(se.contrib) > 0 || len(se.nodeContrib) > 0 || len(se.set.Members) != len(se.spec.static) {
				return 0, 0, fmt.Errorf("set %s is not live but keeps %d contributions, %d members", id, len(se.contrib), len(se.set.Members))
			}
		}
	}
	for k, s := range e.selectors {
		if (s.pods != nil) != (len(s.deps) > 0) {
			return 0, 0, fmt.Errorf("selector %s: pods kept %v with %d live sets", k, s.pods != nil, len(s.deps))
		}
		for id, se := range s.deps {
			if !se.live || e.sets[id] != se {
				return 0, 0, fmt.Errorf("selector %s lists set %s that is not live", k, id)
			}
		}
	}
	uses := map[string]int{}
	for _, ep := range e.state.Endpoints {
		for k := range listedPolicies(ep) {
			uses[k]++
		}
	}
	for k, c := range e.policies {
		if c.active != uses[k] {
			return 0, 0, fmt.Errorf("policy %s: counts %d endpoints, %d list it", k, c.active, uses[k])
		}
	}
	return live, released, nil
}

func randActionFor(r *rand.Rand) cnpv1.ClusterNetworkPolicyRuleAction {
	return pick(r, cnpv1.ClusterNetworkPolicyRuleActionAccept, cnpv1.ClusterNetworkPolicyRuleActionDeny)
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.Intn(len(xs))] }

func nodeObj(name, ip string, lbls map[string]string) *corev1.Node {
	n := &corev1.Node{}
	n.Name = name
	n.Labels = lbls
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	return n
}
