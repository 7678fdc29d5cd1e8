//go:build linux

package dptest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
)

// KubeProxyMode is how the simulated kube-proxy programs the node.
type KubeProxyMode string

const (
	KubeProxyIPTablesNFT    KubeProxyMode = "iptables-nft"
	KubeProxyIPTablesLegacy KubeProxyMode = "iptables-legacy"
	KubeProxyNFTables       KubeProxyMode = "nftables"
)

// NodePort services of the simulated kube-proxy, on the node's address on
// the off-cluster link (192.168.7.1): DeniedNodePort leads to pod0 port 80
// (which BasicPolicies isolates: nothing off-cluster may reach it),
// OpenNodePort to pod1 port 80 (selected by no policy).
const (
	NodeExtIP      = "192.168.7.1"
	DeniedNodePort = 30080
	OpenNodePort   = 30081
)

// KubeProxy writes, into the node namespace, the rules kube-proxy v1.35
// writes for two NodePort services with externalTrafficPolicy Cluster
// (pkg/proxy/iptables and pkg/proxy/nftables of k8s.io/kubernetes: the
// same chains, comments, marks, jump positions and base-chain priorities):
// external traffic to a NodePort is marked 0x4000 (KUBE-MARK-MASQ), DNATed
// to the endpoint and masqueraded on the way out; in iptables mode filter
// FORWARD jumps to KUBE-FORWARD, which ACCEPTs 0x4000-marked and
// established packets.
type KubeProxy struct {
	Mode KubeProxyMode
	node *netnstest.NS
	tp   *Topo
}

// NewKubeProxy programs kube-proxy's rules as its first sync does.
func (tp *Topo) NewKubeProxy(t testing.TB, mode KubeProxyMode) *KubeProxy {
	t.Helper()
	kp := &KubeProxy{Mode: mode, node: tp.Node, tp: tp}
	kp.Start(t)
	return kp
}

func (kp *KubeProxy) ipt() string {
	return "iptables-" + strings.TrimPrefix(string(kp.Mode), "iptables-")
}

func (kp *KubeProxy) run(t testing.TB, stdin string, name string, args ...string) {
	t.Helper()
	if _, err := (dataplane.Exec{Netns: kp.node.Path}).Run(context.Background(), []byte(stdin), name, args...); err != nil {
		t.Fatalf("kube-proxy simulation: %s %v: %v", name, args, err)
	}
}

// jumpChains is kube-proxy's iptablesJumpChains: each rule is prepended
// (-I, position 1) to its built-in chain when missing (EnsureRule with
// Prepend), in this order, so the last one of a chain ends up first.
var jumpChains = []struct{ table, dst, src, comment, extra string }{
	{"filter", "KUBE-EXTERNAL-SERVICES", "INPUT", "kubernetes externally-visible service portals", "-m conntrack --ctstate NEW"},
	{"filter", "KUBE-EXTERNAL-SERVICES", "FORWARD", "kubernetes externally-visible service portals", "-m conntrack --ctstate NEW"},
	{"filter", "KUBE-NODEPORTS", "INPUT", "kubernetes health check service ports", ""},
	{"filter", "KUBE-SERVICES", "FORWARD", "kubernetes service portals", "-m conntrack --ctstate NEW"},
	{"filter", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", "-m conntrack --ctstate NEW"},
	{"filter", "KUBE-FORWARD", "FORWARD", "kubernetes forwarding rules", ""},
	{"filter", "KUBE-PROXY-FIREWALL", "INPUT", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"},
	{"filter", "KUBE-PROXY-FIREWALL", "OUTPUT", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"},
	{"filter", "KUBE-PROXY-FIREWALL", "FORWARD", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"},
	{"nat", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", ""},
	{"nat", "KUBE-SERVICES", "PREROUTING", "kubernetes service portals", ""},
	{"nat", "KUBE-POSTROUTING", "POSTROUTING", "kubernetes postrouting rules", ""},
}

// iptablesSync is kube-proxy's iptables-restore --noflush of its filter
// and nat tables (syncProxyRules) for the two NodePorts.
func (kp *KubeProxy) iptablesSync() string {
	var b strings.Builder
	b.WriteString(`*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
`)
	svcs := []struct {
		name, hash string
		port       int
		ep         string
	}{{"a/web:http", "DENIEDXXXXXXXXXX", DeniedNodePort, kp.tp.IPs[0][0]}, {"a/cli:http", "OPENXXXXXXXXXXXX", OpenNodePort, kp.tp.IPs[1][0]}}
	for _, s := range svcs {
		fmt.Fprintf(&b, ":KUBE-SVC-%s - [0:0]\n:KUBE-EXT-%s - [0:0]\n:KUBE-SEP-%s - [0:0]\n", s.hash, s.hash, s.hash)
	}
	b.WriteString(`-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
`)
	for _, s := range svcs {
		fmt.Fprintf(&b, "-A KUBE-NODEPORTS -m comment --comment %s -m tcp -p tcp --dport %d -j KUBE-EXT-%s\n", s.name, s.port, s.hash)
		fmt.Fprintf(&b, "-A KUBE-EXT-%s -m comment --comment \"masquerade traffic for %s external destinations\" -j KUBE-MARK-MASQ\n", s.hash, s.name)
		fmt.Fprintf(&b, "-A KUBE-EXT-%s -j KUBE-SVC-%s\n", s.hash, s.hash)
		fmt.Fprintf(&b, "-A KUBE-SVC-%s -m comment --comment \"%s -> %s:80\" -j KUBE-SEP-%s\n", s.hash, s.name, s.ep, s.hash)
		fmt.Fprintf(&b, "-A KUBE-SEP-%s -m comment --comment %s -m tcp -p tcp -j DNAT --to-destination %s:80\n", s.hash, s.name, s.ep)
	}
	b.WriteString(`-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
`)
	return b.String()
}

// nftablesTable is kube-proxy's `table ip kube-proxy` (nftables mode) for
// the two NodePorts: its base chains at kube-proxy's hooks and priorities
// (dstnat - 10 = -110 and dstnat = -100 written as numbers on the output
// hook, where this nft does not accept the names).
func (kp *KubeProxy) nftablesTable() string {
	return fmt.Sprintf(`table ip kube-proxy {
	comment "rules for kube-proxy"
	chain mark-for-masquerade {
		meta mark set meta mark or 0x4000
	}
	chain masquerading {
		meta mark and 0x4000 == 0 return
		meta mark set meta mark xor 0x4000
		masquerade fully-random
	}
	chain firewall-check {
	}
	chain service-endpoints-check {
	}
	chain nodeport-endpoints-check {
	}
	chain cluster-ips-check {
	}
	chain filter-prerouting-pre-dnat {
		type filter hook prerouting priority dstnat - 10; policy accept;
		ct state new jump firewall-check
	}
	chain filter-output-pre-dnat {
		type filter hook output priority -110; policy accept;
		ct state new jump firewall-check
	}
	chain filter-input {
		type filter hook input priority filter; policy accept;
		ct state new jump nodeport-endpoints-check
		ct state new jump service-endpoints-check
	}
	chain filter-forward {
		type filter hook forward priority filter; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump cluster-ips-check
	}
	chain filter-output {
		type filter hook output priority filter; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump cluster-ips-check
	}
	chain endpoint-DENIED {
		meta l4proto tcp dnat to %s:80
	}
	chain endpoint-OPEN {
		meta l4proto tcp dnat to %s:80
	}
	chain external-DENIED {
		jump mark-for-masquerade
		goto endpoint-DENIED
	}
	chain external-OPEN {
		jump mark-for-masquerade
		goto endpoint-OPEN
	}
	chain nodeports {
		tcp dport %d goto external-DENIED
		tcp dport %d goto external-OPEN
	}
	chain services {
		fib daddr type local jump nodeports
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump masquerading
	}
}
`, kp.tp.IPs[0][0], kp.tp.IPs[1][0], DeniedNodePort, OpenNodePort)
}

// Start is kube-proxy starting: its sync, then its jumps ensured (each
// prepended when missing).
func (kp *KubeProxy) Start(t testing.TB) {
	t.Helper()
	if kp.Mode == KubeProxyNFTables {
		// kube-proxy replaces its whole table in one transaction.
		kp.run(t, "add table ip kube-proxy\ndelete table ip kube-proxy\n"+kp.nftablesTable(), "nft", "-f", "-")
		return
	}
	kp.run(t, "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n", kp.ipt()+"-restore", "--noflush")
	kp.run(t, kp.iptablesSync(), kp.ipt()+"-restore", "-w", "5", "--noflush")
	for _, j := range jumpChains {
		args := []string{"-w", "5", "-t", j.table}
		rule := append([]string{j.src, "-m", "comment", "--comment", j.comment}, strings.Fields(j.extra)...)
		rule = append(rule, "-j", j.dst)
		check := append(append(append([]string{}, args...), "-C"), rule...)
		if _, err := (dataplane.Exec{Netns: kp.node.Path}).Run(context.Background(), nil, kp.ipt(), check...); err == nil {
			continue // present: EnsureRule leaves it where it is
		}
		kp.run(t, "", kp.ipt(), append(append(args, "-I"), rule...)...)
	}
}

// Stop is kube-proxy's cleanup (kube-proxy --cleanup, or a node whose
// rules were flushed): its jumps and chains are gone.
func (kp *KubeProxy) Stop(t testing.TB) {
	t.Helper()
	if kp.Mode == KubeProxyNFTables {
		kp.run(t, "add table ip kube-proxy\ndelete table ip kube-proxy\n", "nft", "-f", "-")
		return
	}
	for _, j := range jumpChains {
		rule := append([]string{"-w", "5", "-t", j.table, "-D", j.src, "-m", "comment", "--comment", j.comment}, strings.Fields(j.extra)...)
		kp.run(t, "", kp.ipt(), append(rule, "-j", j.dst)...)
	}
}

// Restart is a kube-proxy restart that re-inserts its jumps: they now
// precede everything else in filter FORWARD, INPUT and OUTPUT.
func (kp *KubeProxy) Restart(t testing.TB) {
	t.Helper()
	kp.Stop(t)
	kp.Start(t)
}

// NodePortProbe reports whether a new TCP connection from the off-cluster
// namespace to the node's NodePort port gets through.
func (tp *Topo) NodePortProbe(port int, timeout time.Duration) bool {
	return tp.ProbeTimeout(-1, NodeExtIP, tcpP, port, timeout)
}

// RunKubeProxy: NPM (BasicPolicies) and kube-proxy (two NodePorts with
// externalTrafficPolicy Cluster, its traffic marked for masquerade) on one
// node, restarted in both orders and over and over under probe loops from
// off-cluster: the NodePort leading to the isolated pod0 must never let a
// new connection through (kube-proxy's KUBE-FORWARD ACCEPTs exactly these
// packets), the one leading to the open pod1 must keep working (so the
// simulated kube-proxy does carry the traffic). It returns the number of
// denied probes and kube-proxy restarts.
func RunKubeProxy(t *testing.T, newDP NewDataplane, mode KubeProxyMode, restarts int) (probes int64) {
	tp := NewTopo(t, Pods)
	e := tp.Engine(BasicPolicies()...)
	// Order 1: NPM first, then kube-proxy (its jumps prepended above
	// everything NPM wrote).
	d := newDP(t, tp.Node)
	apply(t, d, e, true)
	kp := tp.NewKubeProxy(t, mode)
	if !tp.NodePortProbe(OpenNodePort, time.Second) && !tp.NodePortProbe(OpenNodePort, time.Second) {
		t.Fatalf("kube-proxy %s: NodePort %d to the open pod1 does not work: the simulation carries no traffic", mode, OpenNodePort)
	}
	if tp.NodePortProbe(DeniedNodePort, probeTimeout) {
		t.Fatalf("kube-proxy %s started after NPM: NodePort %d let a denied client reach pod0", mode, DeniedNodePort)
	}
	// Order 2: kube-proxy first, then a new NPM process.
	kp.Stop(t)
	kp.Start(t)
	apply(t, newDP(t, tp.Node), e, true)
	if tp.NodePortProbe(DeniedNodePort, probeTimeout) {
		t.Fatalf("NPM restarted after kube-proxy %s: NodePort %d let a denied client reach pod0", mode, DeniedNodePort)
	}
	// Both restarted over and over, in both orders, under probe loops.
	var done atomic.Bool
	var leaks, opens, nDenied, nOpen atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				nDenied.Add(1)
				if tp.NodePortProbe(DeniedNodePort, 30*time.Millisecond) {
					leaks.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			nOpen.Add(1)
			if tp.NodePortProbe(OpenNodePort, probeTimeout) {
				opens.Add(1)
			}
		}
	}()
	for i := 0; i < restarts; i++ {
		if i%2 == 0 {
			kp.Restart(t)
			apply(t, newDP(t, tp.Node), e, true)
		} else {
			apply(t, newDP(t, tp.Node), e, true)
			kp.Restart(t)
		}
		time.Sleep(20 * time.Millisecond)
	}
	done.Store(true)
	wg.Wait()
	t.Logf("kube-proxy %s: %d restarts of each daemon; %d new connections to the denied NodePort, %d got through; %d of %d to the open NodePort got through",
		mode, restarts, nDenied.Load(), leaks.Load(), opens.Load(), nOpen.Load())
	if leaks.Load() > 0 {
		t.Errorf("kube-proxy %s: %d of %d new connections to pod0 through NodePort %d got through during restarts (window open)", mode, leaks.Load(), nDenied.Load(), DeniedNodePort)
	}
	if opens.Load() == 0 {
		t.Errorf("kube-proxy %s: no connection to the open NodePort got through during restarts: the probe loop proves nothing", mode)
	}
	return nDenied.Load()
}
