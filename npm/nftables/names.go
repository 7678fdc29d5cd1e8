//go:build linux

// Package nftables is the native nftables dataplane of NPM: the model of
// npm/policy programmed over netlink (github.com/google/nftables, no exec of
// `nft`) into one table, `inet azure-npm`, that NPM owns and that nothing
// else writes. One batch of changes is one netlink transaction (one
// Conn.Flush): the kernel applies all of it or none.
//
// # Layout (see README.md in this directory for the full picture)
//
//	table inet azure-npm {
//	  map ingress4 { type ipv4_addr : verdict }   # local pod IP -> goto its ingress group chain
//	  map ingress6 { type ipv6_addr : verdict }
//	  map egress4  { type ipv4_addr : verdict }   # local pod IP -> goto its egress group chain
//	  map egress6  { type ipv6_addr : verdict }
//	  set s4-<set id> { type ipv4_addr; }                       # SetIP: exact pod IPs
//	  set s4-<set id> { type ipv4_addr; flags interval; }       # SetNet: cidr minus excepts
//	  set s4-<set id> { type ipv4_addr . inet_proto . inet_service; }  # SetIPPort: named port
//	  (and s6-... for IPv6)
//
//	  chain egress {   # hook forward priority filter - 10 (-10)
//	    ct state established,related accept
//	    ip saddr vmap @egress4
//	    ip6 saddr vmap @egress6
//	  }
//	  chain ingress {  # hook forward priority filter - 5 (-5)
//	    ct state established,related accept
//	    ct status & dnat == 0 ip daddr @remote4 accept   # pods of other nodes: only DNATed traffic
//	    ct status & dnat == 0 ip6 daddr @remote6 accept
//	    ip daddr vmap @ingress4
//	    ip6 daddr vmap @ingress6
//	  }
//	  chain input {    # hook input priority filter - 10 (-10): pod -> its node
//	    ct state established,related accept
//	    meta nfproto ipv6 icmpv6 type 133-136 accept   # neighbour discovery
//	    ip saddr vmap @egress4
//	    ip6 saddr vmap @egress6
//	  }
//	  chain gi-<group> { jump pi-<policy>; jump pi-<policy>; ... drop }  # pods isolated by the same policies
//	  chain ge-<group> { jump pe-<policy>; ...; drop }
//	  chain pi-<policy> { <peer/port matches> accept; ... }            # a policy's ingress allow rules
//	  chain pe-<policy> { ... }                                        # its egress allow rules
//	}
//
// # Verdict semantics
//
// A packet that a policy rule allows is ACCEPTed by the rule (from inside
// pi-/pe- chains). In nftables an accept ends only the evaluation of the
// current base chain: every other base chain on the hook (NPM's other
// direction, kube-proxy's table, iptables-nft's filter FORWARD, legacy
// iptables) still sees the packet, so an allow here never bypasses anyone
// else's policy, and a DROP (the end of every group chain) is final. This is
// why egress and ingress are two base chains rather than one: an egress allow
// must not skip the ingress evaluation. Packets of pods that no policy
// selects miss the maps and fall off the end of both chains (policy accept,
// which again only means "no objection from NPM").
//
// Only NEW connections are evaluated: conntrack states established and
// related are accepted first in both base chains (the same as the iptables
// dataplane's RETURN).
package nftables

import (
	"github.com/open-acn/acn/npm/policy"
)

// Kernel object names. Everything lives in one table; per-object names
// are short stable hashes (policy.Hash) of the policy key, group key or
// model set ID, and collisions are detected and refused.
const (
	// TableName is NPM's table, family inet (IPv4 and IPv6 in one table).
	TableName = "azure-npm"

	// ChainEgress is the base chain evaluating egress (by source local
	// pod), hooked on forward at PriorityEgress.
	ChainEgress = "egress"
	// ChainIngress is the base chain evaluating ingress (by destination
	// local pod), hooked on forward at PriorityIngress, after egress.
	ChainIngress = "ingress"
	// ChainInput is the base chain evaluating the egress of local pods
	// to the node itself (pod -> a node address: the input hook, never
	// forward), hooked on input at PriorityInput, with the egress maps.
	ChainInput = "input"

	// PriorityEgress and PriorityIngress are the base chains' priorities
	// on the forward hook: before kube-proxy's nftables filter-forward
	// chain (priority filter, 0) and the iptables filter table
	// (iptables-nft's and legacy's FORWARD at 0). An accept in any of
	// those ends only its own base chain, so their order cannot open
	// anything. DNAT (prerouting, -100) has already happened, SNAT
	// (postrouting, 100) has not: the forward hook sees the real pod
	// addresses in both directions.
	PriorityEgress  = -10
	PriorityIngress = -5
	// PriorityInput: on the input hook, before kube-proxy's filter-input
	// (0) and the iptables filter INPUT (0), after DNAT (-100).
	PriorityInput = -10

	// Dispatch verdict maps: local pod IP -> goto group chain.
	MapIngress4 = "ingress4"
	MapIngress6 = "ingress6"
	MapEgress4  = "egress4"
	MapEgress6  = "egress6"

	// Remote4 and Remote6 hold the addresses of Remote endpoints (pods of
	// other nodes backing NodePort/LoadBalancer services): the ingress
	// chain accepts traffic to them that this node did not DNAT (their
	// own node decides it).
	Remote4 = "remote4"
	Remote6 = "remote6"

	// Per dispatch group (pods isolated by the same policy list): jump to
	// each policy's chain, then drop.
	ChainGroupIngressPrefix = "gi-"
	ChainGroupEgressPrefix  = "ge-"
	// Per policy and direction: its allow rules (verdict accept).
	ChainPolicyIngressPrefix = "pi-"
	ChainPolicyEgressPrefix  = "pe-"

	// SetPrefix4 and SetPrefix6 start the kernel sets of model sets
	// (s4-<model set ID>, s6-<model set ID>).
	SetPrefix4 = "s4-"
	SetPrefix6 = "s6-"

	hashLen = 12

	// maxComment bounds comments (the kernel keeps at most 256 bytes of
	// user data per rule or set).
	maxComment = 200
)

// SetName is the kernel set of a model set in one family.
func SetName(f policy.Family, id string) string {
	if f == policy.IPv6 {
		return SetPrefix6 + id
	}
	return SetPrefix4 + id
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

// DispatchMap is the verdict map of one direction and family.
func DispatchMap(d policy.Direction, f policy.Family) string {
	switch {
	case d == policy.Egress && f == policy.IPv6:
		return MapEgress6
	case d == policy.Egress:
		return MapEgress4
	case f == policy.IPv6:
		return MapIngress6
	}
	return MapIngress4
}
