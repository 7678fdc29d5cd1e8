//go:build windows

package hnsacl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/Microsoft/hcsshim/hcn"

	"github.com/open-acn/acn/cni/hns"
)

// HCNOptions configure the real HNS client.
type HCNOptions struct {
	// NetworkName is the HNS network whose endpoints are the pods and that
	// holds the SetPolicies; default hns.NetworkName, the network azure-vnet
	// creates with the shipped Windows conflist.
	NetworkName string
	// IngressPeerInRemote puts the peer of an In ACL in RemoteAddresses
	// and the endpoint's own addresses in LocalAddresses (the package's
	// naming). When false (default), In ACLs are sent the way the reference
	// azure-npm sends them with SetPolicy IDs: the source (the peer) in
	// LocalAddresses and the destination in RemoteAddresses. Out ACLs are
	// the same either way (source local, destination remote). Ports do not
	// move: the destination port is LocalPorts for In, RemotePorts for Out.
	IngressPeerInRemote bool
}

// HCN implements HNS over github.com/Microsoft/hcsshim/hcn.
type HCN struct {
	opts      HCNOptions
	wire      Wire
	networkID string
}

var _ HNS = (*HCN)(nil)

// NewHCN finds the network and returns the client.
func NewHCN(o HCNOptions) (*HCN, error) {
	if o.NetworkName == "" {
		o.NetworkName = hns.NetworkName
	}
	nw, err := hcn.GetNetworkByName(o.NetworkName)
	if err != nil {
		return nil, fmt.Errorf("hns network %q: %w", o.NetworkName, err)
	}
	return &HCN{opts: o, wire: Wire{IngressPeerInRemote: o.IngressPeerInRemote}, networkID: nw.Id}, nil
}

// ListEndpoints implements HNS: the local endpoints of the network.
func (h *HCN) ListEndpoints(context.Context) ([]Endpoint, error) {
	eps, err := hcn.ListEndpointsOfNetwork(h.networkID)
	if err != nil {
		return nil, err
	}
	var out []Endpoint
	for _, e := range eps {
		if e.Flags&hcn.EndpointFlagsRemoteEndpoint != 0 {
			continue
		}
		ep := Endpoint{ID: e.Id}
		for _, c := range e.IpConfigurations {
			if a, err := netip.ParseAddr(c.IpAddress); err == nil {
				ep.IPs = append(ep.IPs, a.Unmap())
			}
		}
		for _, p := range e.Policies {
			if p.Type != hcn.ACL {
				continue
			}
			var s WireACL
			if err := json.Unmarshal(p.Settings, &s); err != nil || !strings.HasPrefix(s.ID, Prefix) {
				continue
			}
			ep.ACLs = append(ep.ACLs, h.wire.FromACL(s))
		}
		out = append(out, ep)
	}
	return out, nil
}

// SetPolicies implements HNS.
func (h *HCN) SetPolicies(context.Context) ([]SetPolicy, error) {
	nw, err := hcn.GetNetworkByID(h.networkID)
	if err != nil {
		return nil, err
	}
	var out []SetPolicy
	for _, p := range nw.Policies {
		if p.Type != hcn.SetPolicy {
			continue
		}
		var s WireSetPolicy
		if err := json.Unmarshal(p.Settings, &s); err != nil || !strings.HasPrefix(s.ID, Prefix) {
			continue
		}
		out = append(out, h.wire.FromSetPolicy(s))
	}
	return out, nil
}

func requestType(op Op) hcn.RequestType {
	switch op {
	case OpRemove:
		return hcn.RequestTypeRemove
	case OpUpdate:
		return hcn.RequestTypeUpdate
	default:
		return hcn.RequestTypeAdd
	}
}

// ModifySetPolicies implements HNS: one ModifyNetworkSettings call.
func (h *HCN) ModifySetPolicies(_ context.Context, op Op, sets []SetPolicy) error {
	req := hcn.PolicyNetworkRequest{}
	for _, s := range sets {
		raw, err := json.Marshal(h.wire.SetPolicy(s))
		if err != nil {
			return err
		}
		req.Policies = append(req.Policies, hcn.NetworkPolicy{Type: hcn.SetPolicy, Settings: raw})
	}
	settings, err := json.Marshal(req)
	if err != nil {
		return err
	}
	nw := &hcn.HostComputeNetwork{Id: h.networkID}
	return nw.ModifyNetworkSettings(&hcn.ModifyNetworkSettingRequest{ResourceType: hcn.NetworkResourceTypePolicy, RequestType: requestType(op), Settings: settings})
}

// ModifyACLs implements HNS. Add is one ModifyEndpointSettings Add
// request with the ACLs. HNS does not remove endpoint policies reliably
// with a Remove request (the reference azure-npm does not use it either):
// Remove reads the endpoint and sends one Update request with its policies
// minus the ACLs of those IDs (the endpoint's other policies first, as the
// reference does).
func (h *HCN) ModifyACLs(_ context.Context, endpointID string, op Op, acls []ACL) error {
	req := hcn.PolicyEndpointRequest{}
	reqType := hcn.RequestTypeAdd
	switch op {
	case OpAdd:
		for _, a := range acls {
			raw, err := json.Marshal(h.wire.ACL(a))
			if err != nil {
				return err
			}
			req.Policies = append(req.Policies, hcn.EndpointPolicy{Type: hcn.ACL, Settings: raw})
		}
	case OpRemove:
		ep, err := hcn.GetEndpointByID(endpointID)
		if err != nil {
			return notFound(err)
		}
		drop := map[string]bool{}
		for _, a := range acls {
			drop[a.ID] = true
		}
		var others, kept []hcn.EndpointPolicy
		for _, p := range ep.Policies {
			if p.Type != hcn.ACL {
				others = append(others, p)
				continue
			}
			var s WireACL
			if json.Unmarshal(p.Settings, &s) == nil && drop[s.ID] {
				continue
			}
			kept = append(kept, p)
		}
		req.Policies = append(others, kept...)
		reqType = hcn.RequestTypeUpdate
	default:
		return fmt.Errorf("hns acl op %q", op)
	}
	settings, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return notFound(hcn.ModifyEndpointSettings(endpointID, &hcn.ModifyEndpointSettingRequest{ResourceType: hcn.EndpointResourceTypePolicy, RequestType: reqType, Settings: settings}))
}

// notFound wraps HNS's not-found errors in ErrNotFound.
func notFound(err error) error {
	if err != nil && (hcn.IsNotFoundError(err) || hcn.IsElementNotFoundError(err) || strings.Contains(err.Error(), "endpoint was not found")) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}
