package hnsacl

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/winplugin"
	npmconfig "github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
)

// cniHNS is the node's HNS as the NetworkPolicy dataplane sees it when
// azure-vnet made the pods' endpoints: the endpoints come from the CNI's
// fake HNS (cni/hns), listed on the network named like the real client
// does (NewHCN: the network named npm's hnsNetwork, then its endpoints),
// and the ACLs and SetPolicies are kept by this package's Fake.
type cniHNS struct {
	network string
	cni     *hns.Fake
	*Fake
}

func (c *cniHNS) ListEndpoints(ctx context.Context) ([]Endpoint, error) {
	nw, err := c.cni.NetworkByName(c.network)
	if err != nil {
		return nil, err
	}
	eps, err := c.cni.Endpoints(nw.ID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range eps {
		seen[e.ID] = true
		if !contains(c.Fake.EndpointIDs(), e.ID) {
			c.Fake.AddEndpoint(e.ID, netip.MustParseAddr(e.IP))
		}
	}
	for _, id := range c.Fake.EndpointIDs() {
		if !seen[id] {
			c.Fake.RemoveEndpoint(id)
		}
	}
	return c.Fake.ListEndpoints(ctx)
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// The endpoints azure-vnet creates on Windows (driven in-process with the
// shipped Windows conflist over the CNI's fake HNS) are the ones the
// NetworkPolicy dataplane finds under its default network name and
// programs: a policy selecting one pod lands on that pod's HNS endpoint
// and decides packets between the two pods' addresses.
func TestFindsTheCNIsEndpoints(t *testing.T) {
	dir := t.TempDir()
	var ifs ipam.Interfaces
	addrs := []ipam.IPAddress{{Address: "10.240.0.4", IsPrimary: true}, {Address: "10.240.1.1"}, {Address: "10.240.1.2"}}
	ifs.Interfaces = []ipam.Interface{{MacAddress: "000D3A000001", IsPrimary: true, IPSubnets: []ipam.IPSubnet{{Prefix: "10.240.0.0/16", IPAddresses: addrs}}}}
	b, _ := json.Marshal(ifs)
	if err := os.WriteFile(filepath.Join(dir, "interfaces.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../deploy/cni/10-azure-windows.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]interface{}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	conf := list["plugins"].([]interface{})[0].(map[string]interface{})
	conf["name"], conf["cniVersion"] = list["name"], list["cniVersion"]
	conf["ipam"] = map[string]interface{}{"type": config.IPAMPlugin, "environment": config.EnvFile, "interfacesFile": filepath.Join(dir, "interfaces.json")}
	conf["stateDir"], conf["logTarget"] = dir, "stderr"
	stdin, _ := json.Marshal(conf)

	f := hns.NewFake()
	var out bytes.Buffer
	plugin := &winplugin.Plugin{Name: config.VnetPlugin, HNS: f, Stdout: &out}
	funcs := plugin.Funcs()
	add := func(containerID, ns string) (string, string) {
		if err := f.CreateNamespace(ns); err != nil {
			t.Fatal(err)
		}
		out.Reset()
		if err := funcs.Add(&skel.CmdArgs{ContainerID: containerID, Netns: ns, IfName: "eth0", StdinData: stdin}); err != nil {
			t.Fatalf("ADD %s: %v", containerID, err)
		}
		var res types100.Result
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatal(err)
		}
		ep, err := f.EndpointByName(hns.EndpointName(containerID, "eth0"))
		if err != nil {
			t.Fatal(err)
		}
		return res.IPs[0].Address.IP.String(), ep.ID
	}
	dbIP, dbEndpoint := add("db-container", "11111111-1111-1111-1111-111111111111")
	webIP, webEndpoint := add("web-container", "22222222-2222-2222-2222-222222222222")

	netName := npmconfig.Default().HNSNetwork
	if netName != hns.NetworkName || list["name"] != hns.NetworkName {
		t.Fatalf("npm looks for HNS network %q, the CNI's shipped conflist makes %q", netName, list["name"])
	}
	h := &cniHNS{network: netName, cni: f, Fake: NewFake()}
	d, err := New(Options{HNS: h})
	if err != nil {
		t.Fatal(err)
	}
	e := translate.NewEngine(translate.Options{IsLocal: func(*corev1.Pod) bool { return true }})
	e.UpsertNamespace(mkNS("default", nil))
	e.UpsertPod(mkPod("default", "db", map[string]string{"app": "db"}, []string{dbIP}))
	e.UpsertPod(mkPod("default", "web", map[string]string{"app": "web"}, []string{webIP}))
	e.UpsertPolicy(mkPolicy("default", "db", sel("app", "db"), ingressOnly,
		[]networkingv1.NetworkPolicyIngressRule{in(peers(podPeer(sel("app", "web"))), tcp(5432))}, nil))
	if err := d.Apply(context.Background(), e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	if len(h.ACLs(dbEndpoint)) == 0 {
		t.Fatalf("no ACL on the db pod's endpoint %s (endpoints %v)", dbEndpoint, h.EndpointIDs())
	}
	if len(h.ACLs(webEndpoint)) != 0 {
		t.Fatalf("ACLs on the unselected web endpoint: %v", h.ACLs(webEndpoint))
	}
	pkt := func(src, dst string, port uint16) policy.Packet {
		return policy.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: policy.TCP, Port: port}
	}
	if !h.Evaluate(pkt(webIP, dbIP, 5432)).Allowed {
		t.Fatalf("web -> db:5432 denied")
	}
	if h.Evaluate(pkt(webIP, dbIP, 22)).Allowed || h.Evaluate(pkt(dbIP, dbIP, 5432)).Allowed {
		t.Fatalf("db admits more than web on 5432")
	}
	// The pod goes: DEL removes the endpoint; the dataplane forgets it.
	if err := funcs.Del(&skel.CmdArgs{ContainerID: "db-container", Netns: "11111111-1111-1111-1111-111111111111", IfName: "eth0", StdinData: stdin}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if contains(h.EndpointIDs(), dbEndpoint) {
		t.Fatalf("the deleted pod's endpoint is still listed")
	}
}
