//go:build linux

package nftables

import (
	"testing"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane/dptest"
)

// TestKernelKubeProxyCannotPrecede: kube-proxy in iptables mode (nft
// backend: KUBE-FORWARD ACCEPTs masquerade-marked NodePort traffic in
// filter FORWARD at priority 0) and in nftables mode (its filter chains at
// priority filter, its DNAT at dstnat) restarted with NPM in both orders
// under probe loops: NPM's base chains come first on the forward hook and
// an accept elsewhere never ends another table's evaluation, so a denied
// client never reaches the isolated pod through a NodePort.
func TestKernelKubeProxyCannotPrecede(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, kpm := range []dptest.KubeProxyMode{dptest.KubeProxyIPTablesNFT, dptest.KubeProxyNFTables} {
		t.Run("kube-proxy-"+string(kpm), func(t *testing.T) {
			dptest.RunKubeProxy(t, newDP, kpm, 10)
		})
	}
}

// TestKernelNodeTraffic: dptest.RunNodeTraffic (the node reaches its
// pods; pod -> node is egress, enforced on the input hook).
func TestKernelNodeTraffic(t *testing.T) {
	netnstest.RequireRoot(t)
	dptest.RunNodeTraffic(t, newDP)
}

// TestKernelNodePortCluster: dptest.RunNodePortCluster (NodePort with
// externalTrafficPolicy Cluster, backends on the receiving and another
// node, ipBlock policies decided by the original client).
func TestKernelNodePortCluster(t *testing.T) {
	netnstest.RequireRoot(t)
	dptest.RunNodePortCluster(t, newDP)
}
