//go:build linux

package iptables

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/dataplane/dptest"
	"github.com/open-acn/acn/npm/policy"
)

// requireTools skips the test without the tools both backends need.
func requireTools(t testing.TB) {
	t.Helper()
	netnstest.RequireRoot(t)
	for _, tool := range []string{"ipset", "iptables-nft-restore", "iptables-legacy-restore"} {
		if _, err := (dataplane.Exec{}).Run(context.Background(), nil, "sh", "-c", "command -v "+tool); err != nil {
			netnstest.Skip(t, "needs %s", tool)
		}
	}
}

// runner executes tools inside the node namespace.
func runner(node *netnstest.NS) dataplane.Runner { return dataplane.Exec{Netns: node.Path} }

func newDataplane(t testing.TB, node *netnstest.NS, mode Mode, log *zap.Logger) *Dataplane {
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	d, err := New(context.Background(), Options{Runner: runner(node), Logger: log, Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func save(t testing.TB, node *netnstest.NS, mode Mode, fam string) string {
	out, err := runner(node).Run(context.Background(), nil, fam+"-"+string(mode)+"-save", "-t", Table)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func ipsetSave(t testing.TB, node *netnstest.NS) string {
	out, err := runner(node).Run(context.Background(), nil, "ipset", "save")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func countLines(s, sub string) int {
	n := 0
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// groupChainOf is the chain of the dispatch group isolated by exactly the
// given policies.
func groupChainOf(dir policy.Direction, policies ...string) string {
	return GroupChain(&policy.Group{ID: policy.Hash(policy.GroupKey(dir, policies), 12), Direction: dir})
}

func forEachBackend(t *testing.T, f func(t *testing.T, mode Mode)) {
	for _, m := range []Mode{ModeNFT, ModeLegacy} {
		t.Run(string(m), func(t *testing.T) { f(t, m) })
	}
}

// TestKernelShared runs the suite shared with the nftables dataplane
// (npm/dataplane/dptest) on both backends: the case table with real
// TCP/UDP/SCTP probes in both families, update without gap, restart
// replacing stale state, and the property test against the cyclonus
// oracle (with every dispatch group behind inner trie nodes). At the
// suite's steps it reads back iptables-save and ipset save.
func TestKernelShared(t *testing.T) {
	requireTools(t)
	forEachBackend(t, func(t *testing.T, mode Mode) {
		cases := map[Mode]int{ModeNFT: 30, ModeLegacy: 12}[mode]
		dptest.Run(t, func(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
			return newDataplane(t, node, mode, nil)
		}, dptest.Options{PropertyCases: cases, Seed: int64(len(mode)), Inspect: func(t *testing.T, step string, node *netnstest.NS) {
			inspect(t, step, node, mode)
		}})
	})
}

// inspect reads back what the dataplane wrote at the shared suite's steps.
func inspect(t *testing.T, step string, node *netnstest.NS, mode Mode) {
	oldChain := groupChainOf(policy.Ingress, "a/old") // the restart's stale policy
	switch step {
	case "cases/" + dptest.Cases()[0].Name: // BasicPolicies
		for _, fam := range []string{"iptables", "ip6tables"} {
			s := save(t, node, mode, fam)
			fwd := ""
			for _, l := range strings.Split(s, "\n") {
				if strings.HasPrefix(l, "-A FORWARD") {
					fwd = l
					break
				}
			}
			if !strings.Contains(fwd, "-j "+ChainMain) {
				t.Errorf("%s: first FORWARD rule is %q, want the NPM jump", fam, fwd)
			}
			for _, want := range []string{":" + ChainIngress, ":" + ChainEgress, groupChainOf(policy.Ingress, "a/web"), groupChainOf(policy.Egress, "b/out"), "a/web ingress rule 0"} {
				if !strings.Contains(s, want) {
					t.Errorf("%s-save lacks %q:\n%s", fam, want, s)
				}
			}
		}
		sets := ipsetSave(t, node)
		for _, want := range []string{"hash:ip,port family inet ", "10.9.0.2,tcp:80", "fd09::2,tcp:80", "add acn-npm4-", "192.168.7.0/24", "fd77::/64"} {
			if !strings.Contains(sets, want) {
				t.Errorf("ipset save lacks %q:\n%s", want, sets)
			}
		}
		// Another backend's jump is not ours to keep: the other backend is clean.
		other := ModeLegacy
		if mode == ModeLegacy {
			other = ModeNFT
		}
		if s := save(t, node, other, "iptables"); strings.Contains(s, ChainPrefix) {
			t.Errorf("other backend %s has NPM rules:\n%s", other, s)
		}
	case "cases/cleanup":
		if s := save(t, node, mode, "iptables") + ipsetSave(t, node); strings.Contains(s, ChainPrefix) || strings.Contains(s, SetPrefix) {
			t.Errorf("cleanup left objects:\n%s", s)
		}
	case "update-without-gap/done":
		if s := ipsetSave(t, node); strings.Contains(s, "-t ") {
			t.Errorf("temporary sets left: %s", s)
		}
	case "restart/run1":
		if !strings.Contains(save(t, node, mode, "iptables"), oldChain) {
			t.Fatal("run 1 did not program a/old")
		}
	case "restart/run2":
		// The stale group is retired: its set is emptied now, its chain
		// goes at the next Apply or Reconcile.
		if s := ipsetSave(t, node); strings.Contains(s, "add "+GroupSetName(policy.IPv4, &policy.Group{ID: strings.TrimPrefix(oldChain, ChainGroupIngressPrefix), Direction: policy.Ingress})+" ") {
			t.Errorf("the retired group's set still has members:\n%s", s)
		}
	case "restart/reconciled":
		s := save(t, node, mode, "iptables")
		if strings.Contains(s, oldChain) {
			t.Errorf("stale chain %s survived the restart", oldChain)
		}
		if n := countLines(s, "-j "+ChainMain+"\n"); n != 1 {
			t.Errorf("%d jumps to %s after restart, want 1", n, ChainMain)
		}
		if strings.Contains(ipsetSave(t, node), "10.99.0.0/16") {
			t.Errorf("stale set of a/old survived the restart")
		}
	case "property/start":
		old := trieLeaf
		trieLeaf = 1 // every group behind inner trie nodes
		t.Cleanup(func() { trieLeaf = old })
	}
}

// TestKernelReconcileRepairsDrift: someone deletes NPM's FORWARD jump, a
// policy chain, a set, a set member and adds a rule; one Reconcile restores
// everything and a second finds nothing.
func TestKernelReconcileRepairsDrift(t *testing.T) {
	requireTools(t)
	forEachBackend(t, func(t *testing.T, mode Mode) {
		tp := dptest.NewTopo(t, dptest.Pods)
		ctx := context.Background()
		d := newDataplane(t, tp.Node, mode, nil)
		tp.ApplyBasic(t, d)
		ipt := "iptables-" + string(mode)
		g := d.want.Last.Groups(policy.Ingress)[0]
		groupSet := GroupSetName(policy.IPv4, g)
		pc := groupChainOf(policy.Ingress, "a/web")
		var peerSet string
		for _, n := range d.sets.Names() {
			if strings.HasPrefix(n, SetPrefix+"4-i") {
				peerSet = n
			}
		}
		for _, c := range [][]string{
			{ipt, "-t", Table, "-D", "FORWARD", "-m", "comment", "--comment", JumpComment, "-j", ChainMain},
			{ipt, "-t", Table, "-F", ChainIngress},
			{ipt, "-t", Table, "-F", GroupChain(g)},
			{ipt, "-t", Table, "-F", pc},
			{ipt, "-t", Table, "-X", pc},
			{"ipset", "destroy", groupSet},
			{"ipset", "del", peerSet, tp.IPs[1][0]},
			{ipt, "-t", Table, "-A", ChainEgress, "-j", "ACCEPT"},
		} {
			tp.Node.MustExec(t, c[0], c[1:]...)
		}
		if !tp.Probe(2, tp.IPs[0][0], policy.TCP, 80) {
			t.Errorf("the IPv4 drift should have opened pod0")
		}
		n, err := d.Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n < 6 {
			t.Errorf("reconcile repaired %d objects, want ≥ 6", n)
		}
		tp.Check(t, dptest.BasicExpect)
		if n, err := d.Reconcile(ctx); err != nil || n != 0 {
			t.Errorf("second reconcile: %d repairs, %v", n, err)
		}
	})
}
