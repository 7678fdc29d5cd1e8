//go:build linux

package network

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/open-acn/acn/cni/store"
)

// SNATChain is the nat chain of overlay mode, jumped to from POSTROUTING.
const SNATChain = "ACN-OVERLAY-SNAT"

// snatMarker records in the state directory that the node-wide SNAT rules
// for this block and cluster CIDR are installed, so later ADDs check a
// small file instead of running iptables. The state directory is on tmpfs
// (/var/run), so a reboot clears it together with the rules.
type snatMarker struct {
	Block   string    `json:"block"`
	Cluster string    `json:"cluster"`
	Done    time.Time `json:"done"`
}

// SNATRule is the SNAT of one family: traffic from the node's block to
// anything outside the cluster CIDR of that family leaves with the node's
// address; pod to pod traffic inside the cluster CIDR keeps the pod
// addresses.
type SNATRule struct {
	Block, Cluster *net.IPNet
}

func (r SNATRule) args() []string {
	return []string{"-s", r.Block.String(), "!", "-d", r.Cluster.String(),
		"-m", "comment", "--comment", "acn overlay: pods leaving the cluster CIDR use the node address",
		"-j", "MASQUERADE"}
}

// tool is iptables or ip6tables, by the rule's family.
func (r SNATRule) tool() string {
	if isV4(r.Block.IP) {
		return "iptables"
	}
	return "ip6tables"
}

// joinRules is the marker's record of a rule set.
func joinRules(rules []SNATRule) (blocks, clusters string) {
	var b, c []string
	for _, r := range rules {
		b = append(b, r.Block.String())
		c = append(c, r.Cluster.String())
	}
	return strings.Join(b, ","), strings.Join(c, ",")
}

var jumpRule = []string{"-m", "comment", "--comment", "acn overlay SNAT", "-j", SNATChain}

// EnsureOverlaySNAT installs, once per node, the overlay SNAT in the nat
// table of the current network namespace, per family (iptables for IPv4,
// ip6tables for IPv6):
//
//	-A POSTROUTING -j ACN-OVERLAY-SNAT          (inserted first, once)
//	-A ACN-OVERLAY-SNAT -s <block> ! -d <cluster> -j MASQUERADE
//
// The chain is written whole with iptables-restore --noflush (declaring
// it flushes it, so a changed block replaces the old rule atomically),
// then the POSTROUTING jump is added if missing, then the marker is
// saved. Later ADDs see the marker and run nothing. Setup runs under its
// own lock, so two first ADDs do not both add the jump; a crash before
// the marker just makes the next ADD redo the (idempotent) setup.
func EnsureOverlaySNAT(rules []SNATRule, lockPath, markerPath string) error {
	if snatMarked(rules, markerPath) {
		return nil
	}
	lock, err := store.Acquire(lockPath, 60*time.Second)
	if err != nil {
		return err
	}
	defer lock.Release()
	if snatMarked(rules, markerPath) {
		return nil
	}
	for _, r := range rules {
		var in bytes.Buffer
		fmt.Fprintf(&in, "*nat\n:%s - [0:0]\n-A %s %s\nCOMMIT\n", SNATChain, SNATChain, quoteRule(r.args()))
		if err := run(r.tool()+"-restore", &in, "-w", "5", "--noflush"); err != nil {
			return fmt.Errorf("overlay SNAT chain: %w", err)
		}
		if err := nat(r.tool(), "-C", "POSTROUTING", jumpRule...); err != nil {
			if err := nat(r.tool(), "-I", "POSTROUTING", append([]string{"1"}, jumpRule...)...); err != nil {
				return fmt.Errorf("overlay SNAT jump: %w", err)
			}
		}
	}
	blocks, clusters := joinRules(rules)
	return store.Save(markerPath, &snatMarker{Block: blocks, Cluster: clusters, Done: time.Now()})
}

// CheckOverlaySNAT verifies the rules and the jumps are in place (CHECK).
func CheckOverlaySNAT(rules []SNATRule) error {
	for _, r := range rules {
		if err := nat(r.tool(), "-C", SNATChain, r.args()...); err != nil {
			return fmt.Errorf("overlay SNAT rule for %s missing: %v", r.Block, err)
		}
		if err := nat(r.tool(), "-C", "POSTROUTING", jumpRule...); err != nil {
			return fmt.Errorf("POSTROUTING jump to %s missing: %v", SNATChain, err)
		}
	}
	return nil
}

func snatMarked(rules []SNATRule, markerPath string) bool {
	var m snatMarker
	ok, _ := store.Read(markerPath, &m)
	blocks, clusters := joinRules(rules)
	return ok && m.Block == blocks && m.Cluster == clusters
}

func quoteRule(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t\"") {
			a = `"` + a + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// nat runs iptables or ip6tables (tool) op on a chain of the nat table.
func nat(tool, op, chain string, rule ...string) error {
	return run(tool, nil, append([]string{"-w", "5", "-t", "nat", op, chain}, rule...)...)
}

func run(name string, stdin *bytes.Buffer, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
