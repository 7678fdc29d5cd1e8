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
)

// deployConflist loads a shipped conflist and points it at the test node:
// the address source becomes the node's interfaces file, state and logs go
// to the node's directory. Everything else is used as shipped.
func (n *node) deployConflist(name string) *libcni.NetworkConfigList {
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
	plugins := raw["plugins"].([]interface{})
	vnet := plugins[0].(map[string]interface{})
	vnet["stateDir"] = n.dir
	vnet["logFile"] = filepath.Join(n.dir, "azure-vnet.log")
	ip := vnet["ipam"].(map[string]interface{})
	ip["environment"], ip["interfacesFile"] = "file", n.ifsFile
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
		t.Skip("reference portmap plugin not installed (containernetworking-plugins)")
	}
	for _, c := range []struct{ file, mode string }{{"10-azure.conflist", "transparent"}, {"10-azure-bridge.conflist", "bridge"}} {
		t.Run(c.file, func(t *testing.T) {
			n := newNode(t, 10)
			l := n.deployConflist(c.file)
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
