//go:build linux

package daemon

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/iptables"
)

func init() {
	dataplaneFactories[config.DataplaneIPTables] = func(cfg config.Config, logger *zap.Logger) (dataplane.Dataplane, error) {
		mode := iptables.ModeAuto
		switch cfg.IPTablesBackend {
		case "nft":
			mode = iptables.ModeNFT
		case "legacy":
			mode = iptables.ModeLegacy
		case "auto", "":
		default:
			return nil, fmt.Errorf("iptablesBackend %q", cfg.IPTablesBackend)
		}
		return iptables.New(context.Background(), iptables.Options{Logger: logger, Mode: mode})
	}
}
