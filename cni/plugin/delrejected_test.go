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
)

// execCmd runs a plugin binary with a CNI command and stdin exactly as
// given (libcni refuses to load a list that is not JSON or has no name,
// but a runtime may still hold one from before the file changed).
func (n *node) execCmd(bin, cmd string, p *pod, stdin []byte) ([]byte, error) {
	args := &invoke.Args{Command: cmd, ContainerID: p.id, NetNS: p.ns.Path, IfName: "eth0", Path: binDir}
	return n.exec().ExecPlugin(context.Background(), filepath.Join(binDir, bin), stdin, args.AsEnv())
}

// rejectedConfig is a configuration ADD rejects, with the code it gets.
type rejectedConfig struct {
	name  string
	stdin []byte
	code  uint
}

// rejectedConfigs lists configurations ADD of the named plugin rejects,
// each a mistake in one place; base is a configuration ADD accepts.
func rejectedConfigs(base map[string]interface{}, vnet bool) []rejectedConfig {
	edit := func(f func(c map[string]interface{})) []byte {
		b, _ := json.Marshal(base)
		c := map[string]interface{}{}
		_ = json.Unmarshal(b, &c)
		f(c)
		out, _ := json.Marshal(c)
		return out
	}
	ipamOf := func(c map[string]interface{}) map[string]interface{} { return c["ipam"].(map[string]interface{}) }
	cs := []rejectedConfig{
		{"malformed JSON", []byte(`{"cniVersion":"1.1.0","name":"azure","type":"azure-vnet",`), types.ErrDecodingFailure},
		{"unsupported cniVersion", edit(func(c map[string]interface{}) { c["cniVersion"] = "0.2.0" }), types.ErrIncompatibleCNIVersion},
		{"missing name", edit(func(c map[string]interface{}) { delete(c, "name") }), types.ErrInvalidNetworkConfig},
		{"missing ipam", edit(func(c map[string]interface{}) { delete(c, "ipam") }), types.ErrInvalidNetworkConfig},
		{"ipam not an object", edit(func(c map[string]interface{}) { c["ipam"] = "azure-vnet-ipam" }), types.ErrDecodingFailure},
		{"unknown environment", edit(func(c map[string]interface{}) { ipamOf(c)["environment"] = "gcp" }), types.ErrInvalidNetworkConfig},
		{"forbidden subnet", edit(func(c map[string]interface{}) { ipamOf(c)["subnet"] = "172.30.0.0/16" }), types.ErrInvalidNetworkConfig},
		{"forbidden address", edit(func(c map[string]interface{}) { ipamOf(c)["ipAddress"] = "169.254.3.4" }), types.ErrInvalidNetworkConfig},
		{"overlay without clusterCIDR", edit(func(c map[string]interface{}) {
			ipamOf(c)["environment"] = "overlay"
			ipamOf(c)["subnet"] = "10.244.1.0/24"
		}), types.ErrInvalidNetworkConfig},
		{"bad logLevel", edit(func(c map[string]interface{}) { c["logLevel"] = "chatty" }), types.ErrInvalidNetworkConfig},
		{"negative lockTimeout", edit(func(c map[string]interface{}) { c["lockTimeout"] = -1 }), types.ErrInvalidNetworkConfig},
		{"bad dns", edit(func(c map[string]interface{}) { c["dns"] = map[string]interface{}{"nameservers": []string{"resolver"}} }), types.ErrInvalidNetworkConfig},
	}
	if vnet {
		cs = append(cs,
			rejectedConfig{"unknown mode", edit(func(c map[string]interface{}) { c["mode"] = "l2tunnel" }), types.ErrInvalidNetworkConfig},
			rejectedConfig{"foreign ipam type", edit(func(c map[string]interface{}) { ipamOf(c)["type"] = "host-local" }), types.ErrInvalidNetworkConfig},
			rejectedConfig{"bad bridge name", edit(func(c map[string]interface{}) { c["bridge"] = "a/b" }), types.ErrInvalidNetworkConfig},
			rejectedConfig{"bad ipsToRouteViaHost", edit(func(c map[string]interface{}) { c["ipsToRouteViaHost"] = []string{"dns"} }), types.ErrInvalidNetworkConfig},
			rejectedConfig{"overlay in bridge mode", edit(func(c map[string]interface{}) {
				c["mode"] = "bridge"
				ipamOf(c)["environment"] = "overlay"
				ipamOf(c)["clusterCIDR"] = "10.244.0.0/16"
				ipamOf(c)["subnet"] = "10.244.1.0/24"
			}), types.ErrInvalidNetworkConfig},
		)
	}
	return cs
}

// cleanupLogLines counts the log lines of DELs that ran with a
// configuration that does not parse, in every log under the node's dir.
func (n *node) cleanupLogLines() int {
	files, _ := filepath.Glob(filepath.Join(n.dir, "*.log"))
	c := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		c += strings.Count(string(data), "cleaning up by container ID")
	}
	return c
}

// TestDelWithRejectedConfigCleansUp: for every configuration ADD rejects,
// in both plugins, the runtime's DEL with that configuration succeeds and
// logs the configuration error: after the rejected ADD (nothing to
// clean), and for a pod added earlier with a good configuration (the
// conflist changed meanwhile), which DEL removes completely by container
// ID from the plugin's own state.
func TestDelWithRejectedConfigCleansUp(t *testing.T) {
	for _, bin := range []string{"azure-vnet", "azure-vnet-ipam"} {
		t.Run(bin, func(t *testing.T) {
			n := newNode(t, 40)
			vnet := bin == "azure-vnet"
			good := n.netConf("transparent", nil)
			if !vnet {
				good = map[string]interface{}{"type": "azure-vnet-ipam", "stateDir": n.dir,
					"ipam": map[string]interface{}{"type": "azure-vnet-ipam", "environment": "file", "interfacesFile": n.ifsFile}}
			}
			good["cniVersion"], good["name"] = "1.1.0", "azure"
			goodJSON, _ := json.Marshal(good)
			for _, c := range rejectedConfigs(good, vnet) {
				t.Run(c.name, func(t *testing.T) {
					n.t = t
					// The ADD is rejected with its code and creates nothing;
					// DEL with the same configuration succeeds.
					p := n.newPod("rej-" + bin + c.name)
					if _, err := n.execCmd(bin, "ADD", p, c.stdin); cniCode(err) != c.code {
						t.Fatalf("ADD: %v, want code %d", err, c.code)
					}
					logged := n.cleanupLogLines()
					if _, err := n.execCmd(bin, "DEL", p, c.stdin); err != nil {
						t.Fatalf("DEL after the rejected ADD: %v", err)
					}
					if got := n.cleanupLogLines(); got != logged+1 {
						t.Errorf("the configuration error was not logged by DEL (%d lines, want %d)", got, logged+1)
					}
					n.assertGone(p, nil)

					// A pod added with the good configuration is removed by a
					// DEL with the rejected one.
					q := n.newPod("ok-" + bin + c.name)
					out, err := n.execCmd(bin, "ADD", q, goodJSON)
					if err != nil {
						t.Fatalf("ADD with the good configuration: %v", err)
					}
					var res struct {
						IPs []struct{ Address string } `json:"ips"`
					}
					if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
						t.Fatalf("ADD result %s: %v", out, err)
					}
					if _, is := n.state(); is.Find(q.id, "eth0") == nil {
						t.Fatal("ADD allocated nothing")
					}
					if _, err := n.execCmd(bin, "DEL", q, c.stdin); err != nil {
						t.Fatalf("DEL of an added pod with the rejected configuration: %v", err)
					}
					n.assertGone(q, nil)
					if o := n.ownedVeths(); len(o) != 0 {
						t.Errorf("veths left: %+v", o)
					}
					// And DEL again (the runtime retries) still succeeds.
					if _, err := n.execCmd(bin, "DEL", q, c.stdin); err != nil {
						t.Fatalf("repeated DEL: %v", err)
					}
				})
			}
		})
	}
}

// TestDelThroughLibcniWithRejectedMode: the runtime's path (libcni,
// conflist, cached result): a pod plumbed in transparent mode, the
// conflist then edited to an unknown mode; ADD of a new pod fails, DEL
// of both succeeds and the plumbed pod is gone.
func TestDelThroughLibcniWithRejectedMode(t *testing.T) {
	n := newNode(t, 4)
	good := n.list("1.0.0", n.netConf("transparent", nil))
	bad := n.list("1.0.0", n.netConf("l2tunnel", nil))
	a, b := n.newPod("lib-a"), n.newPod("lib-b")
	ra := n.mustAdd(good, a)
	if _, err := n.add(bad, b); cniCode(err) != types.ErrInvalidNetworkConfig {
		t.Fatalf("ADD with mode l2tunnel: %v", err)
	}
	n.mustDel(bad, b)
	n.mustDel(bad, a)
	n.assertGone(a, podIP(t, ra))
	n.assertGone(b, nil)
}
