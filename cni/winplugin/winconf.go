package winplugin

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/hns"
)

// WinConf is what a Windows configuration has beyond config.NetConf
// (parsed from the same stdin): the HNS adapter, the endpoint policies of
// AdditionalArgs, and the runtime's port mappings and DNS.
type WinConf struct {
	// AdapterName is the node's VNet adapter the L2Bridge network is
	// bound to ("Ethernet 2"); empty lets HNS pick the first adapter.
	AdapterName    string          `json:"adapterName,omitempty"`
	AdditionalArgs []AdditionalArg `json:"AdditionalArgs,omitempty"`
	RuntimeConfig  struct {
		PortMappings []PortMapping `json:"portMappings,omitempty"`
		DNS          *RuntimeDNS   `json:"dns,omitempty"`
	} `json:"runtimeConfig,omitempty"`
}

// AdditionalArg is one entry of AdditionalArgs: {"Name":"EndpointPolicy",
// "Value":{"Type":...}}, the Azure CNI's Windows format (HNS v1 shapes).
type AdditionalArg struct {
	Name  string          `json:"Name"`
	Value json.RawMessage `json:"Value"`
}

// v1Policy is the Value of an EndpointPolicy argument: the union of the
// fields of the types accepted.
type v1Policy struct {
	Type string `json:"Type"`
	// OutBoundNAT
	ExceptionList []string `json:"ExceptionList,omitempty"`
	// ROUTE
	DestinationPrefix string `json:"DestinationPrefix,omitempty"`
	NeedEncap         bool   `json:"NeedEncap,omitempty"`
	// ACL
	Protocols       string          `json:"Protocols,omitempty"`
	Action          string          `json:"Action,omitempty"`
	Direction       string          `json:"Direction,omitempty"`
	LocalAddresses  string          `json:"LocalAddresses,omitempty"`
	RemoteAddresses string          `json:"RemoteAddresses,omitempty"`
	LocalPorts      string          `json:"LocalPorts,omitempty"`
	RemotePorts     string          `json:"RemotePorts,omitempty"`
	RuleType        string          `json:"RuleType,omitempty"`
	Priority        json.RawMessage `json:"Priority,omitempty"`
}

// PortMapping is an entry of runtimeConfig.portMappings (capability
// "portMappings").
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// RuntimeDNS is runtimeConfig.dns (capability "dns"): the pod's DNS as the
// runtime computed it (Kubernetes' dnsPolicy), which wins over "dns".
type RuntimeDNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// ParseWin decodes the Windows part of stdin and checks that cfg asks for
// nothing the Windows plugin cannot do. Errors are CNI errors (code 7;
// 6 for JSON that does not decode).
func ParseWin(cfg *config.NetConf) (*WinConf, error) {
	w := &WinConf{}
	if err := json.Unmarshal(cfg.Raw, w); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot decode network config: "+err.Error(), "")
	}
	if cfg.Mode != config.ModeBridge {
		return nil, config.Invalid("mode %q: Windows nodes support %q only (an HNS L2Bridge network)", cfg.Mode, config.ModeBridge)
	}
	if cfg.IPAM.Environment == config.EnvOverlay {
		return nil, config.Invalid("ipam.environment %q is not supported on Windows nodes", config.EnvOverlay)
	}
	if !slices.Equal(cfg.IPAM.IPFamilies, []string{config.IPv4}) {
		return nil, config.Invalid("ipam.ipFamilies %v: Windows nodes support [\"IPv4\"] only", cfg.IPAM.IPFamilies)
	}
	if len(cfg.IPsToRouteViaHost) > 0 {
		return nil, config.Invalid("ipsToRouteViaHost is not supported on Windows nodes (use a ROUTE endpoint policy)")
	}
	if cfg.Master != "" {
		return nil, config.Invalid("master: on Windows nodes the VNet adapter is \"adapterName\"")
	}
	if _, err := w.policies(); err != nil {
		return nil, err
	}
	if _, err := w.portMappingPolicies(); err != nil {
		return nil, err
	}
	if d := w.RuntimeConfig.DNS; d != nil {
		for _, s := range d.Servers {
			if net.ParseIP(s) == nil {
				return nil, config.Invalid("runtimeConfig.dns.servers: %q is not an IP address", s)
			}
		}
	}
	return w, nil
}

// policies translates AdditionalArgs into HNS v2 endpoint policies, in
// their order.
func (w *WinConf) policies() ([]hns.Policy, error) {
	var out []hns.Policy
	nat := 0
	for i, a := range w.AdditionalArgs {
		if a.Name != "EndpointPolicy" {
			return nil, config.Invalid("AdditionalArgs[%d].Name %q: want \"EndpointPolicy\"", i, a.Name)
		}
		var v v1Policy
		if err := json.Unmarshal(a.Value, &v); err != nil {
			return nil, config.Invalid("AdditionalArgs[%d].Value: %v", i, err)
		}
		bad := func(format string, args ...interface{}) error {
			return config.Invalid("AdditionalArgs[%d] (%s): %s", i, v.Type, fmt.Sprintf(format, args...))
		}
		switch strings.ToUpper(v.Type) {
		case "OUTBOUNDNAT":
			nat++
			if nat > 1 {
				return nil, bad("only one OutBoundNAT policy per endpoint")
			}
			for _, x := range v.ExceptionList {
				if _, _, err := net.ParseCIDR(x); err != nil && net.ParseIP(x) == nil {
					return nil, bad("ExceptionList: %q is not an address or CIDR", x)
				}
			}
			out = append(out, hns.NewPolicy(hns.PolicyOutBoundNAT, hns.OutBoundNATSettings{Exceptions: v.ExceptionList}))
		case "ROUTE", "SDNROUTE":
			if _, _, err := net.ParseCIDR(v.DestinationPrefix); err != nil {
				return nil, bad("DestinationPrefix %q: not a CIDR", v.DestinationPrefix)
			}
			out = append(out, hns.NewPolicy(hns.PolicySDNRoute, hns.SDNRouteSettings{DestinationPrefix: v.DestinationPrefix, NeedEncap: v.NeedEncap}))
		case "ACL":
			s, err := aclSettings(v)
			if err != nil {
				return nil, bad("%v", err)
			}
			out = append(out, hns.NewPolicy(hns.PolicyACL, s))
		default:
			return nil, bad("unknown policy type; want OutBoundNAT, ROUTE or ACL")
		}
	}
	return out, nil
}

func aclSettings(v v1Policy) (hns.ACLSettings, error) {
	s := hns.ACLSettings{Protocols: v.Protocols, LocalAddresses: v.LocalAddresses, RemoteAddresses: v.RemoteAddresses,
		LocalPorts: v.LocalPorts, RemotePorts: v.RemotePorts, RuleType: v.RuleType}
	var err error
	if s.Action, err = oneOf("Action", v.Action, "Allow", "Block"); err != nil {
		return s, err
	}
	if s.Direction, err = oneOf("Direction", v.Direction, "In", "Out"); err != nil {
		return s, err
	}
	ruleType := v.RuleType
	if ruleType == "" {
		ruleType = "Switch" // HNS's default: the rule applies on the vSwitch port
	}
	if s.RuleType, err = oneOf("RuleType", ruleType, "Switch", "Host"); err != nil {
		return s, err
	}
	if v.Protocols != "" {
		n, err := strconv.Atoi(v.Protocols)
		if err != nil || n < 0 || n > 255 {
			return s, fmt.Errorf("Protocols %q: want one IP protocol number (6 TCP, 17 UDP)", v.Protocols)
		}
	}
	for _, f := range []struct{ name, val string }{{"LocalAddresses", v.LocalAddresses}, {"RemoteAddresses", v.RemoteAddresses}} {
		for _, x := range splitList(f.val) {
			if _, _, err := net.ParseCIDR(x); err != nil && net.ParseIP(x) == nil {
				return s, fmt.Errorf("%s: %q is not an address or CIDR", f.name, x)
			}
		}
	}
	for _, f := range []struct{ name, val string }{{"LocalPorts", v.LocalPorts}, {"RemotePorts", v.RemotePorts}} {
		for _, x := range splitList(f.val) {
			lo, hi, isRange := strings.Cut(x, "-")
			if !validPort(lo) || (isRange && !validPort(hi)) {
				return s, fmt.Errorf("%s: %q is not a port or port range", f.name, x)
			}
		}
	}
	if len(v.Priority) > 0 {
		var p float64
		if err := json.Unmarshal(v.Priority, &p); err != nil {
			var ps string
			if json.Unmarshal(v.Priority, &ps) != nil {
				return s, fmt.Errorf("Priority %s: want a number", v.Priority)
			}
			if p, err = strconv.ParseFloat(ps, 64); err != nil {
				return s, fmt.Errorf("Priority %q: want a number", ps)
			}
		}
		if p < 1 || p > 65500 || p != float64(int(p)) {
			return s, fmt.Errorf("Priority %v: want a whole number from 1 to 65500", p)
		}
		s.Priority = uint16(p)
	}
	return s, nil
}

func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	for _, x := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(x))
	}
	return out
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// portMappingPolicies translates runtimeConfig.portMappings into HNS
// PortMapping policies (the host's port NATed to the pod's).
func (w *WinConf) portMappingPolicies() ([]hns.Policy, error) {
	var out []hns.Policy
	for i, m := range w.RuntimeConfig.PortMappings {
		var proto uint32
		switch strings.ToLower(m.Protocol) {
		case "", "tcp":
			proto = 6
		case "udp":
			proto = 17
		default:
			return nil, config.Invalid("runtimeConfig.portMappings[%d].protocol %q: want tcp or udp", i, m.Protocol)
		}
		if m.HostPort < 1 || m.HostPort > 65535 || m.ContainerPort < 1 || m.ContainerPort > 65535 {
			return nil, config.Invalid("runtimeConfig.portMappings[%d]: hostPort %d and containerPort %d must be 1-65535", i, m.HostPort, m.ContainerPort)
		}
		if m.HostIP != "" && net.ParseIP(m.HostIP) == nil {
			return nil, config.Invalid("runtimeConfig.portMappings[%d].hostIP %q: not an IP address", i, m.HostIP)
		}
		vip := m.HostIP
		if vip == "0.0.0.0" {
			vip = ""
		}
		out = append(out, hns.NewPolicy(hns.PolicyPortMapping, hns.PortMappingSettings{Protocol: proto,
			InternalPort: uint16(m.ContainerPort), ExternalPort: uint16(m.HostPort), VIP: vip}))
	}
	return out, nil
}

// EndpointPolicies are all policies of a pod's endpoint: AdditionalArgs in
// order, then the port mappings.
func (w *WinConf) EndpointPolicies() ([]hns.Policy, error) {
	p, err := w.policies()
	if err != nil {
		return nil, err
	}
	pm, err := w.portMappingPolicies()
	if err != nil {
		return nil, err
	}
	return append(p, pm...), nil
}

// EndpointDNS is the endpoint's DNS: runtimeConfig.dns if the runtime sent
// it (capability "dns"), else the configuration's "dns".
func (w *WinConf) EndpointDNS(cfg *config.NetConf) hns.DNS {
	if d := w.RuntimeConfig.DNS; d != nil && (len(d.Servers) > 0 || len(d.Searches) > 0) {
		out := hns.DNS{ServerList: d.Servers, Search: d.Searches, Options: d.Options}
		if len(d.Searches) > 0 {
			out.Domain = d.Searches[0]
		}
		return out
	}
	return hns.DNS{Domain: cfg.DNS.Domain, Search: cfg.DNS.Search, ServerList: cfg.DNS.Nameservers, Options: cfg.DNS.Options}
}

// ResultDNS is EndpointDNS in the result's form.
func ResultDNS(d hns.DNS) types.DNS {
	return types.DNS{Nameservers: d.ServerList, Domain: d.Domain, Search: d.Search, Options: d.Options}
}

// oneOf returns the choice v names, compared without case, spelled as HNS
// expects it; the conflist may write "allow" or "ALLOW".
func oneOf(field, v, first, second string) (string, error) {
	for _, c := range []string{first, second} {
		if strings.EqualFold(v, c) {
			return c, nil
		}
	}
	return "", fmt.Errorf("%s %q: want %s or %s", field, v, first, second)
}
