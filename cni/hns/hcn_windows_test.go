//go:build windows

package hns

import (
	"errors"
	"os"
	"testing"

	"github.com/Microsoft/hcsshim/hcn"
)

// TestHCNRoundTrip runs against the real HNS of a Windows host (skipped
// elsewhere and unless ACN_HNS_TEST=1, as it needs Administrator and
// creates objects): a NAT network (no adapter is taken over), an endpoint
// with each policy type the plugin writes and DNS, attached to a fresh
// namespace; everything is read back through this package as the plugin
// reads it, then removed.
func TestHCNRoundTrip(t *testing.T) {
	if os.Getenv("ACN_HNS_TEST") != "1" {
		t.Skip("ACN_HNS_TEST=1 not set: this test creates HNS objects on this host (run as Administrator on a Windows node)")
	}
	h := HCN{}
	name := "acn-roundtrip"
	if old, err := h.NetworkByName(name); err == nil {
		_ = (&hcn.HostComputeNetwork{Id: old.ID}).Delete()
	}
	nw, err := h.CreateNetwork(&Network{Name: name, Type: "NAT", Subnets: []Subnet{{Prefix: "172.28.250.0/24", Gateway: "172.28.250.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = (&hcn.HostComputeNetwork{Id: nw.ID}).Delete() }()
	got, err := h.NetworkByName(name)
	if err != nil || got.ID != nw.ID || len(got.Subnets) != 1 || got.Subnets[0].Prefix != "172.28.250.0/24" {
		t.Fatalf("network read back: %+v %v", got, err)
	}
	ns, err := (&hcn.HostComputeNamespace{Type: hcn.NamespaceTypeHostDefault, SchemaVersion: hcn.SchemaVersion{Major: 2}}).Create()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ns.Delete() }()
	policies := []Policy{
		NewPolicy(PolicyOutBoundNAT, OutBoundNATSettings{Exceptions: []string{"172.28.0.0/16"}}),
		NewPolicy(PolicySDNRoute, SDNRouteSettings{DestinationPrefix: "10.0.0.0/16", NeedEncap: true}),
		NewPolicy(PolicyACL, ACLSettings{Action: "Allow", Direction: "In", RuleType: "Switch", Priority: 200}),
		NewPolicy(PolicyPortMapping, PortMappingSettings{Protocol: 6, InternalPort: 80, ExternalPort: 38080}),
	}
	ep, err := h.CreateEndpoint(&Endpoint{Name: EndpointName("roundtrip", "eth0"), NetworkID: nw.ID, IP: "172.28.250.10", PrefixLength: 24,
		Gateway: "172.28.250.1", DNS: DNS{ServerList: []string{"10.0.0.10"}, Search: []string{"svc.cluster.local"}}, Policies: policies})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.DeleteEndpoint(ep.ID) }()
	if err := h.AttachEndpoint(ns.Id, ep.ID); err != nil {
		t.Fatal(err)
	}
	back, err := h.EndpointByName(ep.Name)
	if err != nil {
		t.Fatal(err)
	}
	if back.IP != "172.28.250.10" || back.PrefixLength != 24 || back.Gateway != "172.28.250.1" || back.MAC == "" {
		t.Fatalf("endpoint read back: %+v", back)
	}
	for _, want := range []string{PolicyOutBoundNAT, PolicySDNRoute, PolicyACL, PolicyPortMapping} {
		found := false
		for _, p := range back.Policies {
			found = found || p.Type == want
		}
		if !found {
			t.Errorf("policy %s not read back: %+v", want, back.Policies)
		}
	}
	ids, err := hcn.GetNamespaceEndpointIds(ns.Id)
	if err != nil || len(ids) != 1 {
		t.Fatalf("namespace endpoints: %v %v", ids, err)
	}
	eps, err := h.Endpoints(nw.ID)
	if err != nil || len(eps) != 1 {
		t.Fatalf("endpoints of the network: %v %v", eps, err)
	}
	if err := h.DetachEndpoint(ns.Id, ep.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteEndpoint(ep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.EndpointByName(ep.Name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted endpoint: %v, want ErrNotFound", err)
	}
}
