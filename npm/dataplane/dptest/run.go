//go:build linux

package dptest

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vishvananda/netlink"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/policyoracle"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// NewDataplane builds the dataplane under test, programming the kernel of
// the given node namespace (and nothing else).
type NewDataplane func(t testing.TB, node *netnstest.NS) dataplane.Dataplane

// Options tune Run.
type Options struct {
	// PropertyCases is the number of random worlds of the property test
	// (default 16, 4 with -short).
	PropertyCases int
	// Seed of the property test's worlds.
	Seed int64
	// Inspect, if set, is called at named steps of the scenarios with the
	// node's namespace, so a dataplane's own test can read back its kernel
	// objects (iptables-save, ipset save, nft list) where the shared suite
	// only probes, or tune the dataplane for one scenario (t.Cleanup
	// restores). Steps: "cases/<case name>" after a case is programmed
	// and probed, "cases/cleanup" after Cleanup, "update-without-gap/done",
	// "restart/run1" (first run applied), "restart/run2" (second run
	// applied, before any Reconcile), "restart/reconciled", and
	// "property/start" (before the first world).
	Inspect func(t *testing.T, step string, node *netnstest.NS)
}

func (o Options) inspect(t *testing.T, step string, node *netnstest.NS) {
	t.Helper()
	if o.Inspect != nil {
		o.Inspect(t, step, node)
	}
}

// Run runs the whole shared suite against one dataplane.
func Run(t *testing.T, newDP NewDataplane, o Options) {
	t.Run("cases", func(t *testing.T) { RunCases(t, newDP, o) })
	t.Run("update-without-gap", func(t *testing.T) { RunUpdateWithoutGap(t, newDP, o) })
	t.Run("cluster-update-without-gap", func(t *testing.T) { RunClusterUpdateWithoutGap(t, newDP, o) })
	t.Run("restart-replaces-stale", func(t *testing.T) { RunRestart(t, newDP, o) })
	t.Run("property-vs-oracle", func(t *testing.T) { RunProperty(t, newDP, o) })
}

// Addr is the address of pod i (-1: off-cluster) in family fam (0: IPv4, 1: IPv6).
func (tp *Topo) Addr(i, fam int) string {
	if i < 0 {
		return translatetest.ExternalIPs[fam]
	}
	return tp.IPs[i][fam]
}

// Check probes every expectation in both families, in parallel (an
// expected-allowed miss is retried, see ProbeWant).
func (tp *Topo) Check(t testing.TB, exps []Expect) {
	t.Helper()
	type res struct {
		e   Expect
		fam int
		got bool
	}
	var wg sync.WaitGroup
	out := make(chan res, len(exps)*2)
	for _, e := range exps {
		for fam := 0; fam < 2; fam++ {
			wg.Add(1)
			go func(e Expect, fam int) {
				defer wg.Done()
				out <- res{e, fam, tp.ProbeWant(e.Src, tp.Addr(e.Dst, fam), e.Proto, e.Port, e.Allow)}
			}(e, fam)
		}
	}
	wg.Wait()
	close(out)
	for r := range out {
		if r.got != r.e.Allow {
			t.Errorf("pod%d -> pod%d %s/%d (IPv%d): allowed=%v, want %v", r.e.Src, r.e.Dst, r.e.Proto, r.e.Port, 4+2*r.fam, r.got, r.e.Allow)
		}
	}
}

// FlushConntrack forgets the node's connection tracking entries, so the
// next probes are new connections judged by the current policies (an
// earlier allowed UDP exchange on a reused source port would otherwise be
// "established" and pass, as it rightly would in production).
func (tp *Topo) FlushConntrack(t testing.TB) {
	t.Helper()
	h, err := tp.Node.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		t.Fatalf("flush conntrack: %v", err)
	}
}

func apply(t testing.TB, d dataplane.Dataplane, e *translate.Engine, full bool) {
	t.Helper()
	ch := e.TakeChanges()
	if full {
		ch = nil
	}
	if err := d.Apply(context.Background(), e.State(), ch); err != nil {
		t.Fatal(err)
	}
}

// ApplyBasic programs BasicPolicies into d (one Apply of a new engine's
// changes) and returns the engine, for a dataplane's own kernel tests.
func (tp *Topo) ApplyBasic(t testing.TB, d dataplane.Dataplane) *translate.Engine {
	t.Helper()
	e := tp.Engine(BasicPolicies()...)
	apply(t, d, e, false)
	return e
}

func reconcileClean(t testing.TB, d dataplane.Dataplane, when string) {
	t.Helper()
	if n, err := d.Reconcile(context.Background()); err != nil || n != 0 {
		t.Errorf("reconcile %s: %d repairs, %v (read-back does not match what was written?)", when, n, err)
	}
}

// RunCases programs every case of Cases into one node, one after the
// other (each a full Apply replacing the previous case), checks the
// expectations against the cyclonus oracle (so the table itself is right)
// and against real probes, and that Reconcile finds nothing to repair.
// Cleanup at the end opens everything again.
func RunCases(t *testing.T, newDP NewDataplane, o Options) {
	tp := NewTopo(t, Pods)
	tp.Check(t, []Expect{{2, 0, tcpP, 80, true}, {1, 0, sctpP, 80, true}})
	d := newDP(t, tp.Node)
	nss, pods := tp.Cluster()
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			var or *policyoracle.ClusterOracle
			if c.NoOracle == "" {
				or = policyoracle.NewCluster(nss, pods, c.Policies, c.ClusterPolicies)
			} else {
				t.Logf("case table not checked against the oracle: %s", c.NoOracle)
			}
			for _, e := range c.Expect {
				if or == nil {
					break
				}
				for fam := 0; fam < 2; fam++ {
					if got := or.Allowed(tp.Addr(e.Src, fam), tp.Addr(e.Dst, fam), corev1.Protocol(e.Proto), e.Port); got != e.Allow {
						t.Errorf("case table: pod%d -> pod%d %s/%d IPv%d: table says %v, the oracle %v", e.Src, e.Dst, e.Proto, e.Port, 4+2*fam, e.Allow, got)
					}
				}
			}
			apply(t, d, tp.EngineFor(c), true)
			tp.FlushConntrack(t)
			tp.Check(t, c.Expect)
			reconcileClean(t, d, "after apply")
			o.inspect(t, "cases/"+c.Name, tp.Node)
		})
	}
	if err := d.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	o.inspect(t, "cases/cleanup", tp.Node)
	tp.Check(t, []Expect{{2, 0, tcpP, 80, true}, {-1, 1, tcpP, 81, true}, {2, -1, udpP, 53, true}})
}

// RunUpdateWithoutGap replaces a policy 30 times (new selector forms and
// ports, so new sets and chains each time and old ones removed), then
// moves the destination pod between dispatch groups 20 times, while probe
// loops run: the denied connection is never allowed and the allowed one
// never denied.
func RunUpdateWithoutGap(t *testing.T, newDP NewDataplane, o Options) {
	tp := NewTopo(t, Pods)
	d := newDP(t, tp.Node)
	e := tp.ApplyBasic(t, d)
	ctx := context.Background()
	stop := tp.ProbeLoops()
	forms := []*metav1.LabelSelector{
		Labels("app", "cli"),
		expr("app", metav1.LabelSelectorOpIn, "cli", "x"),
		expr("app", metav1.LabelSelectorOpNotIn, "web", "other"),
	}
	for i := 0; i < 30; i++ {
		ps := ports(networkingv1.NetworkPolicyPort{Port: NamedPort("http")})
		if i%2 == 1 {
			ps = ports(networkingv1.NetworkPolicyPort{Port: IntPort(79), EndPort: int32p(80)}, tcp(81))
		}
		e.UpsertPolicy(np("a", "web", networkingv1.NetworkPolicySpec{
			PodSelector: *Labels("app", "web"),
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: forms[i%3]}}, Ports: ps}},
		}))
		if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The destination pod moves between dispatch groups: a second policy
	// selecting it comes and goes (its isolation list changes, so its
	// dispatch entry and group chain are replaced each time).
	for i := 0; i < 20; i++ {
		if i%2 == 0 {
			e.UpsertPolicy(np("a", "extra", networkingv1.NetworkPolicySpec{
				PodSelector: *Labels("app", "web"),
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: Labels("app", "cli")}}, Ports: ports(tcp(81))}},
			}))
		} else {
			e.DeletePolicy("a", "extra")
		}
		if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	leaks, drops, probes := stop()
	if leaks > 0 || drops > 0 {
		t.Errorf("during 30 policy replacements and 20 group moves: %d denied connections got through, %d allowed ones were dropped (of %d probes)", leaks, drops, probes)
	} else {
		t.Logf("%d probes during 30 policy replacements and 20 group moves: no gap", probes)
	}
	reconcileClean(t, d, "after the replacements")
	o.inspect(t, "update-without-gap/done", tp.Node)
}

// ProbeLoops starts probe loops under BasicPolicies in both families:
// pod2 -> pod0 TCP 80 (denied), off-cluster -> pod0 TCP 80 (denied, only
// by pod0's ingress; 30 ms timeouts, so many more SYNs) and pod1 -> pod0
// TCP 80 (allowed). stop ends them and returns how many denied probes got
// through, how many allowed ones failed, and the number of probes.
func (tp *Topo) ProbeLoops() (stop func() (leaks, drops, probes int64)) {
	var done atomic.Bool
	var nLeaks, nDrops, nProbes atomic.Int64
	var wg sync.WaitGroup
	// loop probes until stopped, counting in bad the probes for which wrong is true.
	loop := func(bad *atomic.Int64, wrong func() bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				nProbes.Add(1)
				if wrong() {
					bad.Add(1)
				}
			}
		}()
	}
	for w := 0; w < 3; w++ {
		dst := tp.IPs[0][w%2]
		loop(&nLeaks, func() bool { return tp.Probe(2, dst, tcpP, 80) })
		loop(&nDrops, func() bool { return !tp.ProbeAllowed(1, dst, tcpP, 80) })
	}
	for w := 0; w < 6; w++ {
		dst := tp.IPs[0][w%2]
		loop(&nLeaks, func() bool { return tp.ProbeTimeout(-1, dst, tcpP, 80, 30*time.Millisecond) })
	}
	return func() (int64, int64, int64) {
		done.Store(true)
		wg.Wait()
		return nLeaks.Load(), nDrops.Load(), nProbes.Load()
	}
}

// RunRestart: a new process (a new Dataplane over the same kernel)
// replaces the previous run's state in one transaction: a policy the new
// run no longer has stops isolating its pods, the others stay enforced.
func RunRestart(t *testing.T, newDP NewDataplane, o Options) {
	tp := NewTopo(t, Pods)
	old := np("a", "old", networkingv1.NetworkPolicySpec{
		PodSelector: *Labels("app", "cli"),
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.99.0.0/16"}}}}},
	})
	e := tp.Engine(append(BasicPolicies(), old)...)
	d1 := newDP(t, tp.Node)
	apply(t, d1, e, false)
	o.inspect(t, "restart/run1", tp.Node)
	tp.Check(t, []Expect{{2, 0, tcpP, 80, false}, {-1, 1, tcpP, 80, false}})
	// "kill -9": d1 is dropped, the kernel keeps enforcing.
	e.DeletePolicy("a", "old")
	d2 := newDP(t, tp.Node)
	apply(t, d2, e, false)
	o.inspect(t, "restart/run2", tp.Node)
	tp.FlushConntrack(t)
	tp.Check(t, BasicExpect) // includes -1 -> pod1 open again
	reconcileClean(t, d2, "after restart")
	o.inspect(t, "restart/reconciled", tp.Node)
	tp.Check(t, BasicExpect)
	reconcileClean(t, d2, "after restart, again")
	// Restarts under traffic: each new process replaces the state in one
	// transaction; probes never see a gap.
	stop := tp.ProbeLoops()
	for i := 0; i < 8; i++ {
		apply(t, newDP(t, tp.Node), e, true)
		time.Sleep(20 * time.Millisecond)
	}
	if leaks, drops, probes := stop(); leaks > 0 || drops > 0 {
		t.Errorf("during 8 restarts: %d denied connections got through, %d allowed ones were dropped (of %d probes)", leaks, drops, probes)
	}
}

// RunProperty: random labels and policies, programmed one world after the
// other into the same node (alternately as a full state and as the
// incremental engine's changes); for every pod pair and the off-cluster
// peer, both families and TCP/UDP/SCTP ports, the kernel's decision equals
// the cyclonus oracle's.
func RunProperty(t *testing.T, newDP NewDataplane, o Options) {
	cases := o.PropertyCases
	if cases == 0 {
		cases = 16
	}
	if testing.Short() {
		cases = min(cases, 4)
	}
	const pods = 5
	tp := NewTopo(t, pods)
	ctx := context.Background()
	o.inspect(t, "property/start", tp.Node)
	d := newDP(t, tp.Node)
	r := rand.New(rand.NewSource(o.Seed + 7))
	checked := 0
	var eng *translate.Engine
	for c := 0; c < cases; c++ {
		w := translatetest.Random(r, translatetest.PropertyConfig(pods))
		full := c%2 == 0
		if full {
			st := translate.Translate(translate.Snapshot{Pods: w.Pods, Namespaces: w.Namespaces, Policies: w.Policies}, translate.Options{NodeName: NodeName})
			if err := d.Apply(ctx, st, nil); err != nil {
				t.Fatal(err)
			}
			eng = translate.NewEngine(translate.Options{NodeName: NodeName})
		}
		// The engine moves to the new world (incrementally, on odd cases).
		LoadWorld(eng, w)
		if full {
			eng.TakeChanges()
		} else if err := d.Apply(ctx, eng.State(), eng.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		tp.FlushConntrack(t)
		or := policyoracle.New(w.Namespaces, w.Pods, w.Policies)
		type pr struct {
			src, dst, fam int
			proto         corev1.Protocol
			port          int
			want          bool
		}
		var prs []pr
		for src := -1; src < pods; src++ {
			for dst := -1; dst < pods; dst++ {
				if src == dst {
					continue
				}
				for fam := 0; fam < 2; fam++ {
					for _, pp := range translatetest.ProbePorts {
						want := or.Allowed(tp.Addr(src, fam), tp.Addr(dst, fam), pp.Proto, pp.Port)
						prs = append(prs, pr{src, dst, fam, pp.Proto, pp.Port, want})
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
				got[i] = tp.ProbeWant(p.src, tp.Addr(p.dst, p.fam), policy.Protocol(p.proto), p.port, p.want)
				<-sem
			}(i, p)
		}
		wg.Wait()
		for i, p := range prs {
			checked++
			if got[i] != p.want {
				t.Fatalf("case %d: pod%d -> pod%d IPv%d %s/%d: kernel %v, oracle %v\n%s", c, p.src, p.dst, 4+2*p.fam, p.proto, p.port, got[i], p.want, w)
			}
		}
		reconcileClean(t, d, fmt.Sprintf("case %d", c))
	}
	t.Logf("%d random worlds, %d kernel decisions equal to the oracle", cases, checked)
}
