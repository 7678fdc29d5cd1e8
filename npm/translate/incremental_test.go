package translate

import (
	"fmt"
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// TestPropertyIncrementalEqualsFull: after every event of a random sequence
// (pod add/relabel/delete/move, IP reuse, namespace relabel/delete, policy
// add/replace/delete), the incremental engine's state equals a full
// Translate of the current objects, and TakeChanges names every object that
// differs from the previous state.
func TestPropertyIncrementalEqualsFull(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	const sequences, steps = 60, 60
	total := 0
	for sq := 0; sq < sequences; sq++ {
		cfg := translatetest.PropertyConfig(8)
		w := translatetest.Random(r, cfg)
		opts := Options{NodeName: "node"}
		pods := map[string]*corev1.Pod{}
		nss := map[string]*corev1.Namespace{}
		pols := map[string]*networkingv1.NetworkPolicy{}
		e := NewEngine(opts)
		for _, n := range w.Namespaces {
			nss[n.Name] = n
			e.UpsertNamespace(n)
		}
		for i, p := range w.Pods {
			if i%3 == 0 {
				p.Spec.NodeName = "other"
			}
			pods[p.Namespace+"/"+p.Name] = p
			e.UpsertPod(p)
		}
		prev := e.State().Clone()
		e.TakeChanges()
		extra := 0
		for st := 0; st < steps; st++ {
			var ev string
			switch r.Intn(9) {
			case 0, 1: // relabel a pod
				p := w.Pods[r.Intn(len(w.Pods))].DeepCopy()
				p.Labels = translatetest.Random(r, cfg).Pods[0].Labels
				pods[p.Namespace+"/"+p.Name] = p
				w.Pods = replacePod(w.Pods, p)
				e.UpsertPod(p)
				ev = "relabel " + p.Name
			case 2: // delete a pod
				p := w.Pods[r.Intn(len(w.Pods))]
				delete(pods, p.Namespace+"/"+p.Name)
				e.DeletePod(p.Namespace, p.Name)
				ev = "delete pod " + p.Name
			case 3: // (re)add a pod, sometimes reusing another pod's IP, sometimes host network
				src := w.Pods[r.Intn(len(w.Pods))]
				p := src.DeepCopy()
				p.Name = fmt.Sprintf("x%d", extra)
				extra++
				p.Namespace = fmt.Sprintf("ns%d", r.Intn(3))
				p.Spec.HostNetwork = r.Intn(5) == 0
				if r.Intn(2) == 0 {
					p.Spec.NodeName = "node"
				}
				pods[p.Namespace+"/"+p.Name] = p
				e.UpsertPod(p)
				ev = "add pod " + p.Name
			case 4: // relabel a namespace
				name := fmt.Sprintf("ns%d", r.Intn(3))
				n := mkNS(name, nil)
				if old := nss[name]; old != nil {
					n = old.DeepCopy()
				}
				n.Labels = translatetest.Random(r, cfg).Namespaces[0].Labels
				nss[n.Name] = n
				e.UpsertNamespace(n)
				ev = "relabel ns " + n.Name
			case 5: // delete a namespace object
				name := fmt.Sprintf("ns%d", r.Intn(3))
				delete(nss, name)
				e.DeleteNamespace(name)
				ev = "delete ns " + name
			case 6, 7: // add or replace a policy
				p := translatetest.Random(r, cfg).Policies[0]
				p.Name = fmt.Sprintf("np%d", r.Intn(5))
				pols[p.Namespace+"/"+p.Name] = p
				e.UpsertPolicy(p)
				ev = "upsert policy " + p.Name
			case 8:
				for k, p := range pols {
					delete(pols, k)
					e.DeletePolicy(p.Namespace, p.Name)
					ev = "delete policy " + k
					break
				}
			}
			full := Translate(snapshot(pods, nss, pols), opts)
			got := e.State()
			if d := policy.Diff(got, full); !d.Empty() {
				t.Fatalf("seq %d step %d (%s): incremental != full: %+v\n--- incremental\n%s--- full\n%s", sq, st, ev, d, render(got), render(full))
			}
			if err := checkBookkeeping(e); err != nil {
				t.Fatalf("seq %d step %d (%s): %v", sq, st, ev, err)
			}
			ch := e.TakeChanges()
			want := policy.Diff(prev, full)
			for k := range want.Sets {
				if _, ok := ch.Sets[k]; !ok {
					t.Fatalf("seq %d step %d (%s): set %s changed but not reported", sq, st, ev, k)
				}
			}
			for k, h := range ch.Members {
				if _, ok := ch.Sets[k]; !ok {
					t.Fatalf("seq %d step %d (%s): member hints for set %s not in Sets", sq, st, ev, k)
				}
				ps, fs := prev.Sets[k], full.Sets[k]
				if ps == nil || fs == nil {
					t.Fatalf("seq %d step %d (%s): member hints for created/deleted set %s", sq, st, ev, k)
				}
				for m := range ps.Members {
					if _, in := fs.Members[m]; !in {
						if _, hinted := h[m]; !hinted {
							t.Fatalf("seq %d step %d (%s): removed member %s of %s not hinted", sq, st, ev, m, k)
						}
					}
				}
				for m := range fs.Members {
					if _, in := ps.Members[m]; !in {
						if _, hinted := h[m]; !hinted {
							t.Fatalf("seq %d step %d (%s): added member %s of %s not hinted", sq, st, ev, m, k)
						}
					}
				}
			}
			for k := range want.Policies {
				if _, ok := ch.Policies[k]; !ok {
					t.Fatalf("seq %d step %d (%s): policy %s changed but not reported", sq, st, ev, k)
				}
			}
			for k := range want.Endpoints {
				if _, ok := ch.Endpoints[k]; !ok {
					t.Fatalf("seq %d step %d (%s): endpoint %s changed but not reported", sq, st, ev, k)
				}
			}
			prev = full
			total++
		}
	}
	t.Logf("%d events: incremental state equal to full translation after each", total)
}

func replacePod(l []*corev1.Pod, p *corev1.Pod) []*corev1.Pod {
	for i := range l {
		if l[i].Name == p.Name {
			l[i] = p
		}
	}
	return l
}

func snapshot(pods map[string]*corev1.Pod, nss map[string]*corev1.Namespace, pols map[string]*networkingv1.NetworkPolicy) Snapshot {
	var s Snapshot
	for _, p := range pods {
		s.Pods = append(s.Pods, p)
	}
	for _, n := range nss {
		s.Namespaces = append(s.Namespaces, n)
	}
	for _, p := range pols {
		s.Policies = append(s.Policies, p)
	}
	return s
}

// checkBookkeeping: every set's contributions point to the current version
// of their pod (an old version, with its old labels, is not kept), and the
// members and their extra contributor counts are exactly what the
// contributions and static members add up to.
func checkBookkeeping(e *Engine) error {
	for id, se := range e.sets {
		count := map[policy.Member]int{}
		for _, m := range se.spec.static {
			count[m]++
		}
		for key, p := range se.contrib {
			if cur := e.pod(key); cur != p {
				return fmt.Errorf("set %s: contribution of %s is not its current version", id, key)
			}
			for _, m := range se.members(p) {
				count[m]++
			}
		}
		for _, ms := range se.nodeContrib {
			for _, m := range ms {
				count[m]++
			}
		}
		if len(count) != len(se.set.Members) {
			return fmt.Errorf("set %s: %d members, contributions add up to %d", id, len(se.set.Members), len(count))
		}
		for m, n := range count {
			if _, ok := se.set.Members[m]; !ok || se.extra[m] != n-1 {
				return fmt.Errorf("set %s: member %s contributed %d times, in set %v, extra %d", id, m, n, ok, se.extra[m])
			}
		}
	}
	return nil
}
