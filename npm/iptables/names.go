// Package iptables is the Linux iptables + ipset dataplane of NPM. See
// npm/README.md for the chain layout.
package iptables

import (
	"github.com/open-acn/acn/npm/policy"
)

// Kernel object names. Every chain NPM owns starts with ChainPrefix and
// every set with SetPrefix; hashes are short stable hashes of the policy key
// or group key (policy.Hash), collisions are detected and refused.
const (
	// Table is the iptables table holding every NPM chain: mangle, whose
	// FORWARD and INPUT chains run on their hooks at priority -150, before
	// the filter table's (0). An ACCEPT in filter FORWARD (kube-proxy's
	// KUBE-FORWARD accepts masquerade-marked and established traffic, and
	// inserts its jumps with -I) therefore can never come before NPM's
	// decision, whatever order kube-proxy and NPM (re)write their rules
	// in: an ACCEPT ends only its own table's chain. kube-proxy and the
	// kubelet write nothing to mangle FORWARD or INPUT (only empty canary
	// chains in mangle). DNAT (nat PREROUTING, -100) has happened before
	// the forward and input hooks; SNAT (POSTROUTING) has not.
	Table = "mangle"
	// LegacyTable is where earlier versions kept NPM's chains; the first
	// Apply of a process removes them from there once its own are in.
	LegacyTable = "filter"

	ChainPrefix = "ACN-NPM"
	// ChainMain is jumped to from mangle FORWARD (its first rule).
	ChainMain = "ACN-NPM"
	// ChainInput is jumped to from mangle INPUT (its first rule): the
	// egress policies of local pods for their traffic to the node itself
	// (pod -> a node address), which never crosses FORWARD.
	ChainInput = "ACN-NPM-INPUT"
	// ChainIngress dispatches by destination local pod (one set match per
	// dispatch group) to the group's ingress chain.
	ChainIngress = "ACN-NPM-INGRESS"
	// ChainEgress dispatches by source local pod.
	ChainEgress = "ACN-NPM-EGRESS"
	// Per dispatch group (pods isolated by the same policy list): the
	// allow rules of its policies, each RETURNing on match, then DROP.
	ChainGroupIngressPrefix = "ACN-NPM-GI-"
	ChainGroupEgressPrefix  = "ACN-NPM-GE-"
	// Inner nodes of the dispatch trie (see trie.go).
	ChainTrieIngressPrefix = "ACN-NPM-TI-"
	ChainTrieEgressPrefix  = "ACN-NPM-TE-"

	// SetPrefix starts every NPM ipset; the family digit follows
	// (acn-npm4-..., acn-npm6-...).
	SetPrefix = "acn-npm"

	// NPM uses no packet mark: allowed traffic RETURNs from the group
	// chain, denied traffic is DROPped there, so nothing can clash with
	// kube-proxy's 0x4000/0x8000 or any CNI's marks.
)

// JumpComment marks NPM's jumps in FORWARD and INPUT.
const JumpComment = "acn-npm network policy"

// hook is a built-in chain of Table that NPM jumps from, as its first rule.
type hook struct{ builtin, target string }

// hooks are NPM's entry points: FORWARD (pod traffic routed or bridged
// through the node: both directions) and INPUT (local pods' egress to the
// node's own addresses).
var hooks = []hook{{"FORWARD", ChainMain}, {"INPUT", ChainInput}}

func famDigit(f policy.Family) string {
	if f == policy.IPv6 {
		return "6"
	}
	return "4"
}

// SetName is the kernel name of a model set in one family.
func SetName(f policy.Family, id string) string { return SetPrefix + famDigit(f) + "-" + id }

// RemoteSetName is the set of the addresses of Remote endpoints (pods of
// other nodes backing NodePort/LoadBalancer services): traffic to them not
// DNATed by this node skips ingress evaluation here.
func RemoteSetName(f policy.Family) string { return SetPrefix + famDigit(f) + "-remote" }

// GroupSetName is the kernel set of the local pod IPs of a dispatch group.
func GroupSetName(f policy.Family, g *policy.Group) string {
	d := "gi"
	if g.Direction == policy.Egress {
		d = "ge"
	}
	return SetPrefix + famDigit(f) + "-" + d + g.ID
}

// GroupChain is the chain of a dispatch group.
func GroupChain(g *policy.Group) string {
	if g.Direction == policy.Egress {
		return ChainGroupEgressPrefix + g.ID
	}
	return ChainGroupIngressPrefix + g.ID
}
