//go:build linux

package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// valid is a complete azure-vnet configuration; cases edit a copy.
func valid() map[string]interface{} {
	return map[string]interface{}{
		"cniVersion": "1.1.0", "name": "azure", "type": "azure-vnet", "mode": "transparent",
		"ipam": map[string]interface{}{"type": "azure-vnet-ipam", "environment": "file"},
	}
}

func encode(t *testing.T, c map[string]interface{}) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRejectsEachMistakeWithItsOwnMessage(t *testing.T) {
	ipam := func(c map[string]interface{}) map[string]interface{} { return c["ipam"].(map[string]interface{}) }
	cases := []struct {
		name string
		edit func(c map[string]interface{})
		want string // substring of the message
	}{
		{"no name", func(c map[string]interface{}) { delete(c, "name") }, "name: missing"},
		{"no type", func(c map[string]interface{}) { delete(c, "type") }, "type: missing"},
		{"unknown mode", func(c map[string]interface{}) { c["mode"] = "vxlan" }, `mode "vxlan"`},
		{"bridge name too long", func(c map[string]interface{}) { c["bridge"] = "a-very-long-bridge-name" }, "bridge"},
		{"master with slash", func(c map[string]interface{}) { c["master"] = "eth/0" }, "master"},
		{"bad log level", func(c map[string]interface{}) { c["logLevel"] = "loud" }, "logLevel"},
		{"bad log target", func(c map[string]interface{}) { c["logTarget"] = "stdout" }, "logTarget"},
		{"no ipam", func(c map[string]interface{}) { delete(c, "ipam") }, "ipam: missing"},
		{"other ipam", func(c map[string]interface{}) { ipam(c)["type"] = "host-local" }, "ipam.type"},
		{"bad environment", func(c map[string]interface{}) { ipam(c)["environment"] = "aws" }, "ipam.environment"},
		{"subnet not a CIDR", func(c map[string]interface{}) { ipam(c)["subnet"] = "10.0.0.0" }, "ipam.subnet"},
		{"subnet IPv6", func(c map[string]interface{}) { ipam(c)["subnet"] = "fd00::/64" }, "ipam.subnet"},
		{"link-local subnet", func(c map[string]interface{}) { ipam(c)["subnet"] = "169.254.0.0/24" }, "169.254.0.0/16"},
		{"172.30 subnet", func(c map[string]interface{}) { ipam(c)["subnet"] = "172.30.1.0/24" }, "172.30.0.0/16"},
		{"172.31 subnet", func(c map[string]interface{}) { ipam(c)["subnet"] = "172.31.0.0/16" }, "172.31.0.0/16"},
		{"192.0.2 subnet", func(c map[string]interface{}) { ipam(c)["subnet"] = "192.0.2.0/25" }, "192.0.2.0/24"},
		{"subnet containing a forbidden range", func(c map[string]interface{}) { ipam(c)["subnet"] = "172.0.0.0/8" }, "172.30.0.0/16"},
		{"address not an IP", func(c map[string]interface{}) { ipam(c)["ipAddress"] = "ten" }, "ipam.ipAddress"},
		{"address forbidden", func(c map[string]interface{}) { ipam(c)["ipAddress"] = "192.0.2.7" }, "192.0.2.0/24"},
		{"address outside subnet", func(c map[string]interface{}) {
			ipam(c)["subnet"] = "10.1.0.0/16"
			ipam(c)["ipAddress"] = "10.2.0.5"
		}, "not in ipam.subnet"},
		{"negative queryInterval", func(c map[string]interface{}) { ipam(c)["queryInterval"] = -5 }, "queryInterval"},
		{"queryInterval garbage", func(c map[string]interface{}) { ipam(c)["queryInterval"] = "soon" }, "cannot decode"},
		{"queryUrl not http", func(c map[string]interface{}) {
			ipam(c)["environment"] = "azure"
			ipam(c)["queryUrl"] = "file:///etc/passwd"
		}, "ipam.queryUrl"},
		{"ipsToRouteViaHost not IPs", func(c map[string]interface{}) { c["ipsToRouteViaHost"] = []string{"10.0.0.1", "dns"} }, `"dns"`},
		{"dns nameserver not IP", func(c map[string]interface{}) {
			c["dns"] = map[string]interface{}{"nameservers": []string{"resolver"}}
		}, "dns.nameservers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := valid()
			c.edit(conf)
			_, err := Parse(encode(t, conf), VnetPlugin)
			if err == nil {
				t.Fatal("accepted")
			}
			te, ok := err.(*types.Error)
			if !ok {
				t.Fatalf("not a CNI error: %T %v", err, err)
			}
			wantCode := types.ErrInvalidNetworkConfig
			if strings.HasPrefix(c.want, "cannot decode") {
				wantCode = types.ErrDecodingFailure
			}
			if te.Code != wantCode {
				t.Errorf("code %d, want %d", te.Code, wantCode)
			}
			if !strings.Contains(te.Msg, c.want) {
				t.Errorf("message %q does not mention %q", te.Msg, c.want)
			}
		})
	}
}

func TestParseMalformedJSONIsDecodingFailure(t *testing.T) {
	_, err := Parse([]byte(`{"name": "azure",`), VnetPlugin)
	if te, ok := err.(*types.Error); !ok || te.Code != types.ErrDecodingFailure {
		t.Fatalf("want decoding failure, got %v", err)
	}
}

func TestParseDefaults(t *testing.T) {
	t.Setenv(EnvStateDir, "")
	conf := valid()
	delete(conf, "mode")
	c, err := Parse(encode(t, conf), VnetPlugin)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want interface{}
	}{
		{"mode", c.Mode, ModeBridge},
		{"bridge", c.Bridge, DefaultBridge},
		{"state dir", c.StateDir, DefaultStateDir},
		{"query URL", c.IPAM.QueryURL, DefaultQueryURL},
		{"interfaces file", c.IPAM.InterfacesFile, DefaultInterfacesFile},
		{"query interval", time.Duration(c.IPAM.QueryInterval), DefaultQueryInterval},
		{"cool-down", time.Duration(c.IPAM.ReuseCooldown), DefaultReuseCooldown},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: %v, want %v", ch.what, ch.got, ch.want)
		}
	}
}

func TestStateDirFromEnvironmentUnlessConfigured(t *testing.T) {
	t.Setenv(EnvStateDir, "/tmp/from-env")
	c, err := Parse(encode(t, valid()), VnetPlugin)
	if err != nil || c.StateDir != "/tmp/from-env" {
		t.Fatalf("state dir %q, err %v; want the environment's", c.StateDir, err)
	}
	conf := valid()
	conf["stateDir"] = "/tmp/from-config"
	c, err = Parse(encode(t, conf), VnetPlugin)
	if err != nil || c.StateDir != "/tmp/from-config" {
		t.Fatalf("state dir %q, err %v; want the config's", c.StateDir, err)
	}
}

func TestDurationAcceptsSecondsAndStrings(t *testing.T) {
	for in, want := range map[string]time.Duration{`10`: 10 * time.Second, `"10"`: 10 * time.Second, `"1m30s"`: 90 * time.Second, `0.5`: 500 * time.Millisecond} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
}

func TestAttachmentsAcceptsTheLegacyKey(t *testing.T) {
	for _, k := range []string{"cni.dev/valid-attachments", "cni.dev/attachments"} {
		conf := valid()
		conf[k] = []map[string]string{{"containerID": "c1", "ifname": "eth0"}}
		c, err := Parse(encode(t, conf), VnetPlugin)
		if err != nil {
			t.Fatal(err)
		}
		atts, ok := c.Attachments()
		if !ok || len(atts) != 1 || atts[0].ContainerID != "c1" {
			t.Errorf("%s: got %v %v", k, atts, ok)
		}
	}
	c, _ := Parse(encode(t, valid()), VnetPlugin)
	if _, ok := c.Attachments(); ok {
		t.Error("no list in the request must not read as an empty list (GC would delete everything)")
	}
}

func TestIPAMPluginAcceptsAnyNetworkPluginType(t *testing.T) {
	conf := valid()
	conf["type"], conf["mode"] = "bridge", "" // the bridge plugin's config, as delegated
	if _, err := Parse(encode(t, conf), IPAMPlugin); err != nil {
		t.Fatal(err)
	}
}

// overlay is a valid overlay configuration; cases edit a copy.
func overlay() map[string]interface{} {
	return map[string]interface{}{
		"cniVersion": "1.1.0", "name": "azure", "type": "azure-vnet",
		"ipam": map[string]interface{}{"type": "azure-vnet-ipam", "environment": "overlay",
			"clusterCIDR": "10.244.0.0/16", "podCIDRFile": "/etc/kubernetes/podcidr"},
	}
}

func TestOverlayConfig(t *testing.T) {
	c, err := Parse(encode(t, overlay()), VnetPlugin)
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeTransparent || c.IPAM.ClusterCIDRFor(IPv4).String() != "10.244.0.0/16" {
		t.Fatalf("mode %q cluster %v", c.Mode, c.IPAM.ClusterCIDRNets)
	}
	ipam := func(c map[string]interface{}) map[string]interface{} { return c["ipam"].(map[string]interface{}) }
	cases := []struct {
		name   string
		plugin string
		edit   func(c map[string]interface{})
		want   string
	}{
		{"no clusterCIDR", VnetPlugin, func(c map[string]interface{}) { delete(ipam(c), "clusterCIDR") }, "ipam.clusterCIDR: missing"},
		{"clusterCIDR not a CIDR", VnetPlugin, func(c map[string]interface{}) { ipam(c)["clusterCIDR"] = "10.244.0.0" }, "ipam.clusterCIDR"},
		{"clusterCIDR IPv6", IPAMPlugin, func(c map[string]interface{}) { ipam(c)["clusterCIDR"] = "fd00::/48" }, "ipam.clusterCIDR"},
		{"clusterCIDR forbidden", VnetPlugin, func(c map[string]interface{}) { ipam(c)["clusterCIDR"] = "172.16.0.0/12" }, "172.30.0.0/16"},
		{"no block source", VnetPlugin, func(c map[string]interface{}) { delete(ipam(c), "podCIDRFile") }, "exactly one source"},
		{"two block sources", VnetPlugin, func(c map[string]interface{}) { ipam(c)["kubeconfig"] = "/k" }, "exactly one source"},
		{"bridge mode", VnetPlugin, func(c map[string]interface{}) { c["mode"] = "bridge" }, `works with mode "transparent" only`},
		{"static block outside", VnetPlugin, func(c map[string]interface{}) {
			delete(ipam(c), "podCIDRFile")
			ipam(c)["subnet"] = "10.245.1.0/24"
		}, "not inside ipam.clusterCIDR"},
		{"static block larger than the cluster", VnetPlugin, func(c map[string]interface{}) {
			delete(ipam(c), "podCIDRFile")
			ipam(c)["subnet"] = "10.0.0.0/8"
		}, "not inside ipam.clusterCIDR"},
		{"static block too small", VnetPlugin, func(c map[string]interface{}) {
			delete(ipam(c), "podCIDRFile")
			ipam(c)["subnet"] = "10.244.1.0/31"
		}, "too small"},
		{"address outside the cluster", VnetPlugin, func(c map[string]interface{}) { ipam(c)["ipAddress"] = "10.1.0.1" }, "not in ipam.clusterCIDR"},
		{"overlay fields elsewhere", VnetPlugin, func(c map[string]interface{}) { ipam(c)["environment"] = "file" }, "apply to ipam.environment \"overlay\" only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := overlay()
			tc.edit(c)
			_, err := Parse(encode(t, c), tc.plugin)
			te, ok := err.(*types.Error)
			if !ok || te.Code != types.ErrInvalidNetworkConfig || !strings.Contains(te.Msg, tc.want) {
				t.Fatalf("want code 7 with %q, got %v", tc.want, err)
			}
		})
	}
	// A static block inside the cluster CIDR is fine, for both plugins.
	c2 := overlay()
	delete(ipam(c2), "podCIDRFile")
	ipam(c2)["subnet"] = "10.244.7.0/24"
	for _, p := range []string{VnetPlugin, IPAMPlugin} {
		if _, err := Parse(encode(t, c2), p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestForCleanupReadsWhatDELNeedsFromAnyInput: the state directory, log
// file and lock timeout of a rejected configuration are kept where they
// decode; anything else (or input that is not JSON) falls back to the
// defaults, never to an error.
func TestForCleanupReadsWhatDELNeedsFromAnyInput(t *testing.T) {
	t.Setenv(EnvStateDir, "")
	cases := []struct {
		name, stdin, stateDir, logLevel string
		lock                            time.Duration
	}{
		{"unknown mode", `{"cniVersion":"1.1.0","name":"azure","mode":"vxlan","stateDir":"/run/x","lockTimeout":5,"logLevel":"debug"}`, "/run/x", "debug", 5 * time.Second},
		{"ipam not an object", `{"name":"azure","ipam":"x","stateDir":"/run/y","lockTimeout":"oops","logLevel":"chatty"}`, "/run/y", "", DefaultLockTimeout},
		{"stateDir not a string", `{"stateDir":7,"lockTimeout":-3}`, DefaultStateDir, "", DefaultLockTimeout},
		{"not JSON", `{"name":"azure",`, DefaultStateDir, "", DefaultLockTimeout},
	}
	for _, c := range cases {
		got := ForCleanup([]byte(c.stdin))
		if got.StateDir != c.stateDir || got.LogLevel != c.logLevel || time.Duration(got.LockTimeout) != c.lock {
			t.Errorf("%s: stateDir %q logLevel %q lockTimeout %v, want %q %q %v", c.name, got.StateDir, got.LogLevel, time.Duration(got.LockTimeout), c.stateDir, c.logLevel, c.lock)
		}
	}
}
