package hnsacl

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// world tracks the objects of a scenario to program a reference from scratch.
type world struct {
	isLocal func(*corev1.Pod) bool
	pods    map[string]*corev1.Pod
	nss     map[string]*corev1.Namespace
	pols    map[string]*networkingv1.NetworkPolicy
}

func newWorld() *world {
	return &world{isLocal: allLocal, pods: map[string]*corev1.Pod{}, nss: map[string]*corev1.Namespace{}, pols: map[string]*networkingv1.NetworkPolicy{}}
}

func (w *world) snapshot() translate.Snapshot {
	var s translate.Snapshot
	for _, k := range sortedKeys(w.pods) {
		s.Pods = append(s.Pods, w.pods[k])
	}
	for _, k := range sortedKeys(w.nss) {
		s.Namespaces = append(s.Namespaces, w.nss[k])
	}
	for _, k := range sortedKeys(w.pols) {
		s.Policies = append(s.Policies, w.pols[k])
	}
	return s
}

// reference programs the world from scratch into a new fake: what the
// incremental dataplane's fake must equal.
func (w *world) reference(t *testing.T, o Options) []string {
	t.Helper()
	st := translate.Translate(w.snapshot(), translate.Options{IsLocal: w.isLocal})
	f := NewFake()
	for _, p := range w.pods {
		if w.isLocal(p) {
			addEndpoints(f, p)
		}
	}
	o.HNS = f
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, d, st, nil)
	return render(d, f)
}

// scenario drives an Engine, a fake HNS and the dataplane step by step.
type scenario struct {
	t   *testing.T
	w   *world
	e   *translate.Engine
	f   *Fake
	d   *Dataplane
	opt Options
}

func newScenario(t *testing.T, o Options) *scenario { return newScenarioLocal(t, o, allLocal) }

// newScenarioLocal: only the pods local(p) are on this node.
func newScenarioLocal(t *testing.T, o Options, local func(*corev1.Pod) bool) *scenario {
	w := newWorld()
	w.isLocal = local
	s := &scenario{t: t, w: w, e: translate.NewEngine(translate.Options{IsLocal: local}), f: NewFake(), opt: o}
	s.f.MaxACLsPerCall = o.MaxACLsPerCall
	s.f.MaxSetsPerCall = o.MaxACLsPerCall
	o.HNS = s.f
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.d = d
	return s
}

func (s *scenario) ns(n *corev1.Namespace) { s.w.nss[n.Name] = n; s.e.UpsertNamespace(n) }
func (s *scenario) pod(p *corev1.Pod) {
	k := p.Namespace + "/" + p.Name
	if _, ok := s.w.pods[k]; !ok && s.w.isLocal(p) {
		addEndpoints(s.f, p) // the CNI creates the endpoint before the pod has its IP
	}
	s.w.pods[k] = p
	s.e.UpsertPod(p)
}
func (s *scenario) delPod(p *corev1.Pod) {
	delete(s.w.pods, p.Namespace+"/"+p.Name)
	s.f.RemoveEndpoint(epID(p)) // the CNI deletes the endpoint first
	s.e.DeletePod(p.Namespace, p.Name)
}
func (s *scenario) pol(np *networkingv1.NetworkPolicy) {
	s.w.pols[np.Namespace+"/"+np.Name] = np
	s.e.UpsertPolicy(np)
}

// load adds the objects of a random world.
func (s *scenario) load(w translatetest.World) {
	for _, n := range w.Namespaces {
		s.ns(n)
	}
	for _, p := range w.Pods {
		s.pod(p)
	}
	for _, p := range w.Policies {
		s.pol(p)
	}
}

// webToDB: the pods app=db of namespace default admit app=web on TCP 80.
func webToDB(name string) *networkingv1.NetworkPolicy {
	return mkPolicy("default", name, sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(podPeer(sel("app", "web"))), tcp(80))}, nil)
}

func (s *scenario) delPol(np *networkingv1.NetworkPolicy) {
	delete(s.w.pols, np.Namespace+"/"+np.Name)
	s.e.DeletePolicy(np.Namespace, np.Name)
}

// step applies the engine's changes and checks the fake against the
// from-scratch reference, the evaluator against the model, and the calls
// against calls (method -> exact count; "max" -> bound on the total).
func (s *scenario) step(name string, calls map[string]int, want ...string) {
	s.t.Helper()
	s.f.ResetCalls()
	if err := s.d.Apply(context.Background(), s.e.State(), s.e.TakeChanges()); err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	got := render(s.d, s.f)
	if diff := diffLines(got, s.w.reference(s.t, s.opt)); diff != "" {
		s.t.Fatalf("%s: fake differs from the state programmed from scratch:\n%s", name, diff)
	}
	if want != nil {
		if diff := diffLines(got, want); diff != "" {
			s.t.Fatalf("%s: fake differs from expected:\n%s", name, diff)
		}
	}
	checkModel(s.t, name, s.e.State(), s.f, s.w)
	gotCalls := s.f.Calls()
	if max, ok := calls["max"]; ok {
		if n := s.f.TotalCalls(); n > max {
			s.t.Fatalf("%s: %d HNS calls %v, want at most %d", name, n, gotCalls, max)
		}
	}
	for m, n := range calls {
		if m != "max" && gotCalls[m] != n {
			s.t.Fatalf("%s: %d %s calls (all: %v), want %d", name, gotCalls[m], m, gotCalls, n)
		}
	}
	s.t.Logf("%s: calls %v", name, gotCalls)
}

// checkModel: the fake's decisions equal the model's for every pod pair
// and a few ports.
func checkModel(t *testing.T, name string, st *policy.State, f *Fake, w *world) {
	t.Helper()
	var addrs []netip.Addr
	for _, p := range w.pods {
		for _, ip := range p.Status.PodIPs {
			addrs = append(addrs, netip.MustParseAddr(ip.IP))
		}
	}
	addrs = append(addrs, netip.MustParseAddr("10.1.2.3"))
	for _, src := range addrs {
		for _, dst := range addrs {
			if src == dst {
				continue
			}
			for _, pp := range []struct {
				proto policy.Protocol
				port  uint16
			}{{policy.TCP, 80}, {policy.TCP, 5432}, {policy.TCP, 5433}, {policy.TCP, 8080}, {policy.UDP, 53}} {
				pkt := policy.Packet{Src: src, Dst: dst, Protocol: pp.proto, Port: pp.port}
				if got, want := f.Evaluate(pkt), st.Evaluate(pkt); got.Allowed != want.Allowed {
					t.Fatalf("%s: %v: hns %v (%+v), model %v", name, pkt, got.Allowed, got, want.Allowed)
				}
			}
		}
	}
}

func TestScenarioPodsLabelsPolicies(t *testing.T) {
	s := newScenario(t, Options{MaxACLsPerCall: 2})
	s.ns(mkNS("default", nil))
	s.ns(mkNS("other", map[string]string{"team": "x"}))
	a := mkPod("default", "a", map[string]string{"app": "web"}, []string{"10.0.0.1"}, cport("http", corev1.ProtocolTCP, 8080))
	b := mkPod("default", "b", map[string]string{"app": "db"}, []string{"10.0.0.2"})
	c := mkPod("other", "c", map[string]string{"app": "web"}, []string{"10.0.1.1"})
	s.pod(a)
	s.pod(b)
	s.pod(c)
	s.step("initial, no policy", map[string]int{"ListEndpoints": 1, "SetPolicies": 1, "ModifyACLs": 0, "ModifySetPolicies": 0}, []string{}...)

	p1 := mkPolicy("default", "db", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{
		in(peers(podPeer(sel("app", "web")), nsPeer(sel("team", "x"))), tcp(5432))}, nil)
	s.pol(p1)
	s.step("policy added: sets, then allow and Block in one call", map[string]int{"ModifySetPolicies": 2, "ModifyACLs": 1, "ListEndpoints": 0},
		"ep-b: Allow In prio=200 proto=6 remote={nested pods with (all) in namespaces with team=x or pods in namespace default with app=web}/4 lport=5432",
		"ep-b: Block In prio=4000",
		"set {nested pods with (all) in namespaces with team=x or pods in namespace default with app=web}/4 NESTEDIPSET {pods with (all) in namespaces with team=x}/4,{pods in namespace default with app=web}/4",
		"set {pods in namespace default with app=web}/4 IPSET 10.0.0.1",
		"set {pods with (all) in namespaces with team=x}/4 IPSET 10.0.1.1",
	)

	d := mkPod("default", "d", map[string]string{"app": "web"}, []string{"10.0.0.4"})
	s.pod(d)
	s.step("peer pod added: one SetPolicy update, no ACL call", map[string]int{"ModifySetPolicies": 1, "ModifyACLs": 0, "ListEndpoints": 0})

	c2 := c.DeepCopy()
	c2.Labels = map[string]string{"app": "other"}
	s.pod(c2)
	s.step("label change outside every selector: no call", map[string]int{"max": 0})

	a2 := a.DeepCopy()
	a2.Labels = map[string]string{"app": "db"}
	s.pod(a2)
	s.step("label change: a leaves the peers and becomes selected", map[string]int{"ModifySetPolicies": 1, "ModifyACLs": 1, "ListEndpoints": 0})

	s.ns(mkNS("other", map[string]string{"team": "y"}))
	s.step("namespace label change: the peer set empties", map[string]int{"max": 4})

	p1b := p1.DeepCopy()
	p1b.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{tcp(5433)}
	s.pol(p1b)
	s.step("policy updated: old ACL out, new ACL in, on each selected endpoint", map[string]int{"ModifyACLs": 4, "ModifySetPolicies": 0})

	e := mkPod("default", "e", map[string]string{"app": "db"}, []string{"10.0.0.5"})
	s.pod(e)
	s.step("selected pod added: one endpoint list, one ACL call", map[string]int{"ListEndpoints": 1, "ModifyACLs": 1, "ModifySetPolicies": 0})

	s.delPod(e)
	s.step("selected pod deleted (endpoint already gone)", map[string]int{"max": 1})

	s.delPod(d)
	s.step("peer pod deleted: the peer sets are empty, the ACLs referencing them go", map[string]int{"max": 6})

	p2 := mkPolicy("other", "egress", &metav1.LabelSelector{}, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{
		out(peers(nsPeer(&metav1.LabelSelector{})), namedP(corev1.ProtocolTCP, "http")), out(nil, portP(corev1.ProtocolUDP, 53, 0))})
	s.pol(p2)
	s.step("egress named-port policy added", map[string]int{"max": 4})

	s.f.ResetCalls()
	if err := s.d.Apply(context.Background(), s.e.State(), nil); err != nil {
		t.Fatal(err)
	}
	if n := s.f.TotalCalls(); n != 0 {
		t.Fatalf("full re-apply of an unchanged state: %d calls %v", n, s.f.Calls())
	}

	s.delPol(p1b)
	s.step("policy removed", map[string]int{"max": 6})
	s.delPol(p2)
	s.step("all policies removed: nothing left", map[string]int{"max": 4}, []string{}...)
	if n := len(s.f.Sets()); n != 0 {
		t.Fatalf("%d set policies left", n)
	}
}

// TestScenarioBatching: an endpoint with more ACLs than fit in one call
// gets them in ceil(n/max) calls, each within the limit (the fake rejects
// bigger calls), and a change touching one ACL costs one call.
func TestScenarioBatching(t *testing.T) {
	s := newScenario(t, Options{MaxACLsPerCall: 3})
	s.ns(mkNS("default", nil))
	a := mkPod("default", "a", map[string]string{"app": "web"}, []string{"10.0.0.1"})
	s.pod(a)
	var ports []networkingv1.NetworkPolicyPort
	for i := 0; i < 10; i++ {
		ports = append(ports, tcp(1000+i))
	}
	np := mkPolicy("default", "many", &metav1.LabelSelector{}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(nil, ports...)}, nil)
	s.pol(np)
	s.step("10 allows, then the Block, in batches of 3", map[string]int{"ModifyACLs": 4, "ModifySetPolicies": 0})
	if n := len(s.f.ACLs("ep-a")); n != 11 {
		t.Fatalf("%d ACLs, want 11", n)
	}
	np2 := np.DeepCopy()
	np2.Spec.Ingress[0].Ports[9] = tcp(2000)
	s.pol(np2)
	s.step("one port changed: one add call, one remove call", map[string]int{"ModifyACLs": 2})
}

// TestScenarioRandomIncremental: random event sequences through the
// Engine; after every step the incrementally programmed fake equals the
// state programmed from scratch and decides like the model.
func TestScenarioRandomIncremental(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	for run := 0; run < 20; run++ {
		cfg := translatetest.PropertyConfig(6)
		w := translatetest.Random(r, cfg)
		s := newScenario(t, Options{MaxACLsPerCall: 4})
		if run%2 == 1 { // half the runs: pods 1, 3, 5 are on another node
			s = newScenarioLocal(t, Options{MaxACLsPerCall: 4}, func(p *corev1.Pod) bool { return p.Name != "pod1" && p.Name != "pod3" && p.Name != "pod5" })
		}
		s.load(w)
		s.step(fmt.Sprintf("run %d initial", run), nil)
		for i := 0; i < 15; i++ {
			other := translatetest.Random(r, cfg)
			switch r.Intn(5) {
			case 0: // relabel a pod
				p := other.Pods[r.Intn(len(other.Pods))]
				if cur := s.w.pods[p.Namespace+"/"+p.Name]; cur != nil {
					s.pod(p)
				}
			case 1: // delete or re-add a pod
				p := w.Pods[r.Intn(len(w.Pods))]
				if _, ok := s.w.pods[p.Namespace+"/"+p.Name]; ok {
					s.delPod(p)
				} else {
					s.pod(p)
				}
			case 2: // relabel a namespace
				s.ns(other.Namespaces[r.Intn(len(other.Namespaces))])
			case 3: // add or update a policy
				s.pol(other.Policies[r.Intn(len(other.Policies))])
			case 4: // delete a policy
				keys := sortedKeys(s.w.pols)
				if len(keys) > 0 {
					s.delPol(s.w.pols[keys[r.Intn(len(keys))]])
				}
			}
			s.step(fmt.Sprintf("run %d step %d", run, i), nil)
		}
	}
}

func TestRestartReplacesStaleStateWithoutFlush(t *testing.T) {
	pods, nss := tableWorld()
	pol := webToDB("p")
	f := NewFake()
	addEndpoints(f, pods...)
	d1, _ := newObserved(t, f, Options{})
	apply(t, d1, translateAll(pods, nss, []*networkingv1.NetworkPolicy{pol}), nil)
	before := render(d1, f)

	// same desired state after a restart: read back, no modify call
	f.ResetCalls()
	d2, _ := newObserved(t, f, Options{})
	apply(t, d2, translateAll(pods, nss, []*networkingv1.NetworkPolicy{pol}), nil)
	if c := f.Calls(); c["ModifyACLs"]+c["ModifySetPolicies"] != 0 {
		t.Fatalf("restart with an unchanged state made modify calls: %v", c)
	}
	if diff := diffLines(render(d2, f), before); diff != "" {
		t.Fatal(diff)
	}

	// a changed desired state after a restart: only the difference, new
	// ACL added before the stale one is removed
	pol2 := pol.DeepCopy()
	pol2.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{tcp(81)}
	f.ResetCalls()
	d3, _ := newObserved(t, f, Options{})
	apply(t, d3, translateAll(pods, nss, []*networkingv1.NetworkPolicy{pol2}), nil)
	if c := f.Calls(); c["ModifyACLs"] != 2 || c["ModifySetPolicies"] != 0 {
		t.Fatalf("calls %v, want 2 ACL calls (add, remove) and no set call", c)
	}
	want := []string{
		"ep-b: Allow In prio=200 proto=6 remote={pods in namespace default with app=web}/4 lport=81",
		"ep-b: Block In prio=4000",
		"set {pods in namespace default with app=web}/4 IPSET 10.0.0.1",
	}
	if diff := diffLines(render(d3, f), want); diff != "" {
		t.Fatal(diff)
	}
}

func TestReconcileRepairsDrift(t *testing.T) {
	pods, nss := tableWorld()
	pol := webToDB("p")
	f := NewFake()
	addEndpoints(f, pods...)
	d, logs := newObserved(t, f, Options{})
	apply(t, d, translateAll(pods, nss, []*networkingv1.NetworkPolicy{pol}), nil)
	want := render(d, f)
	ctx := context.Background()
	if n, err := d.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("reconcile without drift: %d repairs, %v", n, err)
	}

	// someone removes an ACL, adds a stale one of ours, alters a set, and
	// adds a foreign ACL (not ours: untouched)
	acls := f.ACLs("ep-b")
	var allow ACL
	for _, a := range acls {
		if a.Action == Allow {
			allow = a
		}
	}
	if !f.DeleteACL("ep-b", allow.ID) {
		t.Fatal("no allow ACL")
	}
	stale := ACL{Action: Allow, Direction: In, Priority: PriorityAllow, LocalPorts: "22", Protocols: "6"}.withID()
	f.InjectACL("ep-a", stale)
	foreign := ACL{ID: "cni-default", Action: Allow, Direction: In, Priority: 65000}
	f.InjectACL("ep-a", foreign)
	var setID string
	for id := range f.Sets() {
		setID = id
	}
	f.InjectSet(SetPolicy{ID: setID, Name: setID, Type: IPSet, Values: "10.9.9.9"})

	n, err := d.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d repairs, want 3 (ACL re-added, stale ACL removed, set restored)", n)
	}
	got := render(d, f)
	want = append(want, "ep-a: Allow In prio=65000")
	if diff := diffLines(got, want); diff != "" {
		t.Fatal(diff)
	}
	if logs.FilterMessage("hns reconcile repaired drift").Len() != 1 {
		t.Fatal("no reconcile log line")
	}

	// an endpoint that appears after the pod was programmed is picked up
	// by reconcile: the pod's endpoint is missing at first
	f2 := NewFake()
	addEndpoints(f2, pods[0], pods[2])
	d2, _ := newObserved(t, f2, Options{})
	apply(t, d2, translateAll(pods, nss, []*networkingv1.NetworkPolicy{pol}), nil)
	if len(f2.ACLs("ep-b")) != 0 {
		t.Fatal("ACLs on a missing endpoint")
	}
	addEndpoints(f2, pods[1])
	if n, err := d2.Reconcile(ctx); err != nil || n != 2 {
		t.Fatalf("reconcile after the endpoint appeared: %d repairs, %v; want 2", n, err)
	}
	if n := len(f2.ACLs("ep-b")); n != 2 {
		t.Fatalf("%d ACLs on the endpoint that appeared, want 2", n)
	}
}

func TestCleanupRemovesOnlyOurs(t *testing.T) {
	pods, nss := tableWorld()
	pol := mkPolicy("default", "p", &metav1.LabelSelector{}, bothTypes, []networkingv1.NetworkPolicyIngressRule{in(peers(podPeer(sel("app", "web"))), tcp(80))}, nil)
	f := NewFake()
	addEndpoints(f, pods...)
	foreign := ACL{ID: "cni-default", Action: Allow, Direction: In, Priority: 65000}
	f.InjectACL("ep-a", foreign)
	f.InjectSet(SetPolicy{ID: "other-set", Type: IPSet, Values: "1.2.3.4"})
	d, _ := newObserved(t, f, Options{})
	apply(t, d, translateAll(pods, nss, []*networkingv1.NetworkPolicy{pol}), nil)
	if err := d.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range f.EndpointIDs() {
		for _, a := range f.ACLs(id) {
			if a.ID != "cni-default" {
				t.Fatalf("left on %s: %s", id, a)
			}
		}
	}
	if sets := f.Sets(); len(sets) != 1 || sets["other-set"].ID == "" {
		t.Fatalf("sets left: %v", sets)
	}
	// Apply after Cleanup programs again from scratch
	apply(t, d, translateAll(pods, nss, []*networkingv1.NetworkPolicy{pol}), nil)
	if len(f.ACLs("ep-b")) == 0 {
		t.Fatal("nothing programmed after cleanup")
	}
}

func TestApplyErrorRetriedInFull(t *testing.T) {
	s := newScenario(t, Options{})
	s.ns(mkNS("default", nil))
	s.pod(mkPod("default", "a", map[string]string{"app": "web"}, []string{"10.0.0.1"}))
	s.pod(mkPod("default", "b", map[string]string{"app": "db"}, []string{"10.0.0.2"}))
	s.step("initial", nil)
	s.pol(webToDB("p"))
	s.f.FailNext = errors.New("hns busy")
	if err := s.d.Apply(context.Background(), s.e.State(), s.e.TakeChanges()); err == nil || !strings.Contains(err.Error(), "hns busy") {
		t.Fatalf("apply: %v, want the HNS error", err)
	}
	// the next Apply has no changes from the engine, yet completes the work
	s.step("retry", nil)
	if len(s.f.ACLs("ep-b")) != 2 {
		t.Fatalf("ACLs after retry: %v", s.f.ACLs("ep-b"))
	}
}

func TestLogsAndObjects(t *testing.T) {
	pods, nss := tableWorld()
	pol := webToDB("db-ingress")
	f := NewFake()
	addEndpoints(f, pods...)
	d, logs := newObserved(t, f, Options{})
	apply(t, d, translateAll(pods, nss, []*networkingv1.NetworkPolicy{pol}), nil)
	adds := logs.FilterMessage("hns acl add").All()
	if len(adds) != 2 {
		t.Fatalf("%d acl add lines, want 2", len(adds))
	}
	for _, e := range adds {
		m := e.ContextMap()
		if fmt.Sprint(m["policies"]) != "[default/db-ingress]" || m["selector"] == "" || m["pod"] != "default/b" || m["endpoint"] != "ep-b" || m["acl"] == "" {
			t.Fatalf("acl log line lacks policy/selector/pod/endpoint: %v", m)
		}
	}
	sets := logs.FilterMessage("hns set policy add").All()
	if len(sets) != 1 {
		t.Fatalf("%d set add lines, want 1", len(sets))
	}
	if m := sets[0].ContextMap(); fmt.Sprint(m["policies"]) != "[default/db-ingress]" || !strings.Contains(fmt.Sprint(m["selector"]), "app=web") {
		t.Fatalf("set log line: %v", m)
	}
	objs := d.Objects("default/db-ingress")
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.Kind)
	}
	if strings.Join(kinds, ",") != "acl,acl,setpolicy" {
		t.Fatalf("objects %+v", objs)
	}
	if len(d.Objects("default/none")) != 0 {
		t.Fatal("objects for an unknown policy")
	}
	// removal lines still name the policy and the selector
	apply(t, d, translateAll(pods, nss, nil), nil)
	rems := logs.FilterMessage("hns acl remove").All()
	if len(rems) != 2 {
		t.Fatalf("%d acl remove lines, want 2", len(rems))
	}
	for _, e := range rems {
		if m := e.ContextMap(); fmt.Sprint(m["policies"]) != "[default/db-ingress]" || m["selector"] == "" {
			t.Fatalf("acl remove line: %v", m)
		}
	}
	srem := logs.FilterMessage("hns set policy remove").All()
	if len(srem) != 1 {
		t.Fatalf("%d set remove lines, want 1", len(srem))
	}
	if m := srem[0].ContextMap(); fmt.Sprint(m["policies"]) != "[default/db-ingress]" || !strings.Contains(fmt.Sprint(m["selector"]), "app=web") {
		t.Fatalf("set remove line: %v", m)
	}
}

// TestNoOpenWindowDuringUpdates: random steps of one to three events;
// after every HNS call inside a step, a connection is allowed (at each
// endpoint and end to end) only if the state before or the state after the
// step allows it: never allowed-when-denied. The refusals of connections
// both states allow (the price of having no transaction) are counted.
func TestNoOpenWindowDuringUpdates(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	intermediate, refused := 0, 0
	for run := 0; run < 20; run++ {
		cfg := translatetest.PropertyConfig(5)
		w := translatetest.Random(r, cfg)
		s := newScenario(t, Options{MaxACLsPerCall: 2, SCTP: true})
		s.load(w)
		s.step(fmt.Sprintf("run %d initial", run), nil)
		var pkts []policy.Packet
		for _, pr := range w.Probes() {
			pkts = append(pkts, pr.Packet())
		}
		for i := 0; i < 12; i++ {
			before := make([][3]bool, len(pkts))
			for j, p := range pkts {
				v := s.f.Evaluate(p)
				before[j] = [3]bool{v.Out.Allowed, v.In.Allowed, v.Allowed}
			}
			for ev := 1 + r.Intn(3); ev > 0; ev-- {
				other := translatetest.Random(r, cfg)
				switch r.Intn(4) {
				case 0:
					p := other.Pods[r.Intn(len(other.Pods))]
					if s.w.pods[p.Namespace+"/"+p.Name] != nil {
						s.pod(p)
					}
				case 1:
					s.ns(other.Namespaces[r.Intn(len(other.Namespaces))])
				case 2:
					s.pol(other.Policies[r.Intn(len(other.Policies))])
				case 3:
					if keys := sortedKeys(s.w.pols); len(keys) > 0 {
						s.delPol(s.w.pols[keys[r.Intn(len(keys))]])
					}
				}
			}
			after := make([][3]bool, len(pkts))
			for j, p := range pkts {
				v := s.e.State().Evaluate(p)
				after[j] = [3]bool{v.Egress.Allowed, v.Ingress.Allowed, v.Allowed}
			}
			name := fmt.Sprintf("run %d step %d", run, i)
			s.f.AfterModify = func() {
				intermediate++
				for j, p := range pkts {
					v := s.f.Evaluate(p)
					got := [3]bool{v.Out.Allowed, v.In.Allowed, v.Allowed}
					for k, what := range []string{"egress at the source", "ingress at the destination", "end to end"} {
						if got[k] && !before[j][k] && !after[j][k] {
							t.Fatalf("%s: %v: %s allowed in the middle of the update, denied before and after\n%s", name, p, what, dumpFake(s.f))
						}
						if k == 2 && !got[k] && before[j][k] && after[j][k] {
							refused++
						}
					}
				}
			}
			s.step(name, nil)
			s.f.AfterModify = nil
		}
	}
	t.Logf("%d intermediate states checked, none allowed what both the old and the new state deny; %d probes both allow were refused in between", intermediate, refused)
}

// TestScaleCallsPerEvent: 500 local pods in 20 namespaces with 100
// policies; one pod event or one policy edit costs a bounded number of HNS
// calls that does not grow with the cluster (only with the pods a policy
// selects).
func TestScaleCallsPerEvent(t *testing.T) {
	s := newScenario(t, Options{MaxACLsPerCall: 100})
	mkp := func(ns, i int, app string) *corev1.Pod {
		return mkPod(fmt.Sprintf("ns%d", ns), fmt.Sprintf("pod%d-%d", ns, i), map[string]string{"app": app},
			[]string{fmt.Sprintf("10.%d.%d.%d", 20+ns, i/200, i%200+1)}, cport("http", corev1.ProtocolTCP, int32(8000+i%3)))
	}
	for n := 0; n < 20; n++ {
		s.ns(mkNS(fmt.Sprintf("ns%d", n), map[string]string{"team": fmt.Sprint(n % 4)}))
		for i := 0; i < 25; i++ {
			s.pod(mkp(n, i, fmt.Sprintf("a%d", i%5)))
		}
		ns := fmt.Sprintf("ns%d", n)
		for k := 0; k < 5; k++ {
			var np *networkingv1.NetworkPolicy
			target := sel("app", fmt.Sprintf("a%d", k))
			switch k {
			case 0:
				np = mkPolicy(ns, "p0", target, ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(podPeer(sel("app", "a1"))), tcp(80))}, nil)
			case 1:
				np = mkPolicy(ns, "p1", target, ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(nsPeer(sel("team", "1")), podPeer(sel("app", "a2"))), namedP(corev1.ProtocolTCP, "http"))}, nil)
			case 2:
				np = mkPolicy(ns, "p2", target, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{out(peers(nsPeer(&metav1.LabelSelector{})), namedP(corev1.ProtocolTCP, "http")), out(nil, portP(corev1.ProtocolUDP, 53, 0))})
			case 3:
				np = mkPolicy(ns, "p3", target, bothTypes, []networkingv1.NetworkPolicyIngressRule{in(peers(ipPeer("10.0.0.0/8", "10.21.0.0/16")), portP(corev1.ProtocolTCP, 8000, 8100))},
					[]networkingv1.NetworkPolicyEgressRule{out(peers(podPeer(&metav1.LabelSelector{})))})
			default:
				np = mkPolicy(ns, "p4", target, ingressOnly, nil, nil)
			}
			s.pol(np)
		}
	}
	start := time.Now()
	s.f.ResetCalls()
	if err := s.d.Apply(context.Background(), s.e.State(), s.e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	t.Logf("cold apply: 500 endpoints, %d set policies, %d ACLs in %v, calls %v", len(s.f.Sets()), countACLs(s.f), time.Since(start), s.f.Calls())

	event := func(name string, max int, do func()) {
		t.Helper()
		do()
		s.f.ResetCalls()
		start := time.Now()
		if err := s.d.Apply(context.Background(), s.e.State(), s.e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		if n := s.f.TotalCalls(); n > max {
			t.Fatalf("%s: %d HNS calls %v, want at most %d", name, n, s.f.Calls(), max)
		}
		t.Logf("%s: %v, calls %v", name, el, s.f.Calls())
	}
	event("peer pod added", 4, func() { s.pod(mkp(3, 100, "a1")) })
	event("pod relabelled", 5, func() { s.pod(mkp(3, 100, "a2")) })
	event("pod deleted", 3, func() { s.delPod(mkp(3, 100, "a2")) })
	event("namespace relabelled", 4, func() { s.ns(mkNS("ns6", map[string]string{"team": "1"})) })
	event("policy edited (5 selected pods)", 2*5, func() {
		s.pol(mkPolicy("ns7", "p0", sel("app", "a0"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(podPeer(sel("app", "a1"))), tcp(81))}, nil))
	})
	// correctness of the end state at this scale
	if diff := diffLines(render(s.d, s.f), s.w.reference(t, s.opt)); diff != "" {
		t.Fatalf("differs from the state programmed from scratch:\n%s", diff)
	}
}

func countACLs(f *Fake) int {
	n := 0
	for _, id := range f.EndpointIDs() {
		n += len(f.ACLs(id))
	}
	return n
}

// TestLateEndpointPickedUpOnRefresh: a selected pod whose endpoint was not
// listed yet gets its ACLs when a later Apply lists the endpoints again
// (here for another new pod), without waiting for Reconcile, and without
// re-diffing the endpoints already programmed.
func TestLateEndpointPickedUpOnRefresh(t *testing.T) {
	s := newScenario(t, Options{})
	s.ns(mkNS("default", nil))
	s.pol(mkPolicy("default", "deny", &metav1.LabelSelector{}, ingressOnly, nil, nil))
	a := mkPod("default", "a", nil, []string{"10.0.0.1"})
	b := mkPod("default", "b", nil, []string{"10.0.0.2"})
	s.w.pods["default/a"] = a
	s.e.UpsertPod(a) // no endpoint in HNS yet
	if err := s.d.Apply(context.Background(), s.e.State(), s.e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	addEndpoints(s.f, a) // a's endpoint appears, unnoticed
	s.pod(b)
	s.step("new pod: one list, both endpoints programmed", map[string]int{"ListEndpoints": 1, "ModifyACLs": 2},
		"ep-a: Block In prio=4000",
		"ep-b: Block In prio=4000")
}
