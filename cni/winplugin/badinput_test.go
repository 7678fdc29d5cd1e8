//go:build linux

package winplugin_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/hns"
)

// pluginConf is the azure-vnet section of the shipped Windows conflist as
// a runtime hands it to the plugin (name and cniVersion injected), with
// mutate applied.
func (n *node) pluginConf(v string, mutate func(p map[string]interface{})) map[string]interface{} {
	n.t.Helper()
	l := n.conf(v, mutate)
	var p map[string]interface{}
	if err := json.Unmarshal(l.Plugins[0].Bytes, &p); err != nil {
		n.t.Fatal(err)
	}
	p["name"], p["cniVersion"] = l.Name, v
	return p
}

// run executes a plugin binary directly (no libcni: it would refuse some
// of the input first) and returns its error JSON, if any.
func (n *node) run(plugin, command string, stdin []byte, containerID, netns, ifName string) (*types.Error, string) {
	n.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, plugin))
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+netns,
		"CNI_IFNAME="+ifName, "CNI_PATH="+binDir, "ACN_FAKE_HNS_FILE="+n.ff.Path,
		config.EnvStateDir+"="+n.dir, config.EnvLogFile+"="+filepath.Join(n.dir, "plugin.log"))
	cmd.Stdin = bytes.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if err == nil {
		return nil, out.String()
	}
	te := &types.Error{}
	if jerr := json.Unmarshal(out.Bytes(), te); jerr != nil {
		n.t.Fatalf("%s %s failed (%v) without a CNI error: %q", plugin, command, err, out.String())
	}
	return te, out.String()
}

// Bad input: each case answers its code and message and creates nothing
// (no network, endpoint, address or state).
func TestBadInputCodes(t *testing.T) {
	policy := func(v map[string]interface{}) func(p map[string]interface{}) {
		return func(p map[string]interface{}) {
			p["AdditionalArgs"] = []interface{}{map[string]interface{}{"Name": "EndpointPolicy", "Value": v}}
		}
	}
	set := func(k string, v interface{}) func(p map[string]interface{}) {
		return func(p map[string]interface{}) { p[k] = v }
	}
	ports := func(m ...map[string]interface{}) func(p map[string]interface{}) {
		return func(p map[string]interface{}) {
			p["runtimeConfig"] = map[string]interface{}{"portMappings": m}
		}
	}
	cases := []struct {
		name    string
		version string
		mutate  func(p map[string]interface{})
		raw     string // stdin instead of the conf
		netns   string // "" the pod's namespace
		ifName  string // "" eth0
		code    uint
		msg     string
	}{
		{name: "malformed JSON", raw: `{"name":"azure",`, code: 6, msg: "network config"},
		{name: "unsupported cniVersion", version: "0.2.0", code: 1, msg: "0.2.0"},
		{name: "transparent mode", mutate: set("mode", "transparent"), code: 7, msg: "L2Bridge"},
		{name: "IPv6", mutate: func(p map[string]interface{}) { p["ipam"].(map[string]interface{})["ipFamilies"] = []string{"IPv6"} }, code: 7, msg: "ipFamilies"},
		{name: "master instead of adapterName", mutate: set("master", "eth0"), code: 7, msg: "adapterName"},
		{name: "ipsToRouteViaHost", mutate: set("ipsToRouteViaHost", []string{"169.254.20.10"}), code: 7, msg: "ipsToRouteViaHost"},
		{name: "AdditionalArgs name", mutate: set("AdditionalArgs", []interface{}{map[string]interface{}{"Name": "NetworkPolicy", "Value": map[string]interface{}{"Type": "ACL"}}}), code: 7, msg: "EndpointPolicy"},
		{name: "unknown policy type", mutate: policy(map[string]interface{}{"Type": "L4WFPPROXY"}), code: 7, msg: "unknown policy type"},
		{name: "OutBoundNAT bad exception", mutate: policy(map[string]interface{}{"Type": "OutBoundNAT", "ExceptionList": []string{"10.0.0.0/33"}}), code: 7, msg: "ExceptionList"},
		{name: "ROUTE bad prefix", mutate: policy(map[string]interface{}{"Type": "ROUTE", "DestinationPrefix": "10.0.0.0", "NeedEncap": true}), code: 7, msg: "DestinationPrefix"},
		{name: "ACL bad action", mutate: policy(map[string]interface{}{"Type": "ACL", "Action": "Drop", "Direction": "In"}), code: 7, msg: "Action"},
		{name: "ACL bad direction", mutate: policy(map[string]interface{}{"Type": "ACL", "Action": "Allow", "Direction": "Both"}), code: 7, msg: "Direction"},
		{name: "ACL bad priority", mutate: policy(map[string]interface{}{"Type": "ACL", "Action": "Allow", "Direction": "In", "Priority": 0}), code: 7, msg: "Priority"},
		{name: "ACL bad protocol", mutate: policy(map[string]interface{}{"Type": "ACL", "Action": "Allow", "Direction": "In", "Protocols": "tcp"}), code: 7, msg: "Protocols"},
		{name: "ACL bad port", mutate: policy(map[string]interface{}{"Type": "ACL", "Action": "Allow", "Direction": "In", "LocalPorts": "80-http"}), code: 7, msg: "LocalPorts"},
		{name: "port mapping sctp", mutate: ports(map[string]interface{}{"hostPort": 80, "containerPort": 80, "protocol": "sctp"}), code: 7, msg: "protocol"},
		{name: "port mapping port 0", mutate: ports(map[string]interface{}{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}), code: 7, msg: "hostPort"},
		{name: "netns not a GUID", netns: "/var/run/netns/pod", code: 4, msg: "CNI_NETNS"},
		{name: "namespace unknown to HNS", netns: guid("nobody made this"), code: 8, msg: "namespace"},
		{name: "interface name with _", ifName: "eth_0", code: 4, msg: "CNI_IFNAME"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t, 4)
			p := n.newPod("bad")
			v := c.version
			if v == "" {
				v = "1.1.0"
			}
			stdin := []byte(c.raw)
			if c.raw == "" {
				conf := n.pluginConf("1.1.0", c.mutate)
				conf["cniVersion"] = v
				var err error
				if stdin, err = json.Marshal(conf); err != nil {
					t.Fatal(err)
				}
			}
			netns, ifName := p.ns, "eth0"
			if c.netns != "" {
				netns = c.netns
			}
			if c.ifName != "" {
				ifName = c.ifName
			}
			te, _ := n.run(config.VnetPlugin, "ADD", stdin, p.id, netns, ifName)
			if te == nil || te.Code != c.code || !strings.Contains(te.Msg+te.Details, c.msg) {
				t.Fatalf("got %+v, want code %d with %q", te, c.code, c.msg)
			}
			n.assertEmpty("after the rejected ADD")
			if c.netns == "" && c.ifName == "" {
				// DEL with the same input succeeds (nothing to clean up).
				if te, out := n.run(config.VnetPlugin, "DEL", stdin, p.id, netns, ifName); te != nil {
					t.Fatalf("DEL with the rejected input: %+v %s", te, out)
				}
			}
		})
	}
}

// What HNS refuses (a host port another pod maps) is code 105 with HNS's
// reason, and the refused ADD leaves nothing; an exhausted pool is 102;
// CHECK of an unknown container is 3.
func TestRefusals(t *testing.T) {
	n := newNode(t, 2)
	mapping := map[string]interface{}{"portMappings": []map[string]interface{}{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}
	l := n.conf("1.1.0", nil)
	a, b := n.newPod("a"), n.newPod("b")
	a.caps, b.caps = mapping, mapping
	n.mustAdd(l, a)
	_, err := n.add(l, b)
	if cniCode(err) != 105 || !strings.Contains(err.Error(), "8080") {
		t.Fatalf("second pod mapping host port 8080: %v, want code 105 naming the port", err)
	}
	if _, e := n.fake().EndpointByName(hns.EndpointName(b.id, "eth0")); e == nil {
		t.Fatalf("the refused ADD left its endpoint")
	}
	if _, is := n.state(); len(is.Allocations) != 1 {
		t.Fatalf("the refused ADD left its address: %d allocations", len(is.Allocations))
	}
	b.caps = nil
	n.mustAdd(l, b)
	c := n.newPod("c")
	if _, err := n.add(l, c); cniCode(err) != 102 || !strings.Contains(err.Error(), "10.240.0.0/16") {
		t.Fatalf("third pod with two addresses: %v, want 102 naming the pool", err)
	}
	conf, err := json.Marshal(n.pluginConf("1.1.0", func(p map[string]interface{}) {
		p["prevResult"] = map[string]interface{}{"cniVersion": "1.1.0", "ips": []interface{}{map[string]interface{}{"address": "10.240.1.9/16"}}}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if te, _ := n.run(config.VnetPlugin, "CHECK", conf, c.id, c.ns, "eth0"); te == nil || te.Code != 3 {
		t.Fatalf("CHECK of an unknown container: %+v, want code 3", te)
	}
	n.mustDel(l, a)
	n.mustDel(l, b)
	n.mustDel(l, c)
	n.assertEmpty("after DEL")
}

// DEL with a configuration ADD would reject still removes the pod's
// endpoint and address (found by the container ID).
func TestDelWithRejectedConfig(t *testing.T) {
	n := newNode(t, 4)
	l := n.conf("1.1.0", nil)
	p := n.newPod("p")
	n.mustAdd(l, p)
	for _, c := range []struct {
		name  string
		stdin []byte
	}{
		{"malformed", []byte(`{"cniVersion":"1.1.0","name":`)},
		{"transparent", func() []byte {
			b, _ := json.Marshal(n.pluginConf("1.1.0", func(m map[string]interface{}) { m["mode"] = "transparent" }))
			return b
		}()},
	} {
		if te, out := n.run(config.VnetPlugin, "DEL", c.stdin, p.id, p.ns, "eth0"); te != nil {
			t.Fatalf("DEL (%s): %+v %s", c.name, te, out)
		}
		n.assertEmpty("after DEL with a " + c.name + " configuration")
	}
}

// azure-vnet-ipam.exe: the same sources and state as azure-vnet.
func TestIPAMPlugin(t *testing.T) {
	n := newNode(t, 4)
	conf := n.pluginConf("1.1.0", nil)
	conf["type"] = config.IPAMPlugin
	stdin, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	p := n.newPod("ipam")
	te, out := n.run(config.IPAMPlugin, "ADD", stdin, p.id, p.ns, "eth0")
	if te != nil || !strings.Contains(out, `"address": "10.240.1.`) || !strings.Contains(out, `"gateway": "10.240.0.1"`) {
		t.Fatalf("ADD: %+v %s", te, out)
	}
	_, is := n.state()
	if len(is.Allocations) != 1 {
		t.Fatalf("%d allocations after ADD", len(is.Allocations))
	}
	for _, al := range is.Allocations {
		if al.Owner != config.IPAMPlugin || al.ContainerID != p.id {
			t.Fatalf("allocation %+v", al)
		}
	}
	if te, out := n.run(config.IPAMPlugin, "STATUS", stdin, "", "", ""); te != nil {
		t.Fatalf("STATUS: %+v %s", te, out)
	}
	conf["cni.dev/valid-attachments"] = []interface{}{}
	gc, _ := json.Marshal(conf)
	if te, out := n.run(config.IPAMPlugin, "GC", gc, "", "", ""); te != nil {
		t.Fatalf("GC: %+v %s", te, out)
	}
	if _, is := n.state(); len(is.Allocations) != 0 {
		t.Fatalf("GC left %d allocations", len(is.Allocations))
	}
	if te, out := n.run(config.IPAMPlugin, "DEL", stdin, p.id, p.ns, "eth0"); te != nil {
		t.Fatalf("DEL: %+v %s", te, out)
	}
	if len(n.fake().Networks()) != 0 {
		t.Fatalf("azure-vnet-ipam touched HNS")
	}
}

// Both binaries answer --version (and bad flags are a usage error).
func TestVersionFlag(t *testing.T) {
	for _, name := range []string{config.VnetPlugin, config.IPAMPlugin} {
		out, err := exec.Command(filepath.Join(binDir, name), "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), name) {
			t.Fatalf("%s --version: %v %q", name, err, out)
		}
		err = exec.Command(filepath.Join(binDir, name), "--bogus").Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("%s --bogus: %v, want exit code 2", name, err)
		}
	}
}
