//go:build windows

package daemon

import (
	"net"
	"net/netip"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/hnsacl"
)

// Until config has keys for them: AZURE_NPM_HNS_NETWORK names the HNS
// network (default "azure"), AZURE_NPM_HOST_IPS (comma-separated) the
// node addresses whose ingress (health probes) isolated pods accept
// (default: the host's non-loopback interface addresses).
func init() {
	dataplaneFactories[config.DataplaneHNS] = func(cfg config.Config, logger *zap.Logger) (dataplane.Dataplane, error) {
		h, err := hnsacl.NewHCN(hnsacl.HCNOptions{NetworkName: os.Getenv("AZURE_NPM_HNS_NETWORK")})
		if err != nil {
			return nil, err
		}
		hosts := hostIPs(os.Getenv("AZURE_NPM_HOST_IPS"))
		logger.Info("hns dataplane", zap.Any("hostIPs", hosts), zap.Int("maxACLsPerCall", cfg.MaxHNSACLsPerCall))
		return hnsacl.New(hnsacl.Options{HNS: h, Logger: logger, MaxACLsPerCall: cfg.MaxHNSACLsPerCall, HostIPs: hosts})
	}
}

func hostIPs(env string) []netip.Addr {
	var out []netip.Addr
	if env != "" {
		for _, s := range strings.Split(env, ",") {
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
