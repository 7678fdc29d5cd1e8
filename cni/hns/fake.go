package hns

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"sort"
	"sync"
)

// Fake is an in-memory HNS. It enforces the rules of HNS that the plugin
// depends on, so a plugin bug that real HNS would refuse fails here too:
//
//   - an endpoint is in at most one namespace at a time, and attaching it
//     to the namespace it is already in is refused too;
//   - an endpoint's IP is inside one of its network's subnets and unique
//     on the network; its name is unique;
//   - policy shapes HNS rejects: an unknown type, settings that do not
//     decode, OutBoundNAT exceptions and SDNRoute prefixes that are not
//     prefixes, an ACL without Action/Direction or with a non-numeric
//     protocol, a port mapping without ports or protocol, two OutBoundNAT
//     policies on one endpoint, and a host port (protocol, external port,
//     VIP) already mapped by another endpoint;
//   - namespaces exist only when created (the runtime does that, not CNI).
//
// Safe for concurrent use. Its whole content is a JSON document (State),
// which FileFake persists between processes.
type Fake struct {
	mu sync.Mutex
	st State
}

// State is everything a Fake holds.
type State struct {
	Networks   map[string]*Network  `json:"networks"`
	Endpoints  map[string]*Endpoint `json:"endpoints"`
	Namespaces map[string][]string  `json:"namespaces"` // namespace ID -> endpoint IDs
	Seq        int                  `json:"seq"`        // for IDs and MACs
}

func (s *State) normalize() {
	if s.Networks == nil {
		s.Networks = map[string]*Network{}
	}
	if s.Endpoints == nil {
		s.Endpoints = map[string]*Endpoint{}
	}
	if s.Namespaces == nil {
		s.Namespaces = map[string][]string{}
	}
}

var _ HNS = (*Fake)(nil)

// NewFake returns an empty fake HNS.
func NewFake() *Fake {
	f := &Fake{}
	f.st.normalize()
	return f
}

// Snapshot returns a deep copy of the state.
func (f *Fake) Snapshot() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	var c State
	b, _ := json.Marshal(&f.st)
	_ = json.Unmarshal(b, &c)
	c.normalize()
	return c
}

// nextID returns a GUID-shaped ID (deterministic: golden files stay stable
// after IDs are replaced by names).
func (f *Fake) nextID() string {
	f.st.Seq++
	return fmt.Sprintf("00000000-0000-0000-0000-%012x", f.st.Seq)
}

// GUID matches the namespace and object IDs HNS hands out.
var GUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// CreateNamespace creates an HNS namespace, as the container runtime does
// before calling CNI.
func (f *Fake) CreateNamespace(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !GUID.MatchString(id) {
		return Rejected("namespace ID %q is not a GUID", id)
	}
	if _, ok := f.st.Namespaces[id]; !ok {
		f.st.Namespaces[id] = []string{}
	}
	return nil
}

// DeleteNamespace removes a namespace; its endpoints stay (detached), as
// when a runtime removes a sandbox without calling CNI DEL.
func (f *Fake) DeleteNamespace(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ep := range f.st.Namespaces[id] {
		if e := f.st.Endpoints[ep]; e != nil {
			e.Namespace = ""
		}
	}
	delete(f.st.Namespaces, id)
}

// NamespaceEndpoints lists the endpoint IDs attached to a namespace.
func (f *Fake) NamespaceEndpoints(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.st.Namespaces[id]...)
}

// NetworkByName implements HNS.
func (f *Fake) NetworkByName(name string) (*Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id, n := range f.st.Networks {
		if n.Name == name {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("network %q: %w", name, ErrNotFound)
	}
	sort.Strings(ids)
	c := *f.st.Networks[ids[0]]
	return &c, nil
}

// Networks returns copies of all networks sorted by ID.
func (f *Fake) Networks() []Network {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Network
	for _, n := range f.st.Networks {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// CreateNetwork implements HNS.
func (f *Fake) CreateNetwork(n *Network) (*Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch n.Type {
	case NetworkTypeL2Bridge, "L2Tunnel", "Overlay", "NAT", "Transparent", "ICS":
	default:
		return nil, Rejected("network type %q is unknown", n.Type)
	}
	if n.Name == "" {
		return nil, Rejected("network without a name")
	}
	if n.Type == NetworkTypeL2Bridge && len(n.Subnets) == 0 {
		return nil, Rejected("an L2Bridge network needs a subnet")
	}
	for _, s := range n.Subnets {
		_, pn, err := net.ParseCIDR(s.Prefix)
		if err != nil {
			return nil, Rejected("subnet prefix %q: %v", s.Prefix, err)
		}
		if gw := net.ParseIP(s.Gateway); s.Gateway != "" && (gw == nil || !pn.Contains(gw)) {
			return nil, Rejected("gateway %q is not in subnet %s", s.Gateway, s.Prefix)
		}
	}
	c := *n
	c.Subnets = append([]Subnet(nil), n.Subnets...)
	c.ID = f.nextID()
	f.st.Networks[c.ID] = &c
	out := c
	return &out, nil
}

// Endpoints implements HNS.
func (f *Fake) Endpoints(networkID string) ([]*Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.st.Networks[networkID]; !ok {
		return nil, fmt.Errorf("network %s: %w", networkID, ErrNotFound)
	}
	var out []*Endpoint
	for _, e := range f.st.Endpoints {
		if e.NetworkID == networkID {
			out = append(out, copyEndpoint(e))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AllEndpoints returns copies of every endpoint sorted by name.
func (f *Fake) AllEndpoints() []*Endpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Endpoint
	for _, e := range f.st.Endpoints {
		out = append(out, copyEndpoint(e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func copyEndpoint(e *Endpoint) *Endpoint {
	c := *e
	c.Policies = append([]Policy(nil), e.Policies...)
	c.DNS.Search = append([]string(nil), e.DNS.Search...)
	c.DNS.ServerList = append([]string(nil), e.DNS.ServerList...)
	c.DNS.Options = append([]string(nil), e.DNS.Options...)
	return &c
}

// EndpointByName implements HNS.
func (f *Fake) EndpointByName(name string) (*Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.st.Endpoints {
		if e.Name == name {
			return copyEndpoint(e), nil
		}
	}
	return nil, fmt.Errorf("endpoint %q: %w", name, ErrNotFound)
}

// CreateEndpoint implements HNS.
func (f *Fake) CreateEndpoint(e *Endpoint) (*Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.st.Networks[e.NetworkID]
	if n == nil {
		return nil, fmt.Errorf("network %s: %w", e.NetworkID, ErrNotFound)
	}
	if e.Name == "" {
		return nil, Rejected("endpoint without a name")
	}
	ip := net.ParseIP(e.IP)
	if ip == nil {
		return nil, Rejected("endpoint IP %q is not an address", e.IP)
	}
	inSubnet := false
	for _, s := range n.Subnets {
		if _, pn, err := net.ParseCIDR(s.Prefix); err == nil && pn.Contains(ip) {
			inSubnet = true
		}
	}
	if !inSubnet {
		return nil, Rejected("endpoint IP %s is in no subnet of network %s", ip, n.Name)
	}
	for _, o := range f.st.Endpoints {
		if o.Name == e.Name {
			return nil, Rejected("an endpoint named %q exists already", e.Name)
		}
		if o.NetworkID == e.NetworkID && net.ParseIP(o.IP).Equal(ip) {
			return nil, Rejected("IP %s is already used by endpoint %s on network %s", ip, o.Name, n.Name)
		}
	}
	if err := f.checkPolicies(e); err != nil {
		return nil, err
	}
	c := copyEndpoint(e)
	c.ID = f.nextID()
	c.Namespace = ""
	if c.MAC == "" {
		c.MAC = fmt.Sprintf("00-15-5D-%02X-%02X-%02X", byte(f.st.Seq>>16), byte(f.st.Seq>>8), byte(f.st.Seq))
	}
	f.st.Endpoints[c.ID] = c
	return copyEndpoint(c), nil
}

var protocolNumber = regexp.MustCompile(`^[0-9]{1,3}$`)

func (f *Fake) checkPolicies(e *Endpoint) error {
	nat := 0
	for i, p := range e.Policies {
		bad := func(format string, a ...interface{}) error {
			return Rejected("policy %d (%s) of endpoint %s: %s", i, p.Type, e.Name, fmt.Sprintf(format, a...))
		}
		switch p.Type {
		case PolicyOutBoundNAT:
			nat++
			if nat > 1 {
				return bad("a second OutBoundNAT policy")
			}
			var s OutBoundNATSettings
			if err := strictDecode(p.Settings, &s); err != nil {
				return bad("%v", err)
			}
			for _, x := range s.Exceptions {
				if !isPrefixOrIP(x) {
					return bad("exception %q is not an address or prefix", x)
				}
			}
		case PolicySDNRoute:
			var s SDNRouteSettings
			if err := strictDecode(p.Settings, &s); err != nil {
				return bad("%v", err)
			}
			if _, _, err := net.ParseCIDR(s.DestinationPrefix); err != nil {
				return bad("DestinationPrefix %q is not a prefix", s.DestinationPrefix)
			}
		case PolicyACL:
			var s ACLSettings
			if err := strictDecode(p.Settings, &s); err != nil {
				return bad("%v", err)
			}
			if s.Action != "Allow" && s.Action != "Block" {
				return bad("Action %q", s.Action)
			}
			if s.Direction != "In" && s.Direction != "Out" {
				return bad("Direction %q", s.Direction)
			}
			if s.Protocols != "" && !protocolNumber.MatchString(s.Protocols) {
				return bad("Protocols %q is not a protocol number", s.Protocols)
			}
			if s.RuleType != "" && s.RuleType != "Host" && s.RuleType != "Switch" {
				return bad("RuleType %q", s.RuleType)
			}
		case PolicyPortMapping:
			var s PortMappingSettings
			if err := strictDecode(p.Settings, &s); err != nil {
				return bad("%v", err)
			}
			if s.InternalPort == 0 || s.ExternalPort == 0 || (s.Protocol != 6 && s.Protocol != 17) {
				return bad("needs InternalPort, ExternalPort and Protocol 6 or 17")
			}
			if s.VIP != "" && net.ParseIP(s.VIP) == nil {
				return bad("VIP %q", s.VIP)
			}
			if o := f.portOwner(s); o != "" {
				return bad("host port %d/%d is already mapped by endpoint %s", s.ExternalPort, s.Protocol, o)
			}
		default:
			return Rejected("policy %d of endpoint %s: unknown type %q", i, e.Name, p.Type)
		}
	}
	return nil
}

// portOwner is the endpoint already mapping the host port of s ("" none).
// A mapping on every address (no VIP) conflicts with any on that port.
func (f *Fake) portOwner(s PortMappingSettings) string {
	for _, o := range f.st.Endpoints {
		for _, p := range o.Policies {
			if p.Type != PolicyPortMapping {
				continue
			}
			var t PortMappingSettings
			if json.Unmarshal(p.Settings, &t) != nil {
				continue
			}
			if t.Protocol == s.Protocol && t.ExternalPort == s.ExternalPort && (t.VIP == "" || s.VIP == "" || t.VIP == s.VIP) {
				return o.Name
			}
		}
	}
	return ""
}

func strictDecode(b []byte, v interface{}) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("settings do not decode: %v", err)
	}
	return nil
}

func isPrefixOrIP(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	_, _, err := net.ParseCIDR(s)
	return err == nil
}

// DeleteEndpoint implements HNS. An endpoint still attached is detached
// first (HNS deletes it from its compartment).
func (f *Fake) DeleteEndpoint(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.st.Endpoints[id]
	if e == nil {
		return fmt.Errorf("endpoint %s: %w", id, ErrNotFound)
	}
	if e.Namespace != "" {
		f.st.Namespaces[e.Namespace] = remove(f.st.Namespaces[e.Namespace], id)
	}
	delete(f.st.Endpoints, id)
	return nil
}

// AttachEndpoint implements HNS.
func (f *Fake) AttachEndpoint(namespaceID, endpointID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	eps, ok := f.st.Namespaces[namespaceID]
	if !ok {
		return fmt.Errorf("namespace %s: %w", namespaceID, ErrNotFound)
	}
	e := f.st.Endpoints[endpointID]
	if e == nil {
		return fmt.Errorf("endpoint %s: %w", endpointID, ErrNotFound)
	}
	if e.Namespace != "" {
		return Rejected("endpoint %s is already attached to namespace %s", e.Name, e.Namespace)
	}
	e.Namespace = namespaceID
	f.st.Namespaces[namespaceID] = append(eps, endpointID)
	return nil
}

// DetachEndpoint implements HNS.
func (f *Fake) DetachEndpoint(namespaceID, endpointID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.st.Namespaces[namespaceID]; !ok {
		return fmt.Errorf("namespace %s: %w", namespaceID, ErrNotFound)
	}
	e := f.st.Endpoints[endpointID]
	if e == nil {
		return fmt.Errorf("endpoint %s: %w", endpointID, ErrNotFound)
	}
	if e.Namespace != namespaceID {
		return Rejected("endpoint %s is not attached to namespace %s", e.Name, namespaceID)
	}
	e.Namespace = ""
	f.st.Namespaces[namespaceID] = remove(f.st.Namespaces[namespaceID], endpointID)
	return nil
}

func remove(ids []string, id string) []string {
	out := ids[:0]
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}
