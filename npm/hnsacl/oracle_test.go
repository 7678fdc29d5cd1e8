package hnsacl

import (
	"context"
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/internal/policyoracle"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

func dumpFake(f *Fake) string {
	s := ""
	sets := f.Sets()
	for _, id := range sortedKeys(sets) {
		s += fmt.Sprintf("set %s %s %s\n", id, sets[id].Type, sets[id].Values)
	}
	for _, id := range f.EndpointIDs() {
		acls := f.ACLs(id)
		sort.Slice(acls, func(i, j int) bool { return acls[i].String() < acls[j].String() })
		for _, a := range acls {
			s += fmt.Sprintf("%s: %s\n", id, a)
		}
	}
	return s
}

// programWorld translates w with the pods local(p) as endpoints of a fake
// HNS and programs it.
func programWorld(t *testing.T, w translatetest.World, local func(*corev1.Pod) bool, o Options) (*policy.State, *Fake) {
	t.Helper()
	st := translate.Translate(translate.Snapshot{Pods: w.Pods, Namespaces: w.Namespaces, Policies: w.Policies, ClusterPolicies: w.ClusterPolicies}, translate.Options{IsLocal: local})
	f := NewFake()
	f.MaxACLsPerCall = 7
	f.MaxSetsPerCall = 7
	for _, p := range w.Pods {
		if !local(p) {
			continue
		}
		var ips []netip.Addr
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, netip.MustParseAddr(ip.IP))
		}
		f.AddEndpoint("ep-"+p.Namespace+"-"+p.Name, ips...)
	}
	o.HNS = f
	o.MaxACLsPerCall = 7
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(context.Background(), st, nil); err != nil {
		t.Fatalf("apply: %v\n%s", err, w.String())
	}
	return st, f
}

// TestPropertyEvaluatorMatchesOracle: random worlds, all pods local and a
// random subset local; the fake HNS's ACL walk decides every pod pair,
// external peers, both families and the probe ports exactly like the
// cyclonus oracle (pairs the node fully enforces) and like the model
// (every pair).
func TestPropertyEvaluatorMatchesOracle(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	const worlds = 200
	checked, oracleChecked := 0, 0
	for c := 0; c < worlds; c++ {
		w := translatetest.Random(r, translatetest.PropertyConfig(6))
		localSet := map[string]bool{}
		subset := c%2 == 1
		for _, p := range w.Pods {
			localSet[p.Name] = !subset || r.Intn(2) == 0
		}
		local := func(p *corev1.Pod) bool { return localSet[p.Name] }
		st, f := programWorld(t, w, local, Options{SCTP: true, HostIPs: []netip.Addr{netip.MustParseAddr("10.9.200.1")}})
		o := policyoracle.New(w.Namespaces, w.Pods, w.Policies)
		isLocal := map[string]bool{}
		for _, p := range w.Pods {
			for _, ip := range p.Status.PodIPs {
				isLocal[ip.IP] = localSet[p.Name]
			}
		}
		for _, ext := range translatetest.ExternalIPs {
			isLocal[ext] = true // external: no enforcement elsewhere either
		}
		for _, pr := range w.Probes() {
			src, dst := pr.Src, pr.Dst
			pkt := pr.Packet()
			got := f.Evaluate(pkt)
			model := st.Evaluate(pkt)
			checked++
			if got.Allowed != model.Allowed {
				t.Fatalf("world %d: %s -> %s %s/%d: hns %v (%+v), model %v (%+v)\n%s\n%s", c, src, dst, pr.Proto, pr.Port, got.Allowed, got, model.Allowed, model, w.String(), dumpFake(f))
			}
			if isLocal[src] && isLocal[dst] {
				oracleChecked++
				if want := o.Allowed(src, dst, pr.Proto, pr.Port); got.Allowed != want {
					t.Fatalf("world %d: %s -> %s %s/%d: hns %v (%+v), oracle %v\n%s\n%s", c, src, dst, pr.Proto, pr.Port, got.Allowed, got, want, w.String(), dumpFake(f))
				}
			}
		}
	}
	t.Logf("%d worlds, %d decisions equal to the model, %d of them checked against the oracle", worlds, checked, oracleChecked)
}

// TestPropertySCTPFailsClosed: with SCTP unsupported, the HNS never allows
// more than the oracle, and differs only on SCTP probes.
func TestPropertySCTPFailsClosed(t *testing.T) {
	r := rand.New(rand.NewSource(9))
	const worlds = 100
	denied := 0
	for c := 0; c < worlds; c++ {
		w := translatetest.Random(r, translatetest.PropertyConfig(5))
		all := func(*corev1.Pod) bool { return true }
		_, f := programWorld(t, w, all, Options{})
		o := policyoracle.New(w.Namespaces, w.Pods, w.Policies)
		for _, pr := range w.Probes() {
			src, dst := pr.Src, pr.Dst
			got := f.Evaluate(pr.Packet()).Allowed
			want := o.Allowed(src, dst, pr.Proto, pr.Port)
			if got && !want {
				t.Fatalf("world %d: %s -> %s %s/%d allowed by hns, denied by the oracle\n%s\n%s", c, src, dst, pr.Proto, pr.Port, w.String(), dumpFake(f))
			}
			if got != want {
				if pr.Proto != corev1.ProtocolSCTP {
					t.Fatalf("world %d: %s -> %s %s/%d: hns %v, oracle %v\n%s\n%s", c, src, dst, pr.Proto, pr.Port, got, want, w.String(), dumpFake(f))
				}
				denied++
			}
		}
	}
	if denied == 0 {
		t.Fatal("no SCTP decision failed closed: the test does not exercise SCTP ports")
	}
	t.Logf("%d worlds; %d SCTP connections the oracle allows were denied (fail closed), none allowed beyond the oracle", worlds, denied)
}
