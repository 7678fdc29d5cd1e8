//go:build linux

package iptables

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/dataplane/dptest"
)

// TestKernelKubeProxyCannotPrecede: kube-proxy's rules (iptables mode in
// the same backend, and nftables mode) and NPM restarted in both orders
// under probe loops: a denied client never reaches the isolated pod
// through a NodePort, although kube-proxy's KUBE-FORWARD ACCEPTs those
// masquerade-marked packets and its jumps are re-inserted at the top of
// filter FORWARD at every restart.
func TestKernelKubeProxyCannotPrecede(t *testing.T) {
	requireTools(t)
	forEachBackend(t, func(t *testing.T, mode Mode) {
		kpModes := []dptest.KubeProxyMode{dptest.KubeProxyMode("iptables-" + string(mode))}
		if mode == ModeNFT {
			kpModes = append(kpModes, dptest.KubeProxyNFTables)
		}
		for _, kpm := range kpModes {
			t.Run("kube-proxy-"+string(kpm), func(t *testing.T) {
				dptest.RunKubeProxy(t, func(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
					return newDataplane(t, node, mode, nil)
				}, kpm, 10)
			})
		}
	})
}

// TestKernelFilterLayoutWindowAndMigration: the layout of earlier
// versions (NPM's chains in filter, its jump in filter FORWARD) is what
// kube-proxy's restarts could bypass: with kube-proxy's jump above NPM's, a
// denied client gets through a NodePort (this test would pass the old
// code's window; it shows the probe can see it). A new process moves
// everything to mangle, removes the filter leftovers, and the client is
// denied again.
func TestKernelFilterLayoutWindowAndMigration(t *testing.T) {
	requireTools(t)
	forEachBackend(t, func(t *testing.T, mode Mode) {
		tp := dptest.NewTopo(t, dptest.Pods)
		ctx := context.Background()
		e := tp.Engine(dptest.BasicPolicies()...)
		d := newDataplane(t, tp.Node, mode, nil)
		if err := d.Apply(ctx, e.State(), nil); err != nil {
			t.Fatal(err)
		}
		ipt := "iptables-" + string(mode)
		// Re-create the old layout: NPM's chains copied to filter with
		// the jump at the top of filter FORWARD, nothing in mangle.
		var old strings.Builder
		old.WriteString("*filter\n")
		chains, _ := parseSave([]byte(save(t, tp.Node, mode, "iptables")), Table)
		for c := range chains {
			old.WriteString(":" + c + " - [0:0]\n")
		}
		for _, lines := range chains {
			for _, l := range lines {
				old.WriteString(l + "\n")
			}
		}
		old.WriteString("-I FORWARD 1 -m comment --comment \"" + JumpComment + "\" -j " + ChainMain + "\nCOMMIT\n")
		if err := d.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Apply(ctx, e.State(), nil); err != nil { // the sets again
			t.Fatal(err)
		}
		tp.Node.MustExec(t, ipt, "-t", Table, "-D", "FORWARD", "-m", "comment", "--comment", JumpComment, "-j", ChainMain)
		if _, err := runner(tp.Node).Run(ctx, []byte(old.String()), ipt+"-restore", "--noflush"); err != nil {
			t.Fatal(err)
		}
		kp := tp.NewKubeProxy(t, dptest.KubeProxyMode(ipt))
		if !tp.NodePortProbe(dptest.OpenNodePort, time.Second) {
			t.Fatal("the open NodePort does not work")
		}
		if !tp.NodePortProbe(dptest.DeniedNodePort, time.Second) && !tp.NodePortProbe(dptest.DeniedNodePort, time.Second) {
			t.Fatal("with NPM's jump below KUBE-FORWARD in filter, the masquerade-marked NodePort traffic should have bypassed the policy")
		}
		tp.FlushConntrack(t)
		d2 := newDataplane(t, tp.Node, mode, nil)
		if err := d2.Apply(ctx, e.State(), nil); err != nil {
			t.Fatal(err)
		}
		if s := tp.Node.MustExec(t, ipt+"-save", "-t", LegacyTable); strings.Contains(s, ChainPrefix) {
			t.Errorf("the filter table still holds NPM's rules after the migration:\n%s", s)
		}
		if tp.NodePortProbe(dptest.DeniedNodePort, 300*time.Millisecond) {
			t.Error("after the migration to mangle a denied client still gets through the NodePort")
		}
		kp.Restart(t)
		if tp.NodePortProbe(dptest.DeniedNodePort, 300*time.Millisecond) {
			t.Error("after a kube-proxy restart a denied client gets through the NodePort")
		}
		if n, err := d2.Reconcile(ctx); err != nil || n != 0 {
			t.Errorf("reconcile after kube-proxy's restart: %d repairs, %v (kube-proxy touches nothing of NPM's)", n, err)
		}
	})
}

// TestKernelNodeTraffic: dptest.RunNodeTraffic on both backends (the
// node reaches its pods; pod -> node is egress, enforced on mangle INPUT).
func TestKernelNodeTraffic(t *testing.T) {
	requireTools(t)
	forEachBackend(t, func(t *testing.T, mode Mode) {
		dptest.RunNodeTraffic(t, func(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
			return newDataplane(t, node, mode, nil)
		})
	})
}

// TestKernelNodePortCluster: dptest.RunNodePortCluster on both backends.
func TestKernelNodePortCluster(t *testing.T) {
	requireTools(t)
	forEachBackend(t, func(t *testing.T, mode Mode) {
		dptest.RunNodePortCluster(t, func(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
			return newDataplane(t, node, mode, nil)
		})
	})
}

// TestKernelRealKubeProxy: the real kube-proxy binary (iptables mode, the
// nft backend as Debian's `iptables` is) in the node namespace against a
// test API server, killed, cleaned up and restarted with NPM restarted in
// both orders, under probe loops (dptest.RunRealKubeProxy).
func TestKernelRealKubeProxy(t *testing.T) {
	requireTools(t)
	dptest.RunRealKubeProxy(t, func(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
		return newDataplane(t, node, ModeNFT, nil)
	}, "iptables", 2)
}
