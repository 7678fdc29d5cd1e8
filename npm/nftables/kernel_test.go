//go:build linux

package nftables

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/dataplane/dptest"
)

func newDP(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
	d, err := New(Options{NetNSPath: node.Path, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestKernelShared runs the suite shared with the iptables dataplane
// (npm/dataplane/dptest): the case table with real TCP/UDP/SCTP probes in
// both families, update without gap, restart replacing stale state, and
// the property test against the cyclonus oracle.
func TestKernelShared(t *testing.T) {
	netnstest.RequireRoot(t)
	dptest.Run(t, newDP, dptest.Options{PropertyCases: 16})
}
