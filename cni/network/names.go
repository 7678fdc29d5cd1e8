//go:build linux

// Package network does the kernel work of azure-vnet over netlink: the
// per-pod veth pair, the pod's addresses, routes and neighbour entries,
// and the node side (a bridge with the master interface enslaved, or a
// host route per pod in transparent mode).
//
// Nothing here takes the node-wide state lock: netlink operations on
// different pods do not conflict, and the one shared object (the bridge)
// is set up under its own lock the first time only.
package network

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
)

// HostVethPrefix starts the name of every host-side veth azure-vnet makes.
const HostVethPrefix = "azv"

// HostVethName derives the host-side veth name from the full container ID
// and the interface name: 12 hex digits of a SHA-256 (48 bits) after the
// prefix fill the kernel's 15 characters. A new pod never reuses an old
// pod's name (unlike names from the pod name or an ID prefix), and DEL
// finds the veth without any state.
func HostVethName(containerID, ifName string) string {
	h := sha256.Sum256([]byte(containerID + "/" + ifName))
	return HostVethPrefix + hex.EncodeToString(h[:6])
}

// aliasPrefix marks the host veth's alias (IFLA_IFALIAS) written by us. The
// alias records what the state file records, so a lost or corrupt state
// file can be rebuilt from the kernel.
const aliasPrefix = "acn1"

// Owner is what the kernel records about an endpoint in the host veth's
// alias.
type Owner struct {
	ContainerID string
	IfName      string
	Mode        string
	IPs         []*net.IPNet // as configured in the pod, primary family first
	Netns       string       // pod namespace path; "" if it did not fit
}

// JoinCIDRs writes addresses as a comma-separated list.
func JoinCIDRs(ips []*net.IPNet) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

// ParseCIDRs reads what JoinCIDRs wrote, keeping each address (not its
// network) with its prefix; IPv4 addresses in their 4-byte form.
func ParseCIDRs(s string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, c := range strings.Split(s, ",") {
		ip, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, err
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		n.IP = ip
		out = append(out, n)
	}
	return out, nil
}

// Alias encodes o for IFLA_IFALIAS (at most 255 bytes: a 64-character
// container ID, a 15-character name and two CIDRs fit; an unusually long
// namespace path is left out).
func (o Owner) Alias() string {
	s := strings.Join([]string{aliasPrefix, o.ContainerID, o.IfName, o.Mode, JoinCIDRs(o.IPs), o.Netns}, "|")
	if len(s) > 255 || strings.Contains(o.Netns, "|") {
		s = strings.Join([]string{aliasPrefix, o.ContainerID, o.IfName, o.Mode, JoinCIDRs(o.IPs), ""}, "|")
	}
	return s
}

// ParseAlias decodes an alias written by Alias.
func ParseAlias(s string) (Owner, error) {
	parts := strings.Split(s, "|")
	if len(parts) != 6 || parts[0] != aliasPrefix {
		return Owner{}, fmt.Errorf("alias %q is not an azure-vnet endpoint", s)
	}
	ips, err := ParseCIDRs(parts[4])
	if err != nil {
		return Owner{}, fmt.Errorf("alias %q: %v", s, err)
	}
	return Owner{ContainerID: parts[1], IfName: parts[2], Mode: parts[3], IPs: ips, Netns: parts[5]}, nil
}
