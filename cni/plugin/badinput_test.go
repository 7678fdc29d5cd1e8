//go:build linux

package plugin_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/failpoint"
	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/cni/plugin"
)

// execRaw runs azure-vnet ADD with stdin exactly as given (libcni would
// refuse to even load malformed JSON).
func (n *node) execRaw(p *pod, stdin []byte) error {
	e := n.exec()
	path := filepath.Join(binDir, "azure-vnet")
	args := &invoke.Args{Command: "ADD", ContainerID: p.id, NetNS: p.ns.Path, IfName: "eth0", Path: binDir}
	_, err := invoke.ExecPluginWithResult(context.Background(), path, stdin, args, e)
	return err
}

// TestBadInputIsAClearErrorAndCreatesNothing: every mistake gets the
// spec's error code and a message naming it, and leaves no veth, no
// address allocation and no interface in the pod.
func TestBadInputIsAClearErrorAndCreatesNothing(t *testing.T) {
	n := newNode(t, 2)
	base := func(edit func(c map[string]interface{})) []byte {
		c := n.netConf("transparent", nil)
		c["cniVersion"], c["name"] = "1.1.0", "azure"
		edit(c)
		b, _ := json.Marshal(c)
		return b
	}
	ipamOf := func(c map[string]interface{}) map[string]interface{} { return c["ipam"].(map[string]interface{}) }
	cases := []struct {
		name  string
		stdin []byte
		code  uint
		msg   string
	}{
		{"malformed JSON", []byte(`{"cniVersion":"1.1.0","name":"azure","type":"azure-vnet",`), types.ErrDecodingFailure, ""},
		{"missing ipam", base(func(c map[string]interface{}) { delete(c, "ipam") }), types.ErrInvalidNetworkConfig, "ipam: missing"},
		{"unknown mode", base(func(c map[string]interface{}) { c["mode"] = "l2tunnel" }), types.ErrInvalidNetworkConfig, `mode "l2tunnel"`},
		{"forbidden subnet", base(func(c map[string]interface{}) { ipamOf(c)["subnet"] = "172.30.0.0/16" }), types.ErrInvalidNetworkConfig, "172.30.0.0/16"},
		{"forbidden address", base(func(c map[string]interface{}) { ipamOf(c)["ipAddress"] = "169.254.3.4" }), types.ErrInvalidNetworkConfig, "169.254.0.0/16"},
		{"foreign ipam type", base(func(c map[string]interface{}) { ipamOf(c)["type"] = "host-local" }), types.ErrInvalidNetworkConfig, "ipam.type"},
		{"unknown environment", base(func(c map[string]interface{}) { ipamOf(c)["environment"] = "gcp" }), types.ErrInvalidNetworkConfig, "ipam.environment"},
		{"bad ipsToRouteViaHost", base(func(c map[string]interface{}) { c["ipsToRouteViaHost"] = []string{"dns"} }), types.ErrInvalidNetworkConfig, "ipsToRouteViaHost"},
		{"subnet not on the node", base(func(c map[string]interface{}) { ipamOf(c)["subnet"] = "10.99.0.0/16" }), types.ErrInvalidNetworkConfig, "10.99.0.0/16"},
		{"interfaces file missing", base(func(c map[string]interface{}) { ipamOf(c)["interfacesFile"] = "/nonexistent/interfaces.json" }), plugin.ErrAddressSource, "/nonexistent/interfaces.json"},
		{"unsupported spec version", base(func(c map[string]interface{}) { c["cniVersion"] = "0.2.0" }), types.ErrIncompatibleCNIVersion, ""},
		{"missing netns", nil, types.ErrInvalidNetNS, ""},
	}
	for _, step := range plugin.AddSteps {
		if step == "add:committed" {
			continue // after the commit there is nothing to undo: the ADD succeeded
		}
		cases = append(cases, struct {
			name  string
			stdin []byte
			code  uint
			msg   string
		}{"failure at " + step, []byte(step), types.ErrInternal, "injected failure at step " + step})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n.t = t
			p := n.newPod("bad-" + c.name)
			var err error
			switch {
			case c.stdin == nil: // pod namespace deleted before ADD
				if derr := p.ns.Delete(); derr != nil {
					t.Fatal(derr)
				}
				err = n.execRaw(p, base(func(map[string]interface{}) {}))
			case strings.HasPrefix(string(c.stdin), "add:"):
				n.setEnv(failpoint.EnvFailAt + "=" + string(c.stdin))
				err = n.execRaw(p, base(func(map[string]interface{}) {}))
				n.setEnv()
			default:
				err = n.execRaw(p, c.stdin)
			}
			if err == nil {
				t.Fatal("ADD succeeded")
			}
			if got := cniCode(err); got != c.code {
				t.Errorf("code %d (%v), want %d", got, err, c.code)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("message %q does not name %q", err.Error(), c.msg)
			}
			if c.stdin != nil {
				n.assertGone(p, nil)
			}
			if o := n.ownedVeths(); len(o) != 0 {
				t.Errorf("veths created: %+v", o)
			}
			if _, is := n.state(); len(is.Allocations) != 0 {
				t.Errorf("addresses allocated: %+v", is.Allocations)
			}
		})
	}
}

// TestExhaustedPoolNamesThePool: with two addresses, the third pod gets
// the pool-exhausted error naming the pool, and STATUS says no address is
// free; after a DEL, ADD works again.
func TestExhaustedPoolNamesThePool(t *testing.T) {
	n := newNode(t, 2)
	l := n.list("1.1.0", n.netConf("transparent", nil))
	a, b, c := n.newPod("full-a"), n.newPod("full-b"), n.newPod("full-c")
	n.mustAdd(l, a)
	n.mustAdd(l, b)
	_, err := n.add(l, c)
	if err == nil {
		t.Fatal("third ADD succeeded with a two-address pool")
	}
	if cniCode(err) != plugin.ErrPoolExhausted || !strings.Contains(err.Error(), subnet) {
		t.Errorf("want code %d naming pool %s, got %v", plugin.ErrPoolExhausted, subnet, err)
	}
	n.assertGone(c, nil)
	err = n.cni.GetStatusNetworkList(context.Background(), l)
	if cniCode(err) != plugin.ErrPluginNotAvailable {
		t.Errorf("STATUS with an exhausted pool: %v, want code %d", err, plugin.ErrPluginNotAvailable)
	}
	n.mustDel(l, a)
	n.mustAdd(l, c)
	if err := n.cni.GetStatusNetworkList(context.Background(), l); cniCode(err) != plugin.ErrPluginNotAvailable {
		t.Errorf("STATUS: %v", err)
	}
	n.mustDel(l, b)
	n.mustDel(l, c)
	if err := n.cni.GetStatusNetworkList(context.Background(), l); err != nil {
		t.Errorf("STATUS with free addresses: %v", err)
	}
}

// TestCorruptStateIsMovedAsideAndRebuilt: garbage in both state files
// does not break later calls: STATUS reports it, the next ADD moves the
// files aside, rebuilds them from the kernel (so the existing pod keeps
// its address and passes CHECK) and succeeds.
func TestCorruptStateIsMovedAsideAndRebuilt(t *testing.T) {
	for _, c := range []struct {
		mode, damage string
		fams         []string
	}{{"transparent", "corrupt", nil}, {"bridge", "corrupt", nil}, {"transparent", "deleted", nil},
		{"transparent", "corrupt", []string{"IPv6", "IPv4"}}, {"bridge", "deleted", []string{"IPv4", "IPv6"}}} {
		mode := c.mode
		t.Run(c.damage+" "+mode+" "+familyName(c.fams), func(t *testing.T) {
			n := newNode(t, 10)
			l := n.list("1.1.0", withFamilies(n.netConf(mode, nil), c.fams))
			a, b := n.newPod("corrupt-a"), n.newPod("corrupt-b")
			ra := n.mustAdd(l, a)
			for _, f := range []string{plugin.VnetStateFile, plugin.IPAMStateFile} {
				var err error
				if c.damage == "deleted" {
					err = os.Remove(filepath.Join(n.dir, f))
				} else {
					err = os.WriteFile(filepath.Join(n.dir, f), []byte("{\"endpoints\": {\x00 torn"), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if c.damage == "corrupt" {
				if err := n.cni.GetStatusNetworkList(context.Background(), l); cniCode(err) != plugin.ErrPluginNotAvailable {
					t.Errorf("STATUS on a corrupt state: %v, want code %d", err, plugin.ErrPluginNotAvailable)
				}
			}
			rb := n.mustAdd(l, b)
			for i := range ra.IPs {
				if rb.IPs[i].Address.IP.Equal(ra.IPs[i].Address.IP) {
					t.Fatalf("pod b got pod a's address %s: the rebuild lost a's allocation", ra.IPs[i].Address.IP)
				}
			}
			aside, _ := filepath.Glob(filepath.Join(n.dir, "*.corrupt-*"))
			if c.damage == "corrupt" && len(aside) != 2 {
				t.Errorf("want both corrupt files kept aside, found %v", aside)
			}
			if err := n.cni.CheckNetworkList(context.Background(), l, a.rt()); err != nil {
				t.Errorf("CHECK of the pod that existed before the corruption: %v", err)
			}
			again := n.mustAdd(l, a)
			if network.JoinCIDRs(ipNets(again)) != network.JoinCIDRs(ipNets(ra)) {
				t.Errorf("repeated ADD after rebuild: %v, want %v", resultIPs(again), resultIPs(ra))
			}
			if err := n.cni.GetStatusNetworkList(context.Background(), l); err != nil {
				t.Errorf("STATUS after the rebuild: %v", err)
			}
			n.mustDel(l, a)
			n.mustDel(l, b)
			for _, ip := range resultIPs(ra) {
				n.assertGone(a, ip)
			}
			for _, ip := range resultIPs(rb) {
				n.assertGone(b, ip)
			}
		})
	}
}
