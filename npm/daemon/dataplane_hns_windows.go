//go:build windows

package daemon

import (
	"net"
	"net/netip"
	"strings"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/hnsacl"
)

// The config's hnsNetwork names the HNS network; hnsHostIPs the node
// addresses whose ingress (health probes) isolated pods accept (default:
// the host's non-loopback interface addresses); hnsSCTP enables SCTP rules.
func init() {
	dataplaneFactories[config.DataplaneHNS] = func(cfg config.Config, logger *zap.Logger) (dataplane.Dataplane, error) {
		h, err := hnsacl.NewHCN(hnsacl.HCNOptions{NetworkName: cfg.HNSNetwork})
		if err != nil {
			return nil, err
		}
		hosts := hostIPs(cfg.HNSHostIPs)
		logger.Info("hns dataplane", zap.String("network", cfg.HNSNetwork), zap.Any("hostIPs", hosts),
			zap.Int("maxACLsPerCall", cfg.MaxHNSACLsPerCall), zap.Bool("sctp", cfg.HNSSCTP))
		return hnsacl.New(hnsacl.Options{HNS: h, Logger: logger, MaxACLsPerCall: cfg.MaxHNSACLsPerCall, HostIPs: hosts, SCTP: cfg.HNSSCTP})
	}
}

func hostIPs(configured []string) []netip.Addr {
	var out []netip.Addr
	if len(configured) > 0 {
		for _, s := range configured {
			if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
				out = append(out, a.Unmap())
			}
		}
		return out
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ip.Unmap())
	}
	return out
}
