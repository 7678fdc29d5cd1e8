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
	ChainPrefix = "ACN-NPM"
	// ChainMain is jumped to from FORWARD (first rule, before kube-proxy's
	// KUBE-FORWARD which ACCEPTs masquerade-marked traffic).
	ChainMain = "ACN-NPM"
	// ChainIngress dispatches by destination local pod (one set match per
	// dispatch group) to the group's ingress chain.
	ChainIngress = "ACN-NPM-INGRESS"
	// ChainEgress dispatches by source local pod.
	ChainEgress = "ACN-NPM-EGRESS"
	// Per dispatch group (pods isolated by the same policy list).
	ChainGroupIngressPrefix = "ACN-NPM-GI-"
	ChainGroupEgressPrefix  = "ACN-NPM-GE-"
	// Inner nodes of the dispatch trie (see trie.go).
	ChainTrieIngressPrefix = "ACN-NPM-TI-"
	ChainTrieEgressPrefix  = "ACN-NPM-TE-"
	// Per policy and direction: its allow rules, which set MarkAllow.
	ChainPolicyIngressPrefix = "ACN-NPM-I-"
	ChainPolicyEgressPrefix  = "ACN-NPM-E-"

	// SetPrefix starts every NPM ipset; the family digit follows
	// (acn-npm4-..., acn-npm6-...).
	SetPrefix = "acn-npm"

	// MarkAllow is the one mark bit NPM uses (masked): set by a policy
	// chain when a rule allows the packet, tested and cleared by the group
	// chain. It avoids kube-proxy's 0x4000 (masquerade) and 0x8000 (drop),
	// Calico's 0xffff0000 defaults aside, and Cilium's 0x0f00.
	MarkAllow = 0x100000

	hashLen = 12
)

// JumpComment marks NPM's jump in FORWARD.
const JumpComment = "acn-npm network policy"

func famDigit(f policy.Family) string {
	if f == policy.IPv6 {
		return "6"
	}
	return "4"
}

// SetName is the kernel name of a model set in one family.
func SetName(f policy.Family, id string) string { return SetPrefix + famDigit(f) + "-" + id }

// GroupSetName is the kernel set of the local pod IPs of a dispatch group.
func GroupSetName(f policy.Family, g *policy.Group) string {
	d := "gi"
	if g.Direction == policy.Egress {
		d = "ge"
	}
	return SetPrefix + famDigit(f) + "-" + d + g.ID
}

// PolicyChain is the chain of a policy's rules in one direction.
func PolicyChain(d policy.Direction, key string) string {
	if d == policy.Egress {
		return ChainPolicyEgressPrefix + policy.Hash(key, hashLen)
	}
	return ChainPolicyIngressPrefix + policy.Hash(key, hashLen)
}

// GroupChain is the chain of a dispatch group.
func GroupChain(g *policy.Group) string {
	if g.Direction == policy.Egress {
		return ChainGroupEgressPrefix + g.ID
	}
	return ChainGroupIngressPrefix + g.ID
}
