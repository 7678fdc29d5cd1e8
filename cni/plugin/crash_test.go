//go:build linux

package plugin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/failpoint"
	"github.com/open-acn/acn/cni/plugin"
)

// repairs are the ways a runtime recovers after a plugin died: GC with a
// list that no longer has the container, DEL of the container, or the
// ADD retried (which must then work and be removable).
var repairs = []string{"GC", "DEL", "ADD again"}

// TestKillAtEachStepOfADD kills azure-vnet with SIGKILL at every step of
// ADD, then repairs: nothing (address, veth, route, state) may leak. In
// dual-stack both addresses are allocated in one write of the state file,
// so no kill leaves one family without the other.
func TestKillAtEachStepOfADD(t *testing.T) {
	for _, c := range []struct {
		mode string
		fams []string
	}{{"transparent", nil}, {"bridge", nil}, {"transparent", []string{"IPv4", "IPv6"}}, {"bridge", []string{"IPv6", "IPv4"}}} {
		mode := c.mode
		t.Run(mode+"/"+familyName(c.fams), func(t *testing.T) {
			n := newNode(t, 40)
			l := n.list("1.1.0", withFamilies(n.netConf(mode, nil), c.fams))
			for _, step := range plugin.AddSteps {
				for _, repair := range repairs {
					t.Run(step+"/then "+repair, func(t *testing.T) {
						n.t = t
						p := n.newPod("kill-" + mode + step + repair)
						n.setEnv(failpoint.EnvCrashAt + "=" + step)
						_, err := n.add(l, p)
						n.setEnv()
						if err == nil {
							t.Fatalf("ADD survived %s=%s", failpoint.EnvCrashAt, step)
						}
						if !strings.Contains(err.Error(), "killed") {
							t.Fatalf("ADD failed, but not by the kill: %v", err)
						}
						n.repairAndCheck(l, p, repair)
					})
				}
			}
		})
	}
}

// TestKillAtEachStepOfDEL kills DEL of a dual-stack pod at each step;
// DEL again or GC finish.
func TestKillAtEachStepOfDEL(t *testing.T) {
	n := newNode(t, 20)
	l := n.list("1.1.0", withFamilies(n.netConf("transparent", nil), []string{"IPv4", "IPv6"}))
	for _, step := range plugin.DelSteps {
		for _, repair := range []string{"GC", "DEL"} {
			t.Run(step+"/then "+repair, func(t *testing.T) {
				n.t = t
				p := n.newPod("kill-del-" + step + repair)
				n.mustAdd(l, p)
				n.setEnv(failpoint.EnvCrashAt + "=" + step)
				err := n.del(l, p)
				n.setEnv()
				if err == nil || !strings.Contains(err.Error(), "killed") {
					t.Fatalf("DEL was not killed at %s: %v", step, err)
				}
				n.repairAndCheck(l, p, repair)
			})
		}
	}
}

// repairAndCheck recovers p after a crash and asserts nothing leaked.
func (n *node) repairAndCheck(l *libcni.NetworkConfigList, p *pod, repair string) {
	t := n.t
	t.Helper()
	switch repair {
	case "GC":
		if err := n.cni.GCNetworkList(context.Background(), l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}); err != nil {
			t.Fatalf("GC: %v", err)
		}
	case "DEL":
		n.mustDel(l, p)
	case "ADD again":
		r := n.mustAdd(l, p)
		if err := n.cni.CheckNetworkList(context.Background(), l, p.rt()); err != nil {
			t.Errorf("CHECK after the retried ADD: %v", err)
		}
		if err := ping(p.ns, gatewayIP); err != nil {
			t.Errorf("pod after the retried ADD: %v", err)
		}
		n.mustDel(l, p)
		for _, ip := range resultIPs(r) {
			n.assertGone(p, ip)
		}
	}
	n.assertGone(p, nil)
	n.assertNoPodRoutes()
	if o := n.ownedVeths(); len(o) != 0 {
		t.Errorf("veths leaked: %+v", o)
	}
	_, is := n.state()
	if len(is.Allocations) != 0 {
		t.Errorf("addresses leaked: %+v", is.Allocations)
	}
}

// assertNoPodRoutes: no /32 host route to a pod address is left in the node.
func (n *node) assertNoPodRoutes() {
	n.t.Helper()
	out := n.ns.MustExec(n.t, "ip", "-4", "route", "show") + n.ns.MustExec(n.t, "ip", "-6", "route", "show")
	if strings.Contains(out, "10.240.1.") || strings.Contains(out, "10.240.2.") || strings.Contains(out, "fd00:240::1:") {
		n.t.Errorf("pod routes left in the node:\n%s", out)
	}
}

// TestBridgeSetupCrashAndRollback: the first bridge-mode ADD moves the
// node's address and routes from eth0 to the bridge. Killed at any step
// of that, the next ADD completes the move; failing at any step, the node
// gets its network back as it was. Either way the node still reaches the
// VNet gateway.
func TestBridgeSetupCrashAndRollback(t *testing.T) {
	steps := []string{"bridge:created", "bridge:enslaved", "bridge:addresses", "bridge:routes", "bridge:ebtables"}
	for _, step := range steps {
		t.Run("kill at "+step, func(t *testing.T) {
			n := newNode(t, 10)
			l := n.list("1.1.0", n.netConf("bridge", nil))
			p := n.newPod("bridge-kill")
			n.setEnv(failpoint.EnvCrashAt + "=" + step)
			if _, err := n.add(l, p); err == nil {
				t.Fatal("ADD survived the kill")
			}
			n.setEnv()
			r := n.mustAdd(l, p)
			if err := ping(p.ns, gatewayIP); err != nil {
				t.Error(err)
			}
			if err := ping(n.ns, gatewayIP); err != nil {
				t.Errorf("node lost its network: %v", err)
			}
			if out := n.ns.MustExec(t, "ip", "-4", "route", "show", "default"); !strings.Contains(out, "dev azure0") {
				t.Errorf("default route not on the bridge: %q", out)
			}
			// The setup ran twice (killed, then completed): rules exist once.
			if out := n.ns.MustExec(t, "ebtables", "-t", "nat", "-L"); strings.Count(out, "-j snat") != 1 || strings.Count(out, "-j dnat") != 1 {
				t.Errorf("want each MAC rule exactly once:\n%s", out)
			}
			n.mustDel(l, p)
			n.assertGone(p, r.IPs[0].Address.IP)
		})
		t.Run("fail at "+step, func(t *testing.T) {
			n := newNode(t, 10)
			l := n.list("1.1.0", n.netConf("bridge", nil))
			p := n.newPod("bridge-fail")
			n.setEnv(failpoint.EnvFailAt + "=" + step)
			_, err := n.add(l, p)
			n.setEnv()
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("want the injected failure, got %v", err)
			}
			if out, err := n.ns.Exec("ip", "link", "show", "azure0"); err == nil {
				t.Errorf("bridge left after rollback: %s", out)
			}
			if out := n.ns.MustExec(t, "ip", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, nodeIP+"/16") {
				t.Errorf("eth0 lost its address: %s", out)
			}
			if out := n.ns.MustExec(t, "ip", "-4", "route", "show", "default"); !strings.Contains(out, "via "+gatewayIP+" dev eth0") {
				t.Errorf("default route not restored on eth0: %q", out)
			}
			if err := ping(n.ns, gatewayIP); err != nil {
				t.Errorf("node lost its network: %v", err)
			}
			if out := n.ns.MustExec(t, "ebtables", "-t", "nat", "-L"); strings.Contains(out, "snat") || strings.Contains(out, "dnat") {
				t.Errorf("ebtables rules left after rollback:\n%s", out)
			}
			n.assertGone(p, nil)
		})
	}
}
