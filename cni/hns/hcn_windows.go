package hns

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/Microsoft/hcsshim/hcn"
)

// HCN is the real HNS, through the HNS v2 API of hcsshim's hcn package.
// It only translates between this package's types and hcn's; every
// decision is the plugin's (cni/winplugin), tested against Fake.
type HCN struct{}

var _ HNS = HCN{}

func notFound(err error, what string) error {
	if hcn.IsNotFoundError(err) || hcn.IsElementNotFoundError(err) {
		return fmt.Errorf("%s: %w (%v)", what, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func fromHCNNetwork(n *hcn.HostComputeNetwork) *Network {
	out := &Network{ID: n.Id, Name: n.Name, Type: string(n.Type)}
	for _, ip := range n.Ipams {
		for _, s := range ip.Subnets {
			sub := Subnet{Prefix: s.IpAddressPrefix}
			for _, r := range s.Routes {
				if r.DestinationPrefix == "0.0.0.0/0" {
					sub.Gateway = r.NextHop
				}
			}
			out.Subnets = append(out.Subnets, sub)
		}
	}
	for _, p := range n.Policies {
		if p.Type == hcn.NetAdapterName {
			var s hcn.NetAdapterNameNetworkPolicySetting
			if json.Unmarshal(p.Settings, &s) == nil {
				out.AdapterName = s.NetworkAdapterName
			}
		}
	}
	return out
}

// NetworkByName implements HNS.
func (HCN) NetworkByName(name string) (*Network, error) {
	n, err := hcn.GetNetworkByName(name)
	if err != nil {
		return nil, notFound(err, "hns network "+name)
	}
	return fromHCNNetwork(n), nil
}

// CreateNetwork implements HNS: the subnets with a default route via
// their gateway, and the adapter as a NetAdapterName policy.
func (HCN) CreateNetwork(in *Network) (*Network, error) {
	n := &hcn.HostComputeNetwork{
		Name:          in.Name,
		Type:          hcn.NetworkType(in.Type),
		SchemaVersion: hcn.SchemaVersion{Major: 2, Minor: 0},
	}
	ipam := hcn.Ipam{Type: "Static"}
	for _, s := range in.Subnets {
		ipam.Subnets = append(ipam.Subnets, hcn.Subnet{
			IpAddressPrefix: s.Prefix,
			Routes:          []hcn.Route{{NextHop: s.Gateway, DestinationPrefix: "0.0.0.0/0"}},
		})
	}
	n.Ipams = []hcn.Ipam{ipam}
	if in.AdapterName != "" {
		b, err := json.Marshal(hcn.NetAdapterNameNetworkPolicySetting{NetworkAdapterName: in.AdapterName})
		if err != nil {
			return nil, err
		}
		n.Policies = append(n.Policies, hcn.NetworkPolicy{Type: hcn.NetAdapterName, Settings: b})
	}
	created, err := n.Create()
	if err != nil {
		return nil, fmt.Errorf("create hns network %s: %w", in.Name, err)
	}
	return fromHCNNetwork(created), nil
}

func fromHCNEndpoint(e *hcn.HostComputeEndpoint) *Endpoint {
	out := &Endpoint{ID: e.Id, Name: e.Name, NetworkID: e.HostComputeNetwork, MAC: e.MacAddress,
		Namespace: e.HostComputeNamespace,
		DNS:       DNS{Domain: e.Dns.Domain, Search: e.Dns.Search, ServerList: e.Dns.ServerList, Options: e.Dns.Options}}
	if len(e.IpConfigurations) > 0 {
		out.IP, out.PrefixLength = e.IpConfigurations[0].IpAddress, e.IpConfigurations[0].PrefixLength
	}
	for _, r := range e.Routes {
		if r.DestinationPrefix == "0.0.0.0/0" {
			out.Gateway = r.NextHop
		}
	}
	for _, p := range e.Policies {
		out.Policies = append(out.Policies, Policy{Type: string(p.Type), Settings: p.Settings})
	}
	return out
}

// Endpoints implements HNS.
func (HCN) Endpoints(networkID string) ([]*Endpoint, error) {
	eps, err := hcn.ListEndpointsOfNetwork(networkID)
	if err != nil {
		return nil, notFound(err, "endpoints of hns network "+networkID)
	}
	out := make([]*Endpoint, 0, len(eps))
	for i := range eps {
		out = append(out, fromHCNEndpoint(&eps[i]))
	}
	return out, nil
}

// EndpointByName implements HNS.
func (HCN) EndpointByName(name string) (*Endpoint, error) {
	e, err := hcn.GetEndpointByName(name)
	if err != nil {
		return nil, notFound(err, "hns endpoint "+name)
	}
	return fromHCNEndpoint(e), nil
}

// CreateEndpoint implements HNS: the address with its prefix, a default
// route via the gateway, DNS and the policies as given.
func (HCN) CreateEndpoint(in *Endpoint) (*Endpoint, error) {
	e := &hcn.HostComputeEndpoint{
		Name:               in.Name,
		HostComputeNetwork: in.NetworkID,
		IpConfigurations:   []hcn.IpConfig{{IpAddress: in.IP, PrefixLength: in.PrefixLength}},
		Routes:             []hcn.Route{{NextHop: in.Gateway, DestinationPrefix: "0.0.0.0/0"}},
		Dns:                hcn.Dns{Domain: in.DNS.Domain, Search: in.DNS.Search, ServerList: in.DNS.ServerList, Options: in.DNS.Options},
		MacAddress:         in.MAC,
		SchemaVersion:      hcn.SchemaVersion{Major: 2, Minor: 0},
	}
	for _, p := range in.Policies {
		e.Policies = append(e.Policies, hcn.EndpointPolicy{Type: hcn.EndpointPolicyType(p.Type), Settings: p.Settings})
	}
	created, err := e.Create()
	if err != nil {
		var nf hcn.NetworkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("create hns endpoint %s: %w", in.Name, ErrNotFound)
		}
		return nil, fmt.Errorf("create hns endpoint %s: %w", in.Name, err)
	}
	return fromHCNEndpoint(created), nil
}

// DeleteEndpoint implements HNS.
func (HCN) DeleteEndpoint(id string) error {
	if err := (&hcn.HostComputeEndpoint{Id: id}).Delete(); err != nil {
		return notFound(err, "delete hns endpoint "+id)
	}
	return nil
}

// AttachEndpoint implements HNS.
func (HCN) AttachEndpoint(namespaceID, endpointID string) error {
	if err := hcn.AddNamespaceEndpoint(namespaceID, endpointID); err != nil {
		return notFound(err, fmt.Sprintf("attach hns endpoint %s to namespace %s", endpointID, namespaceID))
	}
	return nil
}

// DetachEndpoint implements HNS.
func (HCN) DetachEndpoint(namespaceID, endpointID string) error {
	if err := hcn.RemoveNamespaceEndpoint(namespaceID, endpointID); err != nil {
		return notFound(err, fmt.Sprintf("detach hns endpoint %s from namespace %s", endpointID, namespaceID))
	}
	return nil
}
