package translate

import (
	"fmt"
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/open-acn/acn/internal/policyoracle"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// byteSource makes the fuzz input the random source of the world builders:
// every rand.Intn(n) (n <= 256) consumes one byte and is that byte mod n,
// so a mutation of one byte changes one decision. An exhausted input
// reads as zeros (every choice then takes its first option).
type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) Int63() int64 {
	var c byte
	if s.i < len(s.b) {
		c = s.b[s.i]
		s.i++
	}
	return int64(c) << 32 // Int31() = c
}

func (s *byteSource) Seed(int64) {}

// FuzzEngineMatchesOracle: a world (namespaces, pods, policies) and then a
// sequence of events (pod relabel/delete/re-add, namespace relabel, policy
// upsert/delete), all decided by the fuzz input, go through the incremental
// engine. It must not panic, its state must equal a full Translate of the
// current objects after every event, and at the end policy.State.Evaluate
// must agree with the cyclonus oracle on every probe.
func FuzzEngineMatchesOracle(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x03\x01\x02\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := rand.New(&byteSource{b: data})
		cfg := translatetest.PropertyConfig(1 + r.Intn(6))
		w := translatetest.Random(r, cfg)
		opts := Options{IsLocal: func(*corev1.Pod) bool { return true }}
		e := NewEngine(opts)
		pods := map[string]*corev1.Pod{}
		nss := map[string]*corev1.Namespace{}
		pols := map[string]*networkingv1.NetworkPolicy{}
		for _, n := range w.Namespaces {
			nss[n.Name] = n
			e.UpsertNamespace(n)
		}
		for _, p := range w.Pods {
			pods[p.Namespace+"/"+p.Name] = p
			e.UpsertPod(p)
		}
		for _, p := range w.Policies {
			pols[p.Namespace+"/"+p.Name] = p
			e.UpsertPolicy(p)
		}
		e.TakeChanges()
		for step := 0; step < 24 && r.Intn(8) != 0; step++ {
			var ev string
			switch r.Intn(6) {
			case 0: // relabel a pod
				p := w.Pods[r.Intn(len(w.Pods))].DeepCopy()
				if _, live := pods[p.Namespace+"/"+p.Name]; !live {
					continue
				}
				p.Labels = translatetest.Random(r, cfg).Pods[0].Labels
				pods[p.Namespace+"/"+p.Name] = p
				e.UpsertPod(p)
				ev = "relabel pod " + p.Name
			case 1: // delete a pod
				p := w.Pods[r.Intn(len(w.Pods))]
				delete(pods, p.Namespace+"/"+p.Name)
				e.DeletePod(p.Namespace, p.Name)
				ev = "delete pod " + p.Name
			case 2: // (re)add a pod as it was first
				p := w.Pods[r.Intn(len(w.Pods))]
				pods[p.Namespace+"/"+p.Name] = p
				e.UpsertPod(p)
				ev = "add pod " + p.Name
			case 3: // relabel a namespace
				n := nss[fmt.Sprintf("ns%d", r.Intn(cfg.Namespaces))].DeepCopy()
				n.Labels = translatetest.Random(r, cfg).Namespaces[0].Labels
				nss[n.Name] = n
				e.UpsertNamespace(n)
				ev = "relabel ns " + n.Name
			case 4: // add or replace a policy
				p := translatetest.Random(r, cfg).Policies[0]
				p.Name = fmt.Sprintf("np%d", r.Intn(5))
				pols[p.Namespace+"/"+p.Name] = p
				e.UpsertPolicy(p)
				ev = "upsert policy " + p.Namespace + "/" + p.Name
			case 5: // delete a policy
				p := w.Policies[r.Intn(len(w.Policies))]
				delete(pols, p.Namespace+"/"+p.Name)
				e.DeletePolicy(p.Namespace, p.Name)
				ev = "delete policy " + p.Namespace + "/" + p.Name
			}
			full := Translate(snapshot(pods, nss, pols), opts)
			if d := policy.Diff(e.State(), full); !d.Empty() {
				t.Fatalf("step %d (%s): incremental != full: %+v\n--- incremental\n%s--- full\n%s", step, ev, d, render(e.State()), render(full))
			}
			e.TakeChanges()
		}
		cur := snapshot(pods, nss, pols)
		now := translatetest.World{Namespaces: cur.Namespaces, Pods: cur.Pods, Policies: cur.Policies}
		o := policyoracle.New(now.Namespaces, now.Pods, now.Policies)
		st := e.State()
		for _, pr := range now.Probes() {
			want := o.Allowed(pr.Src, pr.Dst, pr.Proto, pr.Port)
			if got := st.Evaluate(pr.Packet()); got.Allowed != want {
				t.Fatalf("%s -> %s %s/%d: model %v (%+v), oracle %v\nworld:\n%s\nmodel:\n%s", pr.Src, pr.Dst, pr.Proto, pr.Port, got.Allowed, got, want, now.String(), render(st))
			}
		}
	})
}
