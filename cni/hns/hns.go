// Package hns is the part of the Windows Host Networking Service (HNS v2)
// that azure-vnet uses on Windows nodes: an L2Bridge network on the
// node's VNet adapter, one endpoint per pod with its policies, and the
// pod's HNS namespace.
//
// The plugin logic (cni/winplugin) talks to the HNS interface only. The
// real implementation over github.com/Microsoft/hcsshim/hcn is
// hcn_windows.go; Fake implements the interface in memory on every
// platform and enforces HNS's own rules that matter to the plugin, and
// FileFake persists a Fake in a file so that separate plugin processes
// (the way a runtime runs a CNI plugin) share one "HNS" in tests.
package hns

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// NetworkName is the name of the HNS network the shipped Windows conflist
// makes (its "name"; the plugin names the HNS network after the
// configuration). The NetworkPolicy agent's Windows dataplane looks for
// its pods' endpoints on the network of this name by default.
const NetworkName = "azure"

// NetworkTypeL2Bridge is the only network type azure-vnet creates: pods
// are on the VNet subnet's L2 with their own VNet addresses, the host
// rewrites their MAC to the adapter's.
const NetworkTypeL2Bridge = "L2Bridge"

// Policy types (HNS v2 names) the plugin puts on endpoints.
const (
	PolicyOutBoundNAT = "OutBoundNAT"
	PolicySDNRoute    = "SDNRoute"
	PolicyACL         = "ACL"
	PolicyPortMapping = "PortMapping"
)

// Network is an HNS network.
type Network struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	AdapterName string   `json:"adapterName,omitempty"` // the host's NIC (empty: HNS picks the first)
	Subnets     []Subnet `json:"subnets"`
}

// Subnet of a network: an address prefix and its gateway.
type Subnet struct {
	Prefix  string `json:"prefix"`
	Gateway string `json:"gateway"`
}

// DNS are the endpoint's DNS settings (what the pod's resolver uses).
type DNS struct {
	Domain     string   `json:"domain,omitempty"`
	Search     []string `json:"search,omitempty"`
	ServerList []string `json:"serverList,omitempty"`
	Options    []string `json:"options,omitempty"`
}

// Policy is one endpoint policy: its HNS v2 type and settings, the JSON
// HNS receives (the setting structs below).
type Policy struct {
	Type     string          `json:"type"`
	Settings json.RawMessage `json:"settings"`
}

// OutBoundNATSettings is hcn.OutboundNatPolicySetting: traffic leaving
// the endpoint is NATed to the host's address except to Exceptions.
type OutBoundNATSettings struct {
	VirtualIP    string   `json:",omitempty"`
	Exceptions   []string `json:",omitempty"`
	Destinations []string `json:",omitempty"`
}

// SDNRouteSettings is hcn.SDNRoutePolicySetting.
type SDNRouteSettings struct {
	DestinationPrefix string `json:",omitempty"`
	NextHop           string `json:",omitempty"`
	NeedEncap         bool   `json:",omitempty"`
}

// ACLSettings is hcn.AclPolicySetting.
type ACLSettings struct {
	Protocols       string `json:",omitempty"` // one IP protocol number, "" any
	Action          string `json:","`          // Allow, Block
	Direction       string `json:","`          // In, Out
	LocalAddresses  string `json:",omitempty"`
	RemoteAddresses string `json:",omitempty"`
	LocalPorts      string `json:",omitempty"`
	RemotePorts     string `json:",omitempty"`
	RuleType        string `json:",omitempty"` // Host, Switch
	Priority        uint16 `json:",omitempty"`
}

// PortMappingSettings is hcn.PortMappingPolicySetting: the host's
// ExternalPort (on VIP, or every host address) to the endpoint's
// InternalPort.
type PortMappingSettings struct {
	Protocol     uint32 `json:",omitempty"` // 6 TCP, 17 UDP
	InternalPort uint16 `json:",omitempty"`
	ExternalPort uint16 `json:",omitempty"`
	VIP          string `json:",omitempty"`
}

// NewPolicy encodes settings as a policy of type t.
func NewPolicy(t string, settings interface{}) Policy {
	b, err := json.Marshal(settings)
	if err != nil {
		panic(err) // the setting structs always encode
	}
	return Policy{Type: t, Settings: b}
}

// Endpoint is an HNS endpoint: one pod interface.
type Endpoint struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	NetworkID    string   `json:"networkID"`
	IP           string   `json:"ip"`
	PrefixLength uint8    `json:"prefixLength"`
	Gateway      string   `json:"gateway"`
	MAC          string   `json:"mac,omitempty"` // assigned by HNS when empty
	DNS          DNS      `json:"dns"`
	Policies     []Policy `json:"policies,omitempty"`
	// Namespace is the HNS namespace the endpoint is attached to ("" none).
	Namespace string `json:"namespace,omitempty"`
}

// ErrNotFound is returned (wrapped) for a network, endpoint or namespace
// that does not exist.
var ErrNotFound = errors.New("hns: not found")

// RejectedError is HNS refusing a request (a bad policy, an address
// already in use, an endpoint in another namespace): retrying does not
// help.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "hns rejected the request: " + e.Reason }

// Rejected builds a RejectedError.
func Rejected(format string, a ...interface{}) error {
	return &RejectedError{Reason: fmt.Sprintf(format, a...)}
}

// HNS is what azure-vnet needs of the Host Networking Service.
type HNS interface {
	// NetworkByName returns the network of that name (ErrNotFound).
	NetworkByName(name string) (*Network, error)
	// CreateNetwork creates n and returns it with its ID. HNS itself does
	// not refuse a second network of the same name: callers serialize.
	CreateNetwork(n *Network) (*Network, error)
	// Endpoints lists the endpoints of a network.
	Endpoints(networkID string) ([]*Endpoint, error)
	// EndpointByName returns the endpoint of that name (ErrNotFound).
	EndpointByName(name string) (*Endpoint, error)
	// CreateEndpoint creates e on e.NetworkID and returns it with its ID
	// and MAC.
	CreateEndpoint(e *Endpoint) (*Endpoint, error)
	// DeleteEndpoint deletes an endpoint (ErrNotFound if it is gone).
	DeleteEndpoint(id string) error
	// AttachEndpoint adds the endpoint to the namespace (the pod's
	// compartment): ErrNotFound if either is missing.
	AttachEndpoint(namespaceID, endpointID string) error
	// DetachEndpoint removes the endpoint from the namespace.
	DetachEndpoint(namespaceID, endpointID string) error
}

// endpointPrefix starts the name of every endpoint azure-vnet creates.
const endpointPrefix = "acn_"

// EndpointName derives the HNS endpoint's name from the container
// interface: a DEL finds it without any state, and a lost state file is
// rebuilt from the names. The interface name comes first and ends at the
// first '_' (the plugin refuses interface names with '_'; container IDs
// may contain it).
func EndpointName(containerID, ifName string) string {
	return endpointPrefix + ifName + "_" + containerID
}

// ParseEndpointName reverses EndpointName; ok is false for endpoints
// azure-vnet did not create.
func ParseEndpointName(name string) (containerID, ifName string, ok bool) {
	rest, found := strings.CutPrefix(name, endpointPrefix)
	if !found {
		return "", "", false
	}
	ifName, containerID, ok = strings.Cut(rest, "_")
	return containerID, ifName, ok && ifName != "" && containerID != ""
}
