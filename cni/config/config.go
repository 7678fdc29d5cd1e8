// Package config parses and validates the network configuration that the
// container runtime hands to azure-vnet and azure-vnet-ipam on stdin.
//
// Every mistake gets its own error naming the field and what is accepted,
// returned as a CNI error with code 7 (invalid network config) so the
// runtime shows the user something actionable. Nothing touches the kernel
// or the state files before a configuration has passed Parse.
package config

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// Plugin type names.
const (
	VnetPlugin = "azure-vnet"
	IPAMPlugin = "azure-vnet-ipam"
)

// SpecVersions are the CNI spec versions both plugins speak.
var SpecVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// Modes of azure-vnet.
const (
	ModeBridge      = "bridge"
	ModeTransparent = "transparent"
)

// IPAM environments (address sources).
const (
	EnvAzure = "azure"
	EnvFile  = "file"
	EnvMAS   = "mas" // Azure Stack: same JSON file as EnvFile
	// EnvOverlay: pods get addresses from the node's block of a private
	// cluster CIDR (ipam.clusterCIDR), read from ipam.podCIDRFile or from
	// the Kubernetes Node's spec.podCIDRs (ipam.kubeconfig), or given
	// statically as ipam.subnet.
	EnvOverlay = "overlay"
)

// Defaults, overridable per field in the configuration (and, for paths,
// with the environment variables below so tests never touch /var).
const (
	DefaultBridge        = "azure0"
	DefaultQueryURL      = "http://168.63.129.16/machine/plugins?comp=nmagent&type=getinterfaceinfov1"
	DefaultQueryInterval = 30 * time.Second
	DefaultReuseCooldown = 30 * time.Second
	DefaultLockTimeout   = 60 * time.Second
	// MaxOverlayBlockPrefix is the smallest block accepted in overlay
	// mode: a /30 still has two usable addresses.
	MaxOverlayBlockPrefix = 30
)

// EnvNodeName names the node in overlay mode when ipam.nodeName is unset
// (the kubelet's convention); the hostname is the last resort.
const EnvNodeName = "K8S_NODE_NAME"

// Environment variables that override default paths (the config fields win).
const (
	EnvStateDir = "ACN_CNI_STATE_DIR"
	EnvLogFile  = "ACN_CNI_LOG_FILE"
)

// Log targets accepted in logTarget. "syslog" is accepted for configs
// written for the reference plugins and logs to the file.
const (
	LogTargetFile   = "logfile"
	LogTargetStderr = "stderr"
	LogTargetSyslog = "syslog"
)

// Forbidden lists the ranges not allowed for pod or VNet addresses: the
// IPv4 ranges AKS reserves, and IPv6 link-local, multicast, loopback and
// the documentation prefix.
var Forbidden = mustCIDRs("169.254.0.0/16", "172.30.0.0/16", "172.31.0.0/16", "192.0.2.0/24",
	"fe80::/10", "ff00::/8", "::1/128", "2001:db8::/32")

// forbiddenList is Forbidden for messages.
const forbiddenList = "169.254.0.0/16, 172.30.0.0/16, 172.31.0.0/16, 192.0.2.0/24, fe80::/10, ff00::/8, ::1/128, 2001:db8::/32"

// IP families, as Kubernetes spells them (Service spec.ipFamilies).
const (
	IPv4 = "IPv4"
	IPv6 = "IPv6"
)

// FamilyOf is the family of ip.
func FamilyOf(ip net.IP) string {
	if ip.To4() != nil {
		return IPv4
	}
	return IPv6
}

// MaxOverlayBlockPrefix6 and MinOverlayBlockPrefix6 bound an IPv6 overlay
// block: at least two addresses, at most a /64 (offsets fit 64 bits).
const (
	MaxOverlayBlockPrefix6 = 126
	MinOverlayBlockPrefix6 = 64
)

// Duration accepts a JSON number of seconds (the reference format) or a Go
// duration string ("30s", "1m").
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err == nil {
		*d = Duration(time.Duration(n * float64(time.Second)))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want seconds or a duration string like \"30s\", got %s", string(b))
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(time.Duration(secs * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want seconds or a duration string like \"30s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// IPAM is the ipam section.
type IPAM struct {
	Type          string   `json:"type"`
	Environment   string   `json:"environment,omitempty"`
	Subnet        string   `json:"subnet,omitempty"`
	IPAddress     string   `json:"ipAddress,omitempty"`
	QueryInterval Duration `json:"queryInterval,omitempty"`
	// Extensions (not in the reference plugin).
	QueryURL       string   `json:"queryUrl,omitempty"`       // azure source endpoint
	InterfacesFile string   `json:"interfacesFile,omitempty"` // file/mas source path
	ReuseCooldown  Duration `json:"reuseCooldown,omitempty"`  // before a released IP is handed out again
	// IPFamilies are the families a pod gets an address of, the primary
	// (listed first in the result) first: ["IPv4"] (default), ["IPv6"],
	// ["IPv4","IPv6"] or ["IPv6","IPv4"].
	IPFamilies []string `json:"ipFamilies,omitempty"`
	// Overlay (environment "overlay").
	ClusterCIDR  string   `json:"clusterCIDR,omitempty"`  // the private pod CIDR of the cluster, one per family, comma-separated (required)
	SNATFamilies []string `json:"snatFamilies,omitempty"` // families whose traffic leaving the cluster is SNATed (default: all of ipFamilies)
	PodCIDRFile  string   `json:"podCIDRFile,omitempty"`  // file naming the node's block
	Kubeconfig   string   `json:"kubeconfig,omitempty"`   // read the block from the Node's spec.podCIDRs
	NodeName     string   `json:"nodeName,omitempty"`     // the Node to read (default $K8S_NODE_NAME, hostname)

	// Parsed forms, filled by Parse.
	SubnetNets      []*net.IPNet `json:"-"` // ipam.subnet, at most one per family
	RequestedIP     net.IP       `json:"-"`
	ClusterCIDRNets []*net.IPNet `json:"-"` // ipam.clusterCIDR, one per family of ipFamilies (overlay)
}

// SubnetFor is the ipam.subnet of a family, or nil.
func (i *IPAM) SubnetFor(family string) *net.IPNet { return netOfFamily(i.SubnetNets, family) }

// ClusterCIDRFor is the cluster CIDR of a family, or nil.
func (i *IPAM) ClusterCIDRFor(family string) *net.IPNet {
	return netOfFamily(i.ClusterCIDRNets, family)
}

// SNAT says whether overlay traffic of a family leaving the cluster CIDR
// is SNATed to the node.
func (i *IPAM) SNAT(family string) bool {
	if i.SNATFamilies == nil {
		return true
	}
	return slices.Contains(i.SNATFamilies, family)
}

func netOfFamily(nets []*net.IPNet, family string) *net.IPNet {
	for _, n := range nets {
		if FamilyOf(n.IP) == family {
			return n
		}
	}
	return nil
}

// NetConf is the whole plugin configuration.
type NetConf struct {
	CNIVersion        string          `json:"cniVersion"`
	Name              string          `json:"name"`
	Type              string          `json:"type"`
	Capabilities      map[string]bool `json:"capabilities,omitempty"`
	IPAM              IPAM            `json:"ipam"`
	DNS               types.DNS       `json:"dns"`
	Mode              string          `json:"mode,omitempty"`
	Master            string          `json:"master,omitempty"`
	Bridge            string          `json:"bridge,omitempty"`
	LogLevel          string          `json:"logLevel,omitempty"`
	LogTarget         string          `json:"logTarget,omitempty"`
	IPsToRouteViaHost []string        `json:"ipsToRouteViaHost,omitempty"`
	// Extensions: where state and logs go (tests point them at a temp dir).
	StateDir    string   `json:"stateDir,omitempty"`
	LogFile     string   `json:"logFile,omitempty"`
	LockTimeout Duration `json:"lockTimeout,omitempty"`

	RawPrevResult    map[string]interface{} `json:"prevResult,omitempty"`
	ValidAttachments []types.GCAttachment   `json:"cni.dev/valid-attachments,omitempty"`
	// LegacyAttachments is the key of the first CNI 1.1 draft; libcni still sends it.
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`

	// Parsed forms, filled by Parse.
	RoutedViaHost []net.IP `json:"-"`
	Raw           []byte   `json:"-"`
}

// Invalid returns a CNI "invalid network config" error (code 7).
func Invalid(format string, a ...interface{}) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, "invalid network config: "+fmt.Sprintf(format, a...), "")
}

// Parse decodes stdin for the named plugin (VnetPlugin or IPAMPlugin),
// applies defaults and validates every field. The error is a *types.Error:
// code 6 for JSON that does not decode, 7 for a wrong value.
func Parse(stdin []byte, plugin string) (*NetConf, error) {
	c := &NetConf{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot decode network config: "+err.Error(), "")
	}
	c.Raw = stdin
	if err := c.defaults(); err != nil {
		return nil, err
	}
	if err := c.validate(plugin); err != nil {
		return nil, err
	}
	return c, nil
}

// ForCleanup reads what a DEL needs from a configuration that Parse
// rejected: where state and logs live and how long to wait for the lock.
// Each field is decoded on its own and one that does not decode keeps
// its default, so no mistake elsewhere in the file (or a file that is
// not JSON at all) can stop a DEL from cleaning up by container ID.
func ForCleanup(stdin []byte) *NetConf {
	c := &NetConf{Raw: stdin}
	var fields map[string]json.RawMessage
	if json.Unmarshal(stdin, &fields) == nil {
		for name, dst := range map[string]interface{}{
			"cniVersion": &c.CNIVersion, "name": &c.Name, "type": &c.Type,
			"stateDir": &c.StateDir, "logFile": &c.LogFile, "logLevel": &c.LogLevel,
			"logTarget": &c.LogTarget, "lockTimeout": &c.LockTimeout,
		} {
			if raw, ok := fields[name]; ok {
				_ = json.Unmarshal(raw, dst)
			}
		}
	}
	if c.LockTimeout < 0 {
		c.LockTimeout = 0
	}
	if validLogLevel(c.LogLevel) != nil {
		c.LogLevel = ""
	}
	_ = c.defaults()
	return c
}

func (c *NetConf) defaults() error {
	if c.Mode == "" {
		c.Mode = ModeBridge // the reference plugin's default
		if c.IPAM.Environment == EnvOverlay {
			c.Mode = ModeTransparent // the only mode overlay supports
		}
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.IPAM.Environment == "" {
		c.IPAM.Environment = EnvAzure
	}
	if c.IPAM.QueryURL == "" {
		c.IPAM.QueryURL = DefaultQueryURL
	}
	if c.IPAM.InterfacesFile == "" {
		c.IPAM.InterfacesFile = DefaultInterfacesFile
	}
	if len(c.IPAM.IPFamilies) == 0 {
		c.IPAM.IPFamilies = []string{IPv4}
	}
	if c.IPAM.QueryInterval == 0 {
		c.IPAM.QueryInterval = Duration(DefaultQueryInterval)
	}
	if c.IPAM.ReuseCooldown == 0 {
		c.IPAM.ReuseCooldown = Duration(DefaultReuseCooldown)
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = Duration(DefaultLockTimeout)
	}
	if c.StateDir == "" {
		c.StateDir = os.Getenv(EnvStateDir)
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.LogFile == "" {
		c.LogFile = os.Getenv(EnvLogFile)
	}
	return nil
}

func (c *NetConf) validate(plugin string) error {
	if !slices.Contains(SpecVersions, c.CNIVersion) {
		return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("cniVersion %q: want one of %s", c.CNIVersion, strings.Join(SpecVersions, ", ")), "")
	}
	if c.Name == "" {
		return Invalid("name: missing")
	}
	if c.Type == "" {
		return Invalid("type: missing")
	}
	if plugin == VnetPlugin {
		switch c.Mode {
		case ModeBridge, ModeTransparent:
		default:
			return Invalid("mode %q: want %q or %q", c.Mode, ModeBridge, ModeTransparent)
		}
		if err := validIfName("bridge", c.Bridge); err != nil {
			return err
		}
		if c.Master != "" {
			if err := validIfName("master", c.Master); err != nil {
				return err
			}
		}
	}
	if err := validLogLevel(c.LogLevel); err != nil {
		return err
	}
	switch strings.ToLower(c.LogTarget) {
	case "", LogTargetFile, LogTargetStderr, LogTargetSyslog:
	default:
		return Invalid("logTarget %q: want %q or %q", c.LogTarget, LogTargetFile, LogTargetStderr)
	}
	if c.IPAM.Type == "" {
		return Invalid("ipam: missing; set ipam.type to %q", IPAMPlugin)
	}
	if plugin == VnetPlugin && c.IPAM.Type != IPAMPlugin {
		return Invalid("ipam.type %q: azure-vnet works with %q only", c.IPAM.Type, IPAMPlugin)
	}
	switch c.IPAM.Environment {
	case EnvAzure, EnvFile, EnvMAS, EnvOverlay:
	default:
		return Invalid("ipam.environment %q: want %q, %q, %q or %q", c.IPAM.Environment, EnvAzure, EnvFile, EnvMAS, EnvOverlay)
	}
	if err := c.validateFamilies(); err != nil {
		return err
	}
	if c.IPAM.Subnet != "" {
		nets, err := c.familyCIDRs("ipam.subnet", c.IPAM.Subnet, "10.240.0.0/16")
		if err != nil {
			return err
		}
		c.IPAM.SubnetNets = nets
	}
	if c.IPAM.Environment == EnvOverlay {
		if err := c.validateOverlay(plugin); err != nil {
			return err
		}
	} else if c.IPAM.ClusterCIDR != "" || c.IPAM.PodCIDRFile != "" || c.IPAM.Kubeconfig != "" {
		return Invalid("ipam.clusterCIDR, ipam.podCIDRFile and ipam.kubeconfig apply to ipam.environment %q only (environment is %q)", EnvOverlay, c.IPAM.Environment)
	}
	if c.IPAM.IPAddress != "" {
		ip := net.ParseIP(c.IPAM.IPAddress)
		if ip == nil {
			return Invalid("ipam.ipAddress %q: not an IP address", c.IPAM.IPAddress)
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		fam := FamilyOf(ip)
		if f := ForbiddenOverlap(&net.IPNet{IP: ip, Mask: net.CIDRMask(len(ip)*8, len(ip)*8)}); f != nil {
			return Invalid("ipam.ipAddress %s is in %s, a forbidden range", ip, f)
		}
		if !slices.Contains(c.IPAM.IPFamilies, fam) {
			return Invalid("ipam.ipAddress %s is %s, but ipam.ipFamilies %v does not ask for %s", ip, fam, c.IPAM.IPFamilies, fam)
		}
		if sn := c.IPAM.SubnetFor(fam); sn != nil && !sn.Contains(ip) {
			return Invalid("ipam.ipAddress %s is not in ipam.subnet %s", ip, sn)
		}
		if cl := c.IPAM.ClusterCIDRFor(fam); cl != nil && !cl.Contains(ip) {
			return Invalid("ipam.ipAddress %s is not in ipam.clusterCIDR %s", ip, cl)
		}
		c.IPAM.RequestedIP = ip
	}
	if c.IPAM.QueryInterval < 0 {
		return Invalid("ipam.queryInterval must not be negative")
	}
	if c.IPAM.ReuseCooldown < 0 {
		return Invalid("ipam.reuseCooldown must not be negative")
	}
	if c.IPAM.Environment == EnvAzure && !strings.HasPrefix(c.IPAM.QueryURL, "http://") && !strings.HasPrefix(c.IPAM.QueryURL, "https://") {
		return Invalid("ipam.queryUrl %q: want an http:// or https:// URL", c.IPAM.QueryURL)
	}
	for _, s := range c.IPsToRouteViaHost {
		ip := net.ParseIP(s).To4()
		if ip == nil {
			return Invalid("ipsToRouteViaHost: %q is not an IPv4 address", s)
		}
		c.RoutedViaHost = append(c.RoutedViaHost, ip)
	}
	for _, s := range c.DNS.Nameservers {
		if net.ParseIP(s) == nil {
			return Invalid("dns.nameservers: %q is not an IP address", s)
		}
	}
	if c.LockTimeout < 0 {
		return Invalid("lockTimeout must not be negative")
	}
	return nil
}

// validateOverlay checks the overlay fields: a cluster CIDR outside the
// forbidden ranges, exactly one source of the node's block, and (for
// azure-vnet) transparent mode. A static block (ipam.subnet) must lie in
// the cluster CIDR; a block read from the file or the Node is checked
// the same way when it is read (ValidateBlock).
func (c *NetConf) validateOverlay(plugin string) error {
	if plugin == VnetPlugin && c.Mode != ModeTransparent {
		return Invalid("mode %q: ipam.environment %q works with mode %q only", c.Mode, EnvOverlay, ModeTransparent)
	}
	if c.IPAM.ClusterCIDR == "" {
		return Invalid("ipam.clusterCIDR: missing; overlay mode needs the cluster's pod CIDR, e.g. 10.244.0.0/16 (one per family, comma-separated)")
	}
	cls, err := c.familyCIDRs("ipam.clusterCIDR", c.IPAM.ClusterCIDR, "10.244.0.0/16")
	if err != nil {
		return err
	}
	for _, fam := range c.IPAM.IPFamilies {
		if netOfFamily(cls, fam) == nil {
			return Invalid("ipam.ipFamilies asks for %s but ipam.clusterCIDR %q has no %s CIDR", fam, c.IPAM.ClusterCIDR, fam)
		}
	}
	c.IPAM.ClusterCIDRNets = cls
	for _, fam := range c.IPAM.SNATFamilies {
		if fam != IPv4 && fam != IPv6 {
			return Invalid("ipam.snatFamilies: %q: want %q or %q", fam, IPv4, IPv6)
		}
	}
	sources := 0
	for _, s := range []string{c.IPAM.Subnet, c.IPAM.PodCIDRFile, c.IPAM.Kubeconfig} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		return Invalid("overlay needs exactly one source of the node's pod block: ipam.podCIDRFile, ipam.kubeconfig or ipam.subnet (%d given)", sources)
	}
	if c.IPAM.Subnet != "" {
		for _, fam := range c.IPAM.IPFamilies {
			b := c.IPAM.SubnetFor(fam)
			if b == nil {
				return Invalid("ipam.ipFamilies asks for %s but the static block ipam.subnet %q has no %s block", fam, c.IPAM.Subnet, fam)
			}
			if err := ValidateBlock(b, c.IPAM.ClusterCIDRFor(fam)); err != nil {
				return Invalid("ipam.subnet: %v", err)
			}
		}
	}
	return nil
}

// validateFamilies checks ipam.ipFamilies: IPv4 and/or IPv6, each once.
func (c *NetConf) validateFamilies() error {
	fams := c.IPAM.IPFamilies
	if len(fams) > 2 {
		return Invalid("ipam.ipFamilies %v: want one or two families", fams)
	}
	for i, f := range fams {
		if f != IPv4 && f != IPv6 {
			return Invalid("ipam.ipFamilies: %q: want %q or %q", f, IPv4, IPv6)
		}
		if slices.Contains(fams[:i], f) {
			return Invalid("ipam.ipFamilies %v: %s twice", fams, f)
		}
	}
	return nil
}

// familyCIDRs parses a comma-separated list of CIDRs, one per family of
// ipam.ipFamilies: each a network address outside the forbidden ranges,
// no family twice (two ranges of one family would overlap or be
// ambiguous), none of a family the configuration does not ask for.
func (c *NetConf) familyCIDRs(field, value, example string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range strings.Split(value, ",") {
		s = strings.TrimSpace(s)
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, Invalid("%s %q: not a CIDR like %s", field, s, example)
		}
		if v4 := n.IP.To4(); v4 != nil {
			n.IP = v4
			ip = ip.To4()
		}
		if !ip.Equal(n.IP) {
			return nil, Invalid("%s %q has host bits set (want %s)", field, s, n)
		}
		fam := FamilyOf(n.IP)
		if f := ForbiddenOverlap(n); f != nil {
			return nil, Invalid("%s %s overlaps %s, a forbidden range (forbidden: %s)", field, n, f, forbiddenList)
		}
		if prev := netOfFamily(out, fam); prev != nil {
			return nil, Invalid("%s: two %s ranges %s and %s; want one per family", field, fam, prev, n)
		}
		if !slices.Contains(c.IPAM.IPFamilies, fam) {
			return nil, Invalid("%s %s is %s, but ipam.ipFamilies %v does not ask for %s", field, n, fam, c.IPAM.IPFamilies, fam)
		}
		out = append(out, n)
	}
	return out, nil
}

// ValidateBlock checks a node's overlay block against the cluster CIDR
// of its family (nil: the configuration has none for it): inside it,
// outside the forbidden ranges, and of a size that holds pods (IPv4: /30
// or larger; IPv6: /64 to /126).
func ValidateBlock(block, cluster *net.IPNet) error {
	fam := FamilyOf(block.IP)
	if cluster == nil {
		return fmt.Errorf("the node's pod block %s is %s, but ipam.clusterCIDR has no %s CIDR", block, fam, fam)
	}
	ones, _ := block.Mask.Size()
	cones, _ := cluster.Mask.Size()
	if FamilyOf(cluster.IP) != fam || !cluster.Contains(block.IP) || ones < cones {
		return fmt.Errorf("the node's pod block %s is not inside ipam.clusterCIDR %s", block, cluster)
	}
	maxPrefix, minPrefix := MaxOverlayBlockPrefix, 0
	if fam == IPv6 {
		maxPrefix, minPrefix = MaxOverlayBlockPrefix6, MinOverlayBlockPrefix6
	}
	if ones > maxPrefix {
		return fmt.Errorf("the node's pod block %s is too small: want /%d or larger", block, maxPrefix)
	}
	if ones < minPrefix {
		return fmt.Errorf("the node's pod block %s is too large: want /%d or smaller", block, minPrefix)
	}
	if f := ForbiddenOverlap(block); f != nil {
		return fmt.Errorf("the node's pod block %s overlaps %s, a forbidden range", block, f)
	}
	return nil
}

// Attachments returns the GC list, from the current key or the legacy one.
// The second result says whether the runtime sent any list at all: a GC
// without one must not delete everything.
func (c *NetConf) Attachments() ([]types.GCAttachment, bool) {
	if c.ValidAttachments != nil {
		return c.ValidAttachments, true
	}
	if c.LegacyAttachments != nil {
		return c.LegacyAttachments, true
	}
	return nil, false
}

// ForbiddenOverlap returns the forbidden range n overlaps, or nil.
func ForbiddenOverlap(n *net.IPNet) *net.IPNet {
	for _, f := range Forbidden {
		if f.Contains(n.IP) || n.Contains(f.IP) {
			return f
		}
	}
	return nil
}

func validLogLevel(level string) error {
	switch strings.ToLower(level) {
	case "", "info", "debug", "warn", "warning", "error":
		return nil
	}
	return Invalid("logLevel %q: want \"info\" or \"debug\"", level)
}

// validIfName applies the kernel's rules for interface names.
func validIfName(field, name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return Invalid("%s %q: not a valid interface name (1-15 characters, no '/', ':' or spaces)", field, name)
	}
	return nil
}

func mustCIDRs(ss ...string) []*net.IPNet {
	var out []*net.IPNet
	for _, s := range ss {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			panic(err)
		}
		out = append(out, n)
	}
	return out
}
