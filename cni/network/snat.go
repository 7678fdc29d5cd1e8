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

// snatRule is the one rule of SNATChain: traffic from the node's pods to
// anything outside the cluster CIDR leaves with the node's address; pod to
// pod traffic inside the cluster CIDR keeps the pod addresses.
func snatRule(block, cluster *net.IPNet) []string {
	return []string{"-s", block.String(), "!", "-d", cluster.String(),
		"-m", "comment", "--comment", "acn overlay: pods leaving the cluster CIDR use the node address",
		"-j", "MASQUERADE"}
}

var jumpRule = []string{"-m", "comment", "--comment", "acn overlay SNAT", "-j", SNATChain}

// EnsureOverlaySNAT installs, once per node, the overlay SNAT in the nat
// table of the current network namespace:
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
func EnsureOverlaySNAT(block, cluster *net.IPNet, lockPath, markerPath string) error {
	if snatMarked(block, cluster, markerPath) {
		return nil
	}
	lock, err := store.Acquire(lockPath, 60*time.Second)
	if err != nil {
		return err
	}
	defer lock.Release()
	if snatMarked(block, cluster, markerPath) {
		return nil
	}
	var in bytes.Buffer
	fmt.Fprintf(&in, "*nat\n:%s - [0:0]\n-A %s %s\nCOMMIT\n", SNATChain, SNATChain, quoteRule(snatRule(block, cluster)))
	if err := run("iptables-restore", &in, "-w", "5", "--noflush"); err != nil {
		return fmt.Errorf("overlay SNAT chain: %w", err)
	}
	if err := nat("-C", "POSTROUTING", jumpRule...); err != nil {
		if err := nat("-I", "POSTROUTING", append([]string{"1"}, jumpRule...)...); err != nil {
			return fmt.Errorf("overlay SNAT jump: %w", err)
		}
	}
	return store.Save(markerPath, &snatMarker{Block: block.String(), Cluster: cluster.String(), Done: time.Now()})
}

// CheckOverlaySNAT verifies the rule and the jump are in place (CHECK).
func CheckOverlaySNAT(block, cluster *net.IPNet) error {
	if err := nat("-C", SNATChain, snatRule(block, cluster)...); err != nil {
		return fmt.Errorf("overlay SNAT rule for %s missing: %v", block, err)
	}
	if err := nat("-C", "POSTROUTING", jumpRule...); err != nil {
		return fmt.Errorf("POSTROUTING jump to %s missing: %v", SNATChain, err)
	}
	return nil
}

func snatMarked(block, cluster *net.IPNet, markerPath string) bool {
	var m snatMarker
	ok, _ := store.Read(markerPath, &m)
	return ok && m.Block == block.String() && m.Cluster == cluster.String()
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

// nat runs iptables op on a chain of the nat table.
func nat(op, chain string, rule ...string) error {
	return run("iptables", nil, append([]string{"-w", "5", "-t", "nat", op, chain}, rule...)...)
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
