//go:build linux

package network

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// The Azure host only accepts frames from a NIC with the NIC's own MAC
// address, and only delivers frames to it. Pods on the bridge have MACs
// of their own, so bridge mode translates at the master interface, with
// two node-wide ebtables rules set up once with the bridge (no per-pod
// rule, so ADD and DEL never exec ebtables):
//
//   - frames leaving through the master get the NIC's MAC as source, and
//     ARP requests the NIC's MAC as sender address (so the VNet answers
//     the NIC, which is all it knows);
//   - ARP replies arriving on the master are delivered as broadcast on the
//     bridge, so the pod that asked sees its answer.
//
// IPv4 frames from the VNet to a pod address arrive with the NIC's (= the
// bridge's) MAC as destination: the bridge hands them to the node, which
// forwards them to the pod on the same bridge (ip_forward on, redirects
// off). Pod to pod and node to pod traffic stays plain L2 on the bridge.
// Pods keep their own IP addresses throughout: there is no IP NAT.
func macRules(master, nicMAC string) [][]string {
	return [][]string{
		{"-t", "nat", "POSTROUTING", "-o", master, "-j", "snat", "--to-src", nicMAC, "--snat-arp", "--snat-target", "ACCEPT"},
		{"-t", "nat", "PREROUTING", "-i", master, "-p", "ARP", "--arp-op", "Reply", "-j", "dnat", "--to-dst", "ff:ff:ff:ff:ff:ff", "--dnat-target", "ACCEPT"},
	}
}

// ErrNoEbtables means the ebtables command is not installed.
var ErrNoEbtables = errors.New("ebtables not found")

func ebtables(op string, rule []string) error {
	path, err := exec.LookPath("ebtables")
	if err != nil {
		return ErrNoEbtables
	}
	// rule is {"-t", table, chain, match...}: the operation goes before the chain.
	args := append([]string{rule[0], rule[1], op, rule[2]}, rule[3:]...)
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ebtables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ensureMACRules adds the rules once (deleting an earlier copy first, so a
// setup repeated after a crash does not duplicate them).
func ensureMACRules(master, nicMAC string) error {
	removeMACRules(master, nicMAC)
	for _, r := range macRules(master, nicMAC) {
		if err := ebtables("-A", r); err != nil {
			return err
		}
	}
	return nil
}

func removeMACRules(master, nicMAC string) {
	for _, r := range macRules(master, nicMAC) {
		for ebtables("-D", r) == nil {
		}
	}
}
