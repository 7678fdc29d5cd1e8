//go:build linux

package cluster

import (
	"testing"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/internal/netnstest"
)

// Require skips t, saying why, when a cluster cannot be built here: not
// root, control-plane binaries not built, or the product's binaries not
// built.
func Require(t testing.TB) {
	t.Helper()
	netnstest.RequireRoot(t)
	if m := kubetest.MissingTools(kubetest.ToolsDir()); len(m) > 0 {
		netnstest.Skip(t, "control-plane binaries %v not built: run `make tools`", m)
	}
	if err := BinariesBuilt(""); err != nil {
		netnstest.Skip(t, "%v (make test builds them)", err)
	}
}
