//go:build linux

// Package dptest is the kernel test suite shared by every Linux NPM
// dataplane (iptables + ipset, nftables): a routed test cluster in network
// namespaces, one table of cases (a cluster, its policies and the expected
// allow/deny of real TCP, UDP and SCTP probes in both families), the
// update-without-gap, restart and cleanup scenarios, and the property test
// against the cyclonus oracle. A dataplane's tests call Run with a
// constructor; the suite depends only on dataplane.Dataplane:
//
//	func TestKernelShared(t *testing.T) {
//		dptest.Run(t, func(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
//			d, err := iptables.New(context.Background(), iptables.Options{
//				Runner: dataplane.Exec{Netns: node.Path}, Mode: iptables.ModeNFT})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return d
//		}, dptest.Options{PropertyCases: 16})
//	}
//
// The pieces (NewTopo, Topo.Engine, Topo.Check, Topo.ProbeLoops,
// BasicPolicies/BasicExpect, Cases) are exported for a dataplane's own
// kernel tests (drift repair, cleanup), which are dataplane-specific.
package dptest

import (
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// Topo is a routed test cluster: a "node" namespace forwarding between
// veth-connected pod namespaces (pod i: 10.9.i.2 and fd09:0:i::2) and one
// off-cluster namespace (192.168.7.9, fd77::9). Each pod serves TCP 80 and
// 81, a UDP echo on 53, and records raw SCTP packets.
type Topo struct {
	Node *netnstest.NS
	Pods []*netnstest.NS
	Ext  *netnstest.NS
	IPs  [][2]string // per pod: v4, v6

	mu       sync.Mutex
	seen     map[uint32]bool   // SCTP INIT tags received
	udpPorts probe.SourcePorts // UDP probe source ports, rotated (see probe.UDPRoundTripFrom)
	stop     []func()
}

// podIPs are the addresses of pod i.
func podIPs(i int) [2]string {
	return [2]string{fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::2", i)}
}

// Addresses is a Topo of n pods with only their addresses (no namespaces,
// no root): for tests that render or trace rules without a kernel.
func Addresses(n int) *Topo {
	tp := &Topo{}
	for i := 0; i < n; i++ {
		tp.IPs = append(tp.IPs, podIPs(i))
	}
	return tp
}

// NewTopo builds the cluster with n pods; everything is removed by t.Cleanup.
func NewTopo(t testing.TB, n int) *Topo {
	t.Helper()
	netnstest.RequireRoot(t)
	tp := &Topo{Node: netnstest.New(t, "npm-node"), seen: map[uint32]bool{}}
	tp.Node.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	tp.Node.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	noDAD(t, tp.Node)
	link := func(ns *netnstest.NS, i int, v4n, v4p, v6n, v6p string) {
		nIf := fmt.Sprintf("vp%d", i)
		netnstest.Link(t, tp.Node, nIf, v4n+"/24", ns, "eth0", v4p+"/24")
		tp.Node.MustExec(t, "ip", "-6", "addr", "add", v6n+"/64", "dev", nIf, "nodad")
		ns.MustExec(t, "ip", "-6", "addr", "add", v6p+"/64", "dev", "eth0", "nodad")
		ns.MustExec(t, "ip", "route", "add", "default", "via", v4n)
		ns.MustExec(t, "ip", "-6", "route", "add", "default", "via", v6n)
	}
	for i := 0; i < n; i++ {
		ns := netnstest.New(t, fmt.Sprintf("npm-pod%d", i))
		noDAD(t, ns)
		link(ns, i, fmt.Sprintf("10.9.%d.1", i), fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::1", i), fmt.Sprintf("fd09:0:%d::2", i))
		tp.Pods = append(tp.Pods, ns)
		tp.IPs = append(tp.IPs, podIPs(i))
	}
	tp.Ext = netnstest.New(t, "npm-ext")
	noDAD(t, tp.Ext)
	link(tp.Ext, 99, "192.168.7.1", translatetest.ExternalIPs[0], "fd77::1", translatetest.ExternalIPs[1]) // probe index -1
	for _, ns := range append(append([]*netnstest.NS{}, tp.Pods...), tp.Ext) {
		tp.serve(t, ns)
	}
	t.Cleanup(func() {
		for _, f := range tp.stop {
			f()
		}
	})
	return tp
}

// noDAD: addresses (link-local included) usable at once.
func noDAD(t testing.TB, ns *netnstest.NS) {
	ns.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
}

func (tp *Topo) serve(t testing.TB, ns *netnstest.NS) {
	var srv *probe.Servers
	err := ns.Do(func() (err error) {
		srv, err = probe.Serve([]int{80, 81}, []int{53}, true)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	tp.stop = append(tp.stop, func() { close(done); srv.Close() })
	go func() {
		for {
			select {
			case <-done:
				return
			case in := <-srv.SCTP:
				tp.mu.Lock()
				tp.seen[in.Tag] = true
				tp.mu.Unlock()
			}
		}
	}()
}

const probeTimeout = 300 * time.Millisecond

// allowedProbeTimeout bounds the gap tests' probes of allowed traffic. It
// stays below TCP's initial retransmission timeout (1 s): a SYN a gap
// dropped is not retransmitted within it, so every such drop still fails
// the probe, while a loaded machine's scheduling delays (hundreds of
// milliseconds at a load of 15+) do not count as drops.
const allowedProbeTimeout = 900 * time.Millisecond

// ProbeAllowed is Probe for the gap tests' allowed loops
// (allowedProbeTimeout).
func (tp *Topo) ProbeAllowed(src int, dstIP string, proto policy.Protocol, port int) bool {
	return tp.ProbeTimeout(src, dstIP, proto, port, allowedProbeTimeout)
}

// Probe reports whether a new connection from src (a pod index, or -1 for
// the external namespace) to dst address dstIP reaches it.
func (tp *Topo) Probe(src int, dstIP string, proto policy.Protocol, port int) bool {
	return tp.ProbeTimeout(src, dstIP, proto, port, probeTimeout)
}

// ProbeTimeout is Probe with a timeout (short timeouts make the gap test's
// "never allowed" loops send many more SYNs).
func (tp *Topo) ProbeTimeout(src int, dstIP string, proto policy.Protocol, port int, timeout time.Duration) bool {
	ns := tp.Ext
	if src >= 0 {
		ns = tp.Pods[src]
	}
	addr := net.JoinHostPort(dstIP, fmt.Sprint(port))
	ok := false
	switch proto {
	case policy.TCP:
		_ = ns.Do(func() error { ok = probe.TCPConnect(addr, timeout); return nil })
	case policy.UDP:
		srcPort := tp.udpPorts.Next()
		_ = ns.Do(func() error {
			ok = probe.UDPRoundTripFrom(srcPort, addr, fmt.Sprint(rand.Int63()), timeout)
			return nil
		})
	case policy.SCTP:
		tag := rand.Uint32() | 1
		_ = ns.Do(func() error { return probe.SendSCTPInit(netip.MustParseAddr(dstIP), uint16(port), tag) })
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			tp.mu.Lock()
			ok = tp.seen[tag]
			tp.mu.Unlock()
			if ok {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return ok
}

// ProbeWant is Probe with retries when the connection is expected to be
// allowed and did not get through (a loaded CI machine can miss the
// timeout); an allowed connection that should be denied is never retried.
func (tp *Topo) ProbeWant(src int, dstIP string, proto policy.Protocol, port int, want bool) bool {
	got := tp.Probe(src, dstIP, proto, port)
	for i := 0; i < 2 && want && !got; i++ {
		got = tp.Probe(src, dstIP, proto, port)
	}
	return got
}
