//go:build linux

package nftables

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/dataplane/dptest"
	"github.com/open-acn/acn/npm/iptables"
)

// TestKernelSwitchDataplanes: a node moves from the iptables dataplane to
// this one and back, the way the daemon does it: the new dataplane
// programs the node, then the previous one's Cleanup removes its rules.
// Enforcement holds throughout and nothing of the previous one is left.
func TestKernelSwitchDataplanes(t *testing.T) {
	for _, tool := range []string{"ipset", "iptables-nft-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			netnstest.Skip(t, "needs %s", tool)
		}
	}
	tp := dptest.NewTopo(t, dptest.Pods)
	ctx := context.Background()
	ipt, err := iptables.New(ctx, iptables.Options{Runner: dataplane.Exec{Netns: tp.Node.Path}, Mode: iptables.ModeNFT,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	e := tp.Engine(dptest.BasicPolicies()...)
	st := e.State()
	if err := ipt.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	tp.Check(t, dptest.BasicExpect[:6])
	leftovers := func() string {
		save := tp.Node.MustExec(t, "iptables-nft-save") + tp.Node.MustExec(t, "ip6tables-nft-save")
		sets := tp.Node.MustExec(t, "ipset", "list", "-n")
		out := ""
		if strings.Contains(save, iptables.ChainPrefix) {
			out += "iptables chains; "
		}
		if strings.Contains(sets, iptables.SetPrefix) {
			out += "ipsets; "
		}
		return out
	}
	// iptables -> nftables
	nft := newDP(t, tp.Node)
	if err := nft.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	if err := ipt.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(); l != "" {
		t.Errorf("iptables leftovers after the switch: %s", l)
	}
	tp.FlushConntrack(t)
	tp.Check(t, dptest.BasicExpect)
	// nftables -> iptables
	ipt2, _ := iptables.New(ctx, iptables.Options{Runner: dataplane.Exec{Netns: tp.Node.Path}, Mode: iptables.ModeNFT})
	if err := ipt2.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	if err := nft.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if tabs := tp.Node.MustExec(t, "nft", "list", "tables"); strings.Contains(tabs, "inet "+TableName) {
		t.Errorf("table left after switching back: %s", tabs)
	}
	tp.FlushConntrack(t)
	tp.Check(t, dptest.BasicExpect)
}
