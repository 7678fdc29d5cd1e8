//go:build linux

package iptables

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/open-acn/acn/npm/dataplane/dptest"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
)

func findLog(logs *observer.ObservedLogs, msg string, want ...string) bool {
	for _, e := range logs.FilterMessage(msg).All() {
		text := ""
		for _, f := range e.Context {
			text += f.Key + "=" + f.String + " "
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(text, w) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestKernelLogsEveryChange: set members, sets and rules added or removed
// are logged one per line, naming the policy and the readable selector.
func TestKernelLogsEveryChange(t *testing.T) {
	tp, d, e, logs := loggedBasic(t)
	ctx := context.Background()
	for _, c := range []struct {
		msg  string
		want []string
	}{
		{"ipset created", []string{"pods in namespace a with app=cli", "a/web"}},
		{"ipset member added", []string{"member=10.9.1.2", "pods in namespace a with app=cli", "policies a/web"}},
		{"ipset member added", []string{"member=10.9.0.2,tcp:80", "named port http/TCP"}},
		{"ipset member added", []string{"member=192.168.7.0/24", "b/out"}},
		{"iptables rule added", []string{"a/web ingress rule 0: from pods in namespace a with app=cli"}},
		{"iptables rule added", []string{"default deny ingress for pods selected by a/web"}},
		{"iptables chain created", []string{groupChainOf(policy.Ingress, "a/web")}},
	} {
		if !findLog(logs, c.msg, c.want...) {
			t.Errorf("no %q log line with %q", c.msg, c.want)
		}
	}
	e.DeletePolicy("a", "web")
	e.UpsertPod(tp.Pod(1, "a", map[string]string{"app": "other"}))
	if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	// The group of a/web is retired by the next Apply or Reconcile.
	if _, err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		msg  string
		want []string
	}{
		{"iptables rule removed", []string{"a/web ingress rule 0"}},
		{"iptables chain deleted", []string{groupChainOf(policy.Ingress, "a/web")}},
		{"ipset destroyed", []string{"app=cli"}},
	} {
		if !findLog(logs, c.msg, c.want...) {
			t.Errorf("no %q log line with %q", c.msg, c.want)
		}
	}
}

// TestKernelBackendSwitch: a node programmed with iptables-legacy, then by
// a run that uses iptables-nft, ends with NPM only in nft (the other
// backend's leftovers are removed), enforcing the same decisions; and
// Detect picks the backend holding kube's hint chain.
func TestKernelBackendSwitch(t *testing.T) {
	requireTools(t)
	tp := dptest.NewTopo(t, dptest.Pods)
	ctx := context.Background()
	d1 := newDataplane(t, tp.Node, ModeLegacy, nil)
	e := tp.ApplyBasic(t, d1)
	d2 := newDataplane(t, tp.Node, ModeNFT, nil)
	if err := d2.Apply(ctx, e.State(), nil); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		if s := save(t, tp.Node, ModeLegacy, fam); strings.Contains(s, ChainPrefix) {
			t.Errorf("legacy %s still has NPM rules:\n%s", fam, s)
		}
		if s := save(t, tp.Node, ModeNFT, fam); !strings.Contains(s, "-j "+ChainMain) {
			t.Errorf("nft %s lacks the NPM jump", fam)
		}
	}
	tp.Check(t, dptest.BasicExpect)
	if m := Detect(ctx, runner(tp.Node)); m != ModeNFT {
		t.Errorf("Detect with nothing of kube's = %s, want nft", m)
	}
	tp.Node.MustExec(t, "iptables-legacy", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT")
	if m := Detect(ctx, runner(tp.Node)); m != ModeLegacy {
		t.Errorf("Detect with KUBE-IPTABLES-HINT in legacy = %s, want legacy", m)
	}
}

// TestKernelSetsDestroyedAfterTheirRules: a set whose last rules a batch
// deleted is not destroyed in that batch (destroying it would wait for the
// rules' deferred destruction in the kernel), but by a later batch once
// destroyAfter has passed.
func TestKernelSetsDestroyedAfterTheirRules(t *testing.T) {
	tp, d, e, logs := loggedBasic(t)
	ctx := context.Background()
	var sets []string // the kernel sets of the peers of a/web
	for _, l := range logs.FilterMessage("ipset created").All() {
		if strings.Contains(l.ContextMap()["selector"].(string), "app=cli") {
			sets = append(sets, l.ContextMap()["set"].(string))
		}
	}
	if len(sets) == 0 {
		t.Fatal("no ipset created for the peers of a/web (app=cli)")
	}
	inKernel := func() bool {
		save := ipsetSave(t, tp.Node)
		for _, n := range sets {
			if strings.Contains(save, "create "+n+" ") {
				return true
			}
		}
		return false
	}
	apply := func() {
		t.Helper()
		if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
	}
	e.DeletePolicy("a", "web")
	apply() // its group retires, its chain still references the peer set
	apply() // the retired group's chain and rules are deleted
	if findLog(logs, "ipset destroyed", "app=cli") {
		t.Fatal("the peer set of a/web was destroyed in the batch that deleted its last rules")
	}
	if !inKernel() {
		t.Fatalf("the peer sets %v of a/web are gone from the kernel without a destroy logged", sets)
	}
	time.Sleep(destroyAfter)
	apply()
	if !findLog(logs, "ipset destroyed", "app=cli") || inKernel() {
		t.Errorf("the peer set of a/web is not destroyed by a batch %v after its rules were deleted", destroyAfter)
	}
}

// loggedBasic is the basic world applied by an iptables-nft dataplane in
// a fresh topology, with the dataplane's info log observed.
func loggedBasic(t *testing.T) (*dptest.Topo, *Dataplane, *translate.Engine, *observer.ObservedLogs) {
	t.Helper()
	requireTools(t)
	tp := dptest.NewTopo(t, dptest.Pods)
	core, logs := observer.New(zapcore.InfoLevel)
	d := newDataplane(t, tp.Node, ModeNFT, zap.New(core))
	return tp, d, tp.ApplyBasic(t, d), logs
}
