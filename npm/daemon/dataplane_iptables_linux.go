//go:build linux

package daemon

import (
	"context"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/iptables"
)

func init() {
	dataplaneFactories[config.DataplaneIPTables] = func(cfg config.Config, logger *zap.Logger) (dataplane.Dataplane, error) {
		// config.Validate admits auto, nft and legacy; the backends are
		// named like iptables.Mode, where auto is the empty mode.
		mode := iptables.Mode(cfg.IPTablesBackend)
		if cfg.IPTablesBackend == "auto" {
			mode = iptables.ModeAuto
		}
		return iptables.New(context.Background(), iptables.Options{Logger: logger, Mode: mode, FlowLog: kernelFlowLog(cfg)})
	}
}
