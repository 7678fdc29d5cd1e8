//go:build linux

package nftables

import (
	"context"
	"sort"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/dataplane/dptest"
	"github.com/open-acn/acn/npm/policy"
)

func newDP(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
	d, err := New(Options{NetNSPath: node.Path, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestKernelShared runs the suite shared with the iptables dataplane
// (npm/dataplane/dptest): the case table with real TCP/UDP/SCTP probes in
// both families, update without gap, restart replacing stale state, and
// the property test against the cyclonus oracle.
func TestKernelShared(t *testing.T) {
	netnstest.RequireRoot(t)
	dptest.Run(t, newDP, dptest.Options{PropertyCases: 24})
}

func findPolicyChainSet(t *testing.T, table, prefix string) string {
	t.Helper()
	for _, f := range strings.Fields(table) {
		if strings.HasPrefix(f, "@"+prefix) {
			return strings.TrimPrefix(f, "@")
		}
	}
	t.Fatalf("no set %s* in\n%s", prefix, table)
	return ""
}

// TestKernelReconcileRepairsDrift: someone flushes a policy chain, deletes
// a set, a dispatch element, a named-port element and a whole base chain,
// and inserts an accept; one Reconcile repairs all of it in one
// transaction, a second finds nothing; then the table itself is deleted
// and Reconcile brings it back.
func TestKernelReconcileRepairsDrift(t *testing.T) {
	tp := dptest.NewTopo(t, dptest.Pods)
	ctx := context.Background()
	d := newDP(t, tp.Node)
	e := tp.ApplyBasic(t, d)
	table := listTableNS(t, tp.Node)
	pc := PolicyChain(policy.Ingress, "a/web")
	peer := findPolicyChainSet(t, table, SetPrefix4+"i")
	named := findPolicyChainSet(t, table, SetPrefix4+"p")
	for _, c := range []string{
		"flush chain inet azure-npm " + pc,
		"delete set inet azure-npm " + peer,
		"delete element inet azure-npm " + MapIngress4 + " { " + tp.IPs[0][0] + " }",
		"delete element inet azure-npm " + named + " { " + tp.IPs[0][0] + " . tcp . 80 }",
		"delete chain inet azure-npm " + ChainEgress,
		"insert rule inet azure-npm " + ChainIngress + " ip6 saddr " + tp.IPs[2][1] + " accept",
	} {
		tp.Node.MustExec(t, "nft", strings.Fields(c)...)
	}
	if !tp.Probe(2, tp.IPs[0][0], policy.TCP, 80) || !tp.Probe(2, tp.IPs[0][1], policy.TCP, 80) {
		t.Errorf("the drift should have opened pod0 in both families")
	}
	n, err := d.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Errorf("reconcile repaired %d objects, want ≥ 6", n)
	}
	tp.FlushConntrack(t)
	tp.Check(t, dptest.BasicExpect)
	if n, err := d.Reconcile(ctx); err != nil || n != 0 {
		t.Errorf("second reconcile: %d repairs, %v", n, err)
	}
	// A base chain re-created with another priority cannot be altered in
	// place: the table is replaced atomically.
	tp.Node.MustExec(t, "nft", "delete", "chain", "inet", TableName, ChainEgress)
	tp.Node.MustExec(t, "nft", "add", "chain", "inet", TableName, ChainEgress, "{ type filter hook forward priority 50; policy accept; }")
	if n, err := d.Reconcile(ctx); err != nil || n != 1 {
		t.Errorf("reconcile of a re-hooked base chain: %d repairs, %v", n, err)
	}
	if !strings.Contains(tp.Node.MustExec(t, "nft", "list", "chain", "inet", TableName, ChainEgress), "priority filter - 10") {
		t.Error("egress chain not restored at its priority")
	}
	tp.Check(t, dptest.BasicExpect)
	tp.Node.MustExec(t, "nft", "delete", "table", "inet", TableName)
	if n, err := d.Reconcile(ctx); err != nil || n < 10 {
		t.Errorf("reconcile after the table was deleted: %d repairs, %v", n, err)
	}
	tp.Check(t, dptest.BasicExpect)
	// An incremental Apply after repairs still works (have is in sync).
	e.UpsertPod(tp.Pod(2, "b", map[string]string{"app": "cli"}))
	if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	tp.Check(t, []dptest.Expect{{Src: 2, Dst: 0, Proto: policy.TCP, Port: 80, Allow: false}}) // b's egress still only to 192.168.7.0/24:81
	if n, err := d.Reconcile(ctx); err != nil || n != 0 {
		t.Errorf("reconcile after incremental apply: %d repairs, %v", n, err)
	}
}

// TestKernelCleanupRemovesOnlyOurTable: Cleanup deletes table inet
// azure-npm and nothing else (another inet table and an ip table with a
// forward chain survive); cleaning twice is fine; the node is open again.
func TestKernelCleanupRemovesOnlyOurTable(t *testing.T) {
	tp := dptest.NewTopo(t, dptest.Pods)
	ctx := context.Background()
	tp.Node.MustExec(t, "nft", "add", "table", "inet", "other")
	tp.Node.MustExec(t, "nft", "add", "chain", "inet", "other", "othfwd", "{ type filter hook forward priority 0; policy accept; }")
	tp.Node.MustExec(t, "nft", "add", "rule", "inet", "other", "othfwd", "counter")
	tp.Node.MustExec(t, "nft", "add", "table", "ip", "filter")
	tp.Node.MustExec(t, "nft", "add", "set", "ip", "filter", "s", "{ type ipv4_addr; elements = { 10.1.1.1 } ; }")
	d := newDP(t, tp.Node)
	e := tp.ApplyBasic(t, d)
	tp.Check(t, dptest.BasicExpect)
	before := tp.Node.MustExec(t, "nft", "list", "ruleset")
	if err := d.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(ctx); err != nil {
		t.Fatalf("second cleanup: %v", err)
	}
	after := tp.Node.MustExec(t, "nft", "list", "ruleset")
	if strings.Contains(after, TableName) {
		t.Errorf("table survived cleanup:\n%s", after)
	}
	for _, want := range []string{"table inet other", "chain othfwd", "table ip filter", "elements = { 10.1.1.1 }"} {
		if !strings.Contains(after, want) {
			t.Errorf("cleanup removed %q:\nbefore\n%s\nafter\n%s", want, before, after)
		}
	}
	tp.Check(t, []dptest.Expect{{Src: 2, Dst: 0, Proto: policy.TCP, Port: 80, Allow: true}, {Src: 2, Dst: -1, Proto: policy.UDP, Port: 53, Allow: true}})
	// A fresh Apply after Cleanup programs everything again.
	if err := d.Apply(ctx, e.State(), nil); err != nil {
		t.Fatal(err)
	}
	tp.Check(t, dptest.BasicExpect[:4])
}

// TestKernelLogsAndIncrementalElements: every added or removed rule, set
// and member is one log line naming the policy or the selector; an
// endpoint or member change is carried by element changes only (no chain
// is rewritten: rule handles are unchanged), and Objects names the
// chains, maps and sets of a policy.
func TestKernelLogsAndIncrementalElements(t *testing.T) {
	tp := dptest.NewTopo(t, dptest.Pods)
	ctx := context.Background()
	core, logs := observer.New(zap.InfoLevel)
	d, _ := New(Options{NetNSPath: tp.Node.Path, Logger: zap.New(core)})
	e := tp.ApplyBasic(t, d)
	pc := PolicyChain(policy.Ingress, "a/web")
	rules := logs.FilterMessage("nftables rule added").FilterField(zap.String("policy", "a/web")).FilterField(zap.String("chain", pc)).All()
	if len(rules) != 6 { // (named port, UDP, SCTP) x 2 families
		t.Fatalf("%d rule lines for a/web's chain, want 6", len(rules))
	}
	for _, l := range rules {
		if c := l.ContextMap()["comment"].(string); !strings.HasPrefix(c, "a/web ingress rule 0: ") {
			t.Errorf("rule line %v", l.ContextMap())
		}
	}
	members := logs.FilterMessage("nftables set member added").All()
	found := false
	for _, l := range members {
		m := l.ContextMap()
		if m["member"] == tp.IPs[1][0] && strings.Contains(m["selector"].(string), "app") {
			found = true
		}
	}
	if !found {
		t.Errorf("no member line for pod1 with its selector: %v", members)
	}
	withHandles := tp.Node.MustExec(t, "nft", "-a", "list", "chain", "inet", TableName, pc)
	// pod1 stops being a cli: one member removed per family, no rule change.
	logs.TakeAll()
	e.UpsertPod(tp.Pod(1, "a", map[string]string{"app": "nocli"}))
	if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	if got := tp.Node.MustExec(t, "nft", "-a", "list", "chain", "inet", TableName, pc); got != withHandles {
		t.Errorf("policy chain rewritten by a member change:\n%s\n%s", withHandles, got)
	}
	var removed []string
	for _, l := range logs.All() {
		switch l.Message {
		case "nftables set member removed":
			removed = append(removed, l.ContextMap()["member"].(string))
		case "nftables rule added", "nftables rule removed":
			t.Errorf("rule change on a member change: %v", l.ContextMap())
		}
	}
	sort.Strings(removed)
	if want := []string{tp.IPs[1][0], tp.IPs[1][1]}; strings.Join(removed, ",") != strings.Join(want, ",") {
		t.Errorf("removed members %v, want %v", removed, want)
	}
	tp.Check(t, []dptest.Expect{{Src: 1, Dst: 0, Proto: policy.TCP, Port: 80, Allow: false}})
	if n, err := d.Reconcile(ctx); err != nil || n != 0 {
		t.Errorf("reconcile: %d, %v", n, err)
	}
	objs := d.Objects("a/web")
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.Kind+" "+o.Name] = true
	}
	for _, want := range []string{"chain " + pc, "map " + MapIngress4, "map " + MapIngress6, "set " + findPolicyChainSet(t, listTableNS(t, tp.Node), SetPrefix4+"i")} {
		if !kinds[want] {
			t.Errorf("Objects(a/web) lacks %s: %v", want, objs)
		}
	}
}

func listTableNS(t *testing.T, ns *netnstest.NS) string {
	return ns.MustExec(t, "nft", "list", "table", "inet", TableName)
}

// TestKernelApplyAfterUnseenDrift: an element NPM is about to remove was
// already deleted by someone else, so the incremental transaction fails
// (ENOENT aborts the whole batch); Apply reads the table back and writes
// the full difference instead of failing.
func TestKernelApplyAfterUnseenDrift(t *testing.T) {
	tp := dptest.NewTopo(t, dptest.Pods)
	ctx := context.Background()
	d := newDP(t, tp.Node)
	e := tp.ApplyBasic(t, d)
	peer := findPolicyChainSet(t, listTableNS(t, tp.Node), SetPrefix4+"i")
	tp.Node.MustExec(t, "nft", "delete", "element", "inet", TableName, peer, "{", tp.IPs[1][0], "}")
	tp.Node.MustExec(t, "nft", "delete", "element", "inet", TableName, MapEgress4, "{", tp.IPs[3][0], "}")
	e.UpsertPod(tp.Pod(1, "a", map[string]string{"app": "nocli"})) // removes pod1 from the peer set
	e.DeletePod("b", "pod3")                                       // pod3 leaves b/out's group
	if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatalf("apply after drift: %v", err)
	}
	if n, err := d.Reconcile(ctx); err != nil || n != 0 {
		t.Errorf("reconcile: %d, %v", n, err)
	}
	tp.FlushConntrack(t)
	tp.Check(t, []dptest.Expect{
		{Src: 1, Dst: 0, Proto: policy.TCP, Port: 80, Allow: false},
		{Src: 3, Dst: 0, Proto: policy.TCP, Port: 80, Allow: false}, // no longer a pod: not a peer
		{Src: 3, Dst: -1, Proto: policy.TCP, Port: 80, Allow: true}, // no longer isolated for egress
		{Src: 2, Dst: -1, Proto: policy.TCP, Port: 80, Allow: false},
	})
}
