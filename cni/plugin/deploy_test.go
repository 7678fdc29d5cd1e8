//go:build linux

package plugin_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/open-acn/acn/internal/netnstest"
)

// deployConflist loads a shipped conflist and points it at the test node:
// state and logs go to the node's directory, and setIPAM adapts the ipam
// section (the address source). Everything else is used as shipped.
func (n *node) deployConflist(name string, setIPAM func(ipam map[string]interface{})) *libcni.NetworkConfigList {
	n.t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "deploy", "cni", name))
	if err != nil {
		n.t.Fatal(err)
	}
	var raw map[string]interface{}
	if err := json.Unmarshal(data, &raw); err != nil {
		n.t.Fatalf("%s: %v", name, err)
	}
	vnet := raw["plugins"].([]interface{})[0].(map[string]interface{})
	vnet["stateDir"], vnet["logFile"] = n.dir, filepath.Join(n.dir, "azure-vnet.log")
	setIPAM(vnet["ipam"].(map[string]interface{}))
	data, _ = json.Marshal(raw)
	l, err := libcni.NetworkConfFromBytes(data)
	if err != nil {
		n.t.Fatal(err)
	}
	return l
}

// TestShippedConflistsWithPortmap runs the shipped conflists (azure-vnet
// chained with the reference portmap plugin) through ADD with a port
// mapping, CHECK and DEL: portmap's DNAT rule appears in the node's nat
// table and goes away with the pod.
func TestShippedConflistsWithPortmap(t *testing.T) {
	if _, err := os.Stat(filepath.Join(refPluginDir, "portmap")); err != nil {
		netnstest.Skip(t, "reference portmap plugin not installed (containernetworking-plugins; make deps installs it)")
	}
	for _, c := range []struct{ file, mode string }{{"10-azure.conflist", "transparent"}, {"10-azure-bridge.conflist", "bridge"}} {
		t.Run(c.file, func(t *testing.T) {
			n := newNode(t, 10)
			l := n.deployConflist(c.file, func(ip map[string]interface{}) {
				ip["environment"], ip["interfacesFile"] = "file", n.ifsFile
			})
			if got := l.Plugins[0].Network.Type; got != "azure-vnet" {
				t.Fatalf("first plugin is %q", got)
			}
			var mode struct{ Mode string }
			_ = json.Unmarshal(l.Plugins[0].Bytes, &mode)
			if mode.Mode != c.mode {
				t.Fatalf("mode %q, want %q", mode.Mode, c.mode)
			}
			p := n.newPod("portmap-" + c.mode)
			rt := p.rt()
			rt.CapabilityArgs = map[string]interface{}{
				"portMappings": []map[string]interface{}{{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}},
			}
			if _, err := n.cni.AddNetworkList(context.Background(), l, rt); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			// ipsToRouteViaHost (node-local DNS) goes through the node.
			via := map[string]string{"transparent": "169.254.1.1", "bridge": nodeIP}[c.mode]
			if routes := p.ns.MustExec(t, "ip", "-4", "route", "show"); !strings.Contains(routes, "169.254.20.10 via "+via) {
				t.Errorf("no route to 169.254.20.10 via %s in the pod:\n%s", via, routes)
			}
			nat := n.ns.MustExec(t, "iptables", "-t", "nat", "-S")
			if !strings.Contains(nat, "18080") {
				t.Errorf("no portmap DNAT rule for 18080 in the node:\n%s", nat)
			}
			// CHECK goes to azure-vnet alone: Debian's portmap (v1.1) fails its
			// own CHECK on IPv4-only pods ("could not check ipv6 dnat").
			only := *l
			only.Plugins = l.Plugins[:1]
			if err := n.cni.CheckNetworkList(context.Background(), &only, rt); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if nat := n.ns.MustExec(t, "iptables", "-t", "nat", "-S"); strings.Contains(nat, "18080") {
				t.Errorf("portmap rule left after DEL:\n%s", nat)
			}
			n.assertGone(p, nil)
		})
	}
}

// TestShippedOverlayConflist runs the shipped overlay conflist with the
// node's block from a pod-CIDR file instead of the kubelet's kubeconfig
// (everything else as shipped, portmap included): the pod gets an address
// of the block, the SNAT chain is installed, CHECK and DEL pass.
func TestShippedOverlayConflist(t *testing.T) {
	if _, err := os.Stat(filepath.Join(refPluginDir, "portmap")); err != nil {
		netnstest.Skip(t, "reference portmap plugin not installed (containernetworking-plugins; make deps installs it)")
	}
	n := newNode(t, 0)
	l := n.deployConflist("10-azure-overlay.conflist", func(ip map[string]interface{}) {
		if ip["environment"] != "overlay" || ip["clusterCIDR"] != clusterCIDR {
			t.Fatalf("shipped ipam section: %v", ip)
		}
		delete(ip, "kubeconfig")
		ip["podCIDRFile"] = filepath.Join(n.dir, "podcidr.json")
		if err := os.WriteFile(ip["podCIDRFile"].(string), []byte(`{"podCIDRs":["10.244.9.0/24","fd00:10:244:9::/64"]}`), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	p := n.newPod("overlay-shipped")
	rt := p.rt()
	rt.CapabilityArgs = map[string]interface{}{
		"portMappings": []map[string]interface{}{{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}},
	}
	if _, err := n.cni.AddNetworkList(context.Background(), l, rt); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if addrs := p.ns.MustExec(t, "ip", "-4", "-o", "addr", "show", "eth0"); !strings.Contains(addrs, "10.244.9.") {
		t.Errorf("pod address not from the block:\n%s", addrs)
	}
	if nat := n.ns.MustExec(t, "iptables", "-t", "nat", "-S"); !strings.Contains(nat, "18081") || !strings.Contains(nat, "-A ACN-OVERLAY-SNAT -s 10.244.9.0/24 ! -d 10.244.0.0/16") {
		t.Errorf("want portmap's DNAT and the overlay SNAT in the node:\n%s", nat)
	}
	only := *l
	only.Plugins = l.Plugins[:1]
	if err := n.cni.CheckNetworkList(context.Background(), &only, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	n.assertGone(p, nil)
}
