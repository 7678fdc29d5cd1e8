//go:build linux

package dptest

import (
	"fmt"
	"testing"

	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/npm/policy"
)

// nodeAddr is the node's address on pod i's link (its gateway), family fam.
func nodeAddr(i, fam int) string {
	if fam == 1 {
		return fmt.Sprintf("fd09:0:%d::1", i)
	}
	return fmt.Sprintf("10.9.%d.1", i)
}

// nodeExtAddr is the node's address on the off-cluster link, family fam.
var nodeExtAddr = [2]string{NodeExtIP, "fd77::1"}

// RunNodeTraffic: traffic between local pods and their node under
// BasicPolicies (a/web isolates pod0's ingress to app=cli; b/out lets the
// pods of b, pod2 and pod3, egress only to 192.168.7.0/24 and fd77::/64 on
// TCP 81):
//
//   - the node reaches pod0 although pod0's ingress admits only app=cli
//     (kubelet probes: traffic from the pod's own node is always allowed);
//   - pod2 -> the node's own addresses is egress like any other: denied to
//     its gateway address (not in the ipBlock) and to the node's
//     off-cluster address on port 80, allowed there on port 81 (in the
//     ipBlock) — this traffic takes the input hook, never forward;
//   - pod1, selected by no policy, reaches the node;
//   - IPv6 neighbour discovery of an egress-isolated pod with its node
//     still works (its neighbour cache flushed, pod2 resolves its gateway
//     and reaches the allowed off-cluster peer).
func RunNodeTraffic(t *testing.T, newDP NewDataplane) {
	tp := NewTopo(t, Pods)
	tp.serve(t, tp.Node)
	e := tp.Engine(BasicPolicies()...)
	// Without NPM, pod2 reaches its node: the probes below can fail.
	for fam := 0; fam < 2; fam++ {
		if !tp.ProbeWant(2, nodeAddr(2, fam), tcpP, 80, true) {
			t.Fatalf("without NPM pod2 cannot reach its node at %s", nodeAddr(2, fam))
		}
	}
	d := newDP(t, tp.Node)
	apply(t, d, e, true)
	tp.FlushConntrack(t)
	for fam := 0; fam < 2; fam++ {
		for _, c := range []struct {
			src  int
			dst  string
			port int
			want bool
			why  string
		}{
			{2, nodeAddr(2, fam), 80, false, "pod2's egress does not allow its node's address"},
			{2, nodeAddr(2, fam), 81, false, "pod2's egress does not allow its node's address, on any port"},
			{2, nodeExtAddr[fam], 80, false, "the node's off-cluster address is in pod2's ipBlock, but not port 80"},
			{2, nodeExtAddr[fam], 81, true, "the node's off-cluster address on TCP 81 is in pod2's egress allow"},
			{3, nodeAddr(3, fam), 80, false, "pod3 (b/out) may not reach its node's address either"},
			{1, nodeAddr(1, fam), 80, true, "pod1 is selected by no policy"},
			{0, nodeAddr(0, fam), 80, true, "a/web isolates pod0's ingress only"},
		} {
			if got := tp.ProbeWant(c.src, c.dst, tcpP, c.port, c.want); got != c.want {
				t.Errorf("pod%d -> node %s TCP %d: allowed=%v, want %v (%s)", c.src, c.dst, c.port, got, c.want, c.why)
			}
		}
		// The node -> pod0: pod0's ingress admits only app=cli pods,
		// but the node's own traffic (kubelet probes) always passes.
		dst := tp.IPs[0][fam]
		ok := false
		for i := 0; i < 3 && !ok; i++ {
			_ = tp.Node.Do(func() error { ok = probe.TCPConnect(fmt.Sprintf("[%s]:80", dst), probeTimeout); return nil })
		}
		if !ok {
			t.Errorf("the node cannot reach pod0 at %s (traffic from a pod's own node must pass)", dst)
		}
	}
	// IPv6 neighbour discovery with the node under an egress policy.
	tp.Pods[2].MustExec(t, "ip", "-6", "neigh", "flush", "dev", "eth0")
	tp.FlushConntrack(t)
	if !tp.ProbeWant(2, tp.Addr(-1, 1), tcpP, 81, true) {
		t.Errorf("pod2 (egress-isolated) lost IPv6 connectivity to an allowed peer after its neighbour cache was flushed: neighbour discovery with the node is blocked")
	}
	reconcileClean(t, d, "after the node-traffic probes")
	_ = policy.TCP
}
