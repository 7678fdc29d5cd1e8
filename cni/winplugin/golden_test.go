//go:build linux

package winplugin_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-acn/acn/cni/hns"
)

// goldenView is what HNS holds after ADD, with HNS's IDs replaced by
// names so the file only changes when the plugin's requests do.
type goldenView struct {
	Network  hns.Network  `json:"network"`
	Endpoint hns.Endpoint `json:"endpoint"`
	Policies []goldenPol  `json:"policies"`
}

type goldenPol struct {
	Type     string      `json:"type"`
	Settings interface{} `json:"settings"`
}

// The exact HNS objects and policies each conflist feature produces: one
// golden file per case in testdata/golden (go test -run TestGolden
// -update rewrites them).
func TestGoldenHNSObjects(t *testing.T) {
	set := func(k string, v interface{}) func(p map[string]interface{}) {
		return func(p map[string]interface{}) { p[k] = v }
	}
	policy := func(v map[string]interface{}) map[string]interface{} {
		return map[string]interface{}{"Name": "EndpointPolicy", "Value": v}
	}
	cases := []struct {
		name   string
		mutate func(p map[string]interface{})
		caps   map[string]interface{}
	}{
		{"shipped", nil, nil},
		{"no-policies", set("AdditionalArgs", []interface{}{}), nil},
		{"outboundnat", set("AdditionalArgs", []interface{}{policy(map[string]interface{}{"Type": "OutBoundNAT", "ExceptionList": []string{"10.240.0.0/16", "10.0.0.0/16", "192.168.1.7"}})}), nil},
		{"route-needencap", set("AdditionalArgs", []interface{}{policy(map[string]interface{}{"Type": "ROUTE", "DestinationPrefix": "10.0.0.0/16", "NeedEncap": true})}), nil},
		{"acl", set("AdditionalArgs", []interface{}{
			policy(map[string]interface{}{"Type": "ACL", "Protocols": "6", "Action": "Block", "Direction": "Out", "RemoteAddresses": "168.63.129.16/32", "RemotePorts": "80", "Priority": 200, "RuleType": "Switch"}),
			policy(map[string]interface{}{"Type": "ACL", "Action": "Allow", "Direction": "In", "Priority": 65500}),
		}), nil},
		{"adapter-name", set("adapterName", "Ethernet 2"), nil},
		{"portmappings", nil, map[string]interface{}{"portMappings": []map[string]interface{}{
			{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
			{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "10.240.0.4"},
		}}},
		{"dns-capability", nil, map[string]interface{}{"dns": map[string]interface{}{
			"servers": []string{"10.0.0.10"}, "searches": []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}, "options": []string{"ndots:5"}}}},
		{"dns-conf", set("dns", map[string]interface{}{"nameservers": []string{"10.0.0.10"}, "domain": "cluster.local", "search": []string{"svc.cluster.local"}}), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t, 4)
			l := n.conf("1.1.0", c.mutate)
			p := n.newPod("golden")
			p.caps = c.caps
			n.mustAdd(l, p)
			f := n.fake()
			nws := f.Networks()
			eps := f.AllEndpoints()
			if len(nws) != 1 || len(eps) != 1 {
				t.Fatalf("%d networks, %d endpoints; want one each", len(nws), len(eps))
			}
			v := goldenView{Network: nws[0], Endpoint: *eps[0]}
			v.Network.ID = "<network>"
			v.Endpoint.ID, v.Endpoint.NetworkID, v.Endpoint.Namespace = "<endpoint>", "<network>", "<pod namespace>"
			v.Endpoint.Name = "acn_eth0_<containerID>"
			for _, pol := range v.Endpoint.Policies {
				var s interface{}
				if err := json.Unmarshal(pol.Settings, &s); err != nil {
					t.Fatal(err)
				}
				v.Policies = append(v.Policies, goldenPol{Type: pol.Type, Settings: s})
			}
			v.Endpoint.Policies = nil
			v.Endpoint.MAC = "<assigned by HNS>"
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(v); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			path := filepath.Join("testdata", "golden", c.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("HNS objects differ from %s (-update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
			}
			n.mustDel(l, p)
			n.assertEmpty("after DEL")
		})
	}
}
