//go:build linux

package ipam

import (
	"net"
	"testing"

	"github.com/open-acn/acn/cni/config"
)

// FuzzInterfaces: any document from the Azure host (XML) or the interfaces
// file (JSON) parses or fails with an error, never a panic; a pool chosen
// from what parses holds only addresses of its subnet that are neither
// primary (the node's own) nor the gateway, and an IPv4 subnet outside the
// forbidden ranges.
func FuzzInterfaces(f *testing.F) {
	f.Add([]byte(`<Interfaces><Interface MacAddress="000D3A000001" IsPrimary="true"><IPSubnet Prefix="10.240.0.0/16"><IPAddress Address="10.240.0.4" IsPrimary="true"/><IPAddress Address="10.240.0.5" IsPrimary="false"/></IPSubnet></Interface></Interfaces>`), false, "")
	f.Add([]byte(`{"Interfaces":[{"MacAddress":"000D3A000001","IsPrimary":true,"IPSubnets":[{"Prefix":"10.240.0.0/16","IPAddresses":[{"Address":"10.240.0.4","IsPrimary":true},{"Address":"10.240.1.1"}]}]}]}`), true, "10.240.0.0/16")
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool, subnet string) {
		parse := ParseXML
		if isJSON {
			parse = ParseJSON
		}
		ifs, err := parse(data)
		if err != nil {
			if ifs != nil {
				t.Fatal("error with a result")
			}
			return
		}
		cfg := &config.NetConf{}
		if _, n, err := net.ParseCIDR(subnet); err == nil {
			cfg.IPAM.SubnetNets = []*net.IPNet{n}
		}
		for _, family := range []string{config.IPv4, config.IPv6} {
			pool, err := SelectPool(ifs, cfg, family)
			if err != nil {
				continue
			}
			checkPool(t, ifs, cfg, family, pool)
		}
	})
}

// checkPool: a pool of the family asked for, outside the forbidden ranges,
// the subnet asked for (if any), holding only addresses of its subnet that
// are neither the gateway nor marked primary anywhere in the document.
func checkPool(t *testing.T, ifs *Interfaces, cfg *config.NetConf, family string, pool *Pool) {
	if config.FamilyOf(pool.Subnet.IP) != family || config.ForbiddenOverlap(pool.Subnet) != nil {
		t.Fatalf("pool subnet %s: not %s or forbidden", pool.Subnet, family)
	}
	if want := cfg.IPAM.SubnetFor(family); want != nil && pool.Subnet.String() != want.String() {
		t.Fatalf("asked for subnet %s, got %s", want, pool.Subnet)
	}
	primary := map[string]bool{}
	for _, nic := range ifs.Interfaces {
		for _, sn := range nic.IPSubnets {
			for _, a := range sn.IPAddresses {
				if a.IsPrimary {
					if ip := net.ParseIP(a.Address); ip != nil {
						primary[ip.String()] = true
					}
				}
			}
		}
	}
	for _, ip := range pool.Addresses {
		if !pool.Subnet.Contains(ip) || ip.Equal(pool.Gateway) {
			t.Fatalf("pool %s holds %s (gateway %s)", pool.Subnet, ip, pool.Gateway)
		}
		if primary[ip.String()] {
			t.Fatalf("pool holds the primary (node) address %s", ip)
		}
	}
}
