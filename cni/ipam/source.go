package ipam

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/store"
)

// Interfaces is what the host says about the node's NICs: per NIC, the
// subnets and the addresses the VNet assigned to it. The same structure
// comes as XML from the Azure host and as JSON from a file (Azure Stack
// "mas", or a hand-written file). Field names match both spellings
// (JSON decoding is case-insensitive).
type Interfaces struct {
	XMLName    xml.Name    `xml:"Interfaces" json:"-"`
	Interfaces []Interface `xml:"Interface" json:"Interfaces"`
}

// Interface is one NIC.
type Interface struct {
	MacAddress string     `xml:"MacAddress,attr" json:"MacAddress"`
	IsPrimary  bool       `xml:"IsPrimary,attr" json:"IsPrimary"`
	IPSubnets  []IPSubnet `xml:"IPSubnet" json:"IPSubnets"`
}

// IPSubnet is one subnet of a NIC with its addresses.
type IPSubnet struct {
	Prefix      string      `xml:"Prefix,attr" json:"Prefix"`
	IPAddresses []IPAddress `xml:"IPAddress" json:"IPAddresses"`
}

// IPAddress is one address; the primary one belongs to the node itself.
type IPAddress struct {
	Address   string `xml:"Address,attr" json:"Address"`
	IsPrimary bool   `xml:"IsPrimary,attr" json:"IsPrimary"`
}

// ParseXML decodes the Azure host's getinterfaceinfov1 document.
func ParseXML(data []byte) (*Interfaces, error) {
	var v Interfaces
	if err := xml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("interface info XML: %w", err)
	}
	return &v, nil
}

// ParseJSON decodes the interfaces file.
func ParseJSON(data []byte) (*Interfaces, error) {
	var v Interfaces
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("interfaces JSON: %w", err)
	}
	return &v, nil
}

// SourceError marks a failure to read the address source (the host
// endpoint or the file), as opposed to a wrong configuration.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return "address source: " + e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// cacheFile is what the azure source keeps between invocations: the
// plugin is a new process for every call, so the TTL cache lives on disk.
type cacheFile struct {
	URL     string      `json:"url"`
	Fetched time.Time   `json:"fetched"`
	Data    *Interfaces `json:"data"`
}

// Source returns the interfaces for cfg.
//
// azure: served from <stateDir>/azure-vnet-ipam-interfaces.json when it is
// younger than queryInterval, else fetched over HTTP and the cache
// rewritten (atomically; concurrent plugins may both fetch, the last
// rename wins, both results are valid). file/mas: read from the file
// every time (a local read is cheaper than a cache).
//
// This is never called with the state lock held: an HTTP call may be slow.
func Source(ctx context.Context, cfg *config.NetConf, maxAge time.Duration, client *http.Client) (*Interfaces, error) {
	switch cfg.IPAM.Environment {
	case config.EnvFile, config.EnvMAS:
		data, err := os.ReadFile(cfg.IPAM.InterfacesFile)
		if err != nil {
			return nil, &SourceError{err}
		}
		v, err := ParseJSON(data)
		if err != nil {
			return nil, &SourceError{fmt.Errorf("%s: %w", cfg.IPAM.InterfacesFile, err)}
		}
		return v, nil
	}
	cachePath := filepath.Join(cfg.StateDir, "azure-vnet-ipam-interfaces.json")
	var c cacheFile
	if ok, _, _ := store.Load(cachePath, &c); ok && c.URL == cfg.IPAM.QueryURL && c.Data != nil && fresh(cfg, c.Fetched, maxAge) {
		return c.Data, nil
	}
	v, err := fetch(ctx, cfg.IPAM.QueryURL, client)
	if err != nil {
		return nil, &SourceError{err}
	}
	_ = store.Save(cachePath, &cacheFile{URL: cfg.IPAM.QueryURL, Fetched: time.Now(), Data: v})
	return v, nil
}

// fresh says whether a cache entry read at fetched may be used: maxAge < 0
// means ipam.queryInterval, 0 forces a new read.
func fresh(cfg *config.NetConf, fetched time.Time, maxAge time.Duration) bool {
	if maxAge < 0 {
		maxAge = time.Duration(cfg.IPAM.QueryInterval)
	}
	age := time.Since(fetched)
	return age >= 0 && age < maxAge
}

func fetch(ctx context.Context, url string, client *http.Client) (*Interfaces, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	body, err := get(ctx, client, url, nil, 8<<20)
	if err != nil {
		return nil, err
	}
	v, err := ParseXML(body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return v, nil
}

// get does one GET of url with the given headers and returns the body (at
// most limit bytes) of a 200 answer; another status is an error quoting
// the start of the body.
func get(ctx context.Context, client *http.Client, url string, header http.Header, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	return body, nil
}

// Pool is the set of addresses one configuration allocates from in one
// family: the secondary addresses of one subnet of the node's NICs
// (listed), or the node's overlay block (a range: an IPv6 /64 is too big
// to list).
type Pool struct {
	Subnet    *net.IPNet
	Gateway   net.IP   // first host of the subnet, the Azure convention
	Addresses []net.IP // listed pools
	// Ranged pools: the addresses at offsets First..Last of Subnet.
	Ranged      bool
	First, Last uint64
	Overlay     bool // the node's block of the cluster CIDR (overlay mode)
}

// Name identifies the pool in messages.
func (p *Pool) Name() string { return p.Subnet.String() }

// Family is "IPv4" or "IPv6".
func (p *Pool) Family() string { return config.FamilyOf(p.Subnet.IP) }

// Size is the number of addresses in the pool (a /64 range saturates at
// 2^64-1).
func (p *Pool) Size() uint64 {
	if !p.Ranged {
		return uint64(len(p.Addresses))
	}
	return p.Last - p.First + 1
}

// Contains says whether ip is one of the pool's addresses.
func (p *Pool) Contains(ip net.IP) bool {
	if ip == nil || !p.Subnet.Contains(ip) {
		return false
	}
	if !p.Ranged {
		for _, a := range p.Addresses {
			if a.Equal(ip) {
				return true
			}
		}
		return false
	}
	off := hostOffset(p.Subnet, ip)
	return off >= p.First && off <= p.Last
}

// addressAt returns the function giving the pool's i-th address in
// ascending order.
func (p *Pool) addressAt() func(i uint64) net.IP {
	if !p.Ranged {
		addrs := sortedIPs(p.Addresses)
		return func(i uint64) net.IP { return addrs[i] }
	}
	return func(i uint64) net.IP { return AddOffset(p.Subnet, p.First+i) }
}

// AddOffset is the address at a host offset from n's network address
// (the offset fits the host bits: at most 64 of them).
func AddOffset(n *net.IPNet, off uint64) net.IP {
	base := n.IP.Mask(n.Mask)
	ip := make(net.IP, len(base))
	copy(ip, base)
	carry := off
	for i := len(ip) - 1; i >= 0 && carry > 0; i-- {
		sum := uint64(ip[i]) + carry&0xff
		ip[i] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	return ip
}

// hostOffset is ip's offset from n's network address (the low 64 bits).
func hostOffset(n *net.IPNet, ip net.IP) uint64 {
	base := n.IP.Mask(n.Mask)
	if v4 := ip.To4(); len(base) == net.IPv4len && v4 != nil {
		ip = v4
	} else {
		ip = ip.To16()
		base = base.To16()
	}
	var off uint64
	for i := max(0, len(ip)-8); i < len(ip); i++ {
		off = off<<8 | uint64(ip[i]-base[i])
	}
	return off
}

// SelectPool builds the pool of one family for cfg from the source data:
// the family's subnet of cfg.IPAM.Subnet if set, else the first subnet
// of that family of the primary NIC that has secondary addresses.
// Primary addresses are the node's own and are skipped; so are subnets
// in the forbidden ranges.
func SelectPool(ifs *Interfaces, cfg *config.NetConf, family string) (*Pool, error) {
	var pools []*Pool
	ordered := append([]Interface(nil), ifs.Interfaces...)
	// Primary NIC first so the default choice is deterministic.
	for i := range ordered {
		if ordered[i].IsPrimary && i != 0 {
			ordered[0], ordered[i] = ordered[i], ordered[0]
			break
		}
	}
	// An address marked primary anywhere is a node's own, even if the
	// document lists it again as a secondary one.
	primary := map[string]bool{}
	for _, nic := range ordered {
		for _, sn := range nic.IPSubnets {
			for _, a := range sn.IPAddresses {
				if ip := net.ParseIP(strings.TrimSpace(a.Address)); a.IsPrimary && ip != nil {
					primary[ip.String()] = true
				}
			}
		}
	}
	for _, nic := range ordered {
		for _, sn := range nic.IPSubnets {
			_, n, err := net.ParseCIDR(strings.TrimSpace(sn.Prefix))
			if err != nil || config.FamilyOf(n.IP) != family {
				continue
			}
			if config.ForbiddenOverlap(n) != nil {
				continue
			}
			p := &Pool{Subnet: n, Gateway: FirstHost(n)}
			for _, a := range sn.IPAddresses {
				ip := net.ParseIP(strings.TrimSpace(a.Address))
				if v4 := ip.To4(); v4 != nil && family == config.IPv4 {
					ip = v4
				}
				if ip == nil || primary[ip.String()] || !n.Contains(ip) || ip.Equal(p.Gateway) {
					continue
				}
				p.Addresses = append(p.Addresses, ip)
			}
			pools = append(pools, p)
		}
	}
	want := cfg.IPAM.SubnetFor(family)
	for _, p := range pools {
		if want != nil {
			if p.Subnet.String() == want.String() {
				return p, nil
			}
			continue
		}
		if len(p.Addresses) > 0 {
			return p, nil
		}
	}
	if want != nil {
		return nil, fmt.Errorf("ipam.subnet %s: the address source has no such subnet on this node", want)
	}
	return nil, fmt.Errorf("ipam.ipFamilies asks for %s, but the address source lists no %s subnet with secondary addresses on this node", family, family)
}

// FirstHost is the first host address of n, the gateway by Azure's
// convention (n may be an address with its prefix, like a pod's).
func FirstHost(n *net.IPNet) net.IP {
	net4 := &net.IPNet{IP: n.IP, Mask: n.Mask}
	if v4 := n.IP.To4(); v4 != nil && len(n.Mask) == net.IPv4len {
		net4.IP = v4
	}
	return AddOffset(net4, 1)
}
