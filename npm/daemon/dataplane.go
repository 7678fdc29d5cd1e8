package daemon

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
)

// dataplaneFactories holds the dataplanes this platform can build; the
// per-OS files register theirs in init.
var dataplaneFactories = map[string]func(config.Config, *zap.Logger) (dataplane.Dataplane, error){}

// NewDataplane builds the dataplane cfg.Dataplane names.
func NewDataplane(cfg config.Config, logger *zap.Logger) (dataplane.Dataplane, error) {
	f, ok := dataplaneFactories[cfg.Dataplane]
	if !ok {
		return nil, fmt.Errorf("dataplane %q is not available on this platform", cfg.Dataplane)
	}
	return f(cfg, logger)
}
