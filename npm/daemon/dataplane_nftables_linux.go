//go:build linux

package daemon

import (
	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/nftables"
)

// The nftables dataplane programs table `inet azure-npm` of the daemon's
// own network namespace over netlink. Building it touches no kernel state,
// so the daemon can also build it as a "previous" dataplane and call its
// Cleanup (delete that table) after the first full sync of the iptables
// dataplane, and vice versa.
func init() {
	dataplaneFactories[config.DataplaneNFTables] = func(cfg config.Config, logger *zap.Logger) (dataplane.Dataplane, error) {
		return nftables.New(nftables.Options{Logger: logger, FlowLog: kernelFlowLog(cfg)})
	}
}
