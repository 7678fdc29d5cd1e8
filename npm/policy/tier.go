package policy

import (
	"fmt"
	"sort"
)

// Tier says where a policy's rules are evaluated. Cluster-wide policies
// (ClusterNetworkPolicy, sigs.k8s.io/network-policy-api) sit in the Admin
// tier (before every NetworkPolicy) or the Baseline tier (after them); a
// NetworkPolicy is the zero value.
//
// For one pod and one direction the verdict is the first of:
//
//  1. Admin tier: the Admin policies selecting the pod in Order (priority,
//     then name); within a policy its rules in order. The first rule that
//     matches decides: Allow (Accept) allows, Deny drops, Pass skips the
//     rest of the Admin tier.
//  2. NetworkPolicy tier: if any NetworkPolicy isolates the pod, the packet
//     is allowed when one of their rules matches, else dropped (final).
//  3. Baseline tier: as the Admin tier; Pass skips the rest of it.
//  4. Default: allowed.
type Tier uint8

const (
	TierNetworkPolicy Tier = iota // a namespaced NetworkPolicy (the zero value)
	TierAdmin                     // ClusterNetworkPolicy tier Admin
	TierBaseline                  // ClusterNetworkPolicy tier Baseline
)

func (t Tier) String() string {
	switch t {
	case TierAdmin:
		return "Admin"
	case TierBaseline:
		return "Baseline"
	default:
		return "NetworkPolicy"
	}
}

// rank is the tier's place in the evaluation order.
func (t Tier) rank() int {
	switch t {
	case TierAdmin:
		return 0
	case TierBaseline:
		return 2
	default:
		return 1
	}
}

// Cluster reports whether the tier holds cluster-wide policies.
func (t Tier) Cluster() bool { return t != TierNetworkPolicy }

// Action is what a matching rule does. NetworkPolicy rules only allow.
type Action uint8

const (
	ActionAllow Action = iota // NetworkPolicy allow, ClusterNetworkPolicy Accept
	ActionDeny                // drop; no later rule or tier is consulted
	ActionPass                // skip the rest of the tier (Admin: on to NetworkPolicy; Baseline: default allow)
)

func (a Action) String() string {
	switch a {
	case ActionDeny:
		return "Deny"
	case ActionPass:
		return "Pass"
	default:
		return "Accept"
	}
}

// ClusterPolicyKeyPrefix starts the key of a cluster-wide policy:
// "ClusterNetworkPolicy/<name>". No namespace can be named so (namespaces
// are lower case), so keys of both kinds never collide.
const ClusterPolicyKeyPrefix = "ClusterNetworkPolicy/"

// ClusterPolicyKey is the key of the ClusterNetworkPolicy name.
func ClusterPolicyKey(name string) string { return ClusterPolicyKeyPrefix + name }

// Describe names the policy for logs and explain: "ns/name", or
// "ClusterNetworkPolicy/name (Admin tier, priority 10)".
func (p *Policy) Describe() string {
	if !p.Tier.Cluster() {
		return p.Key()
	}
	return fmt.Sprintf("%s (%s tier, priority %d)", p.Key(), p.Tier, p.Priority)
}

// Before reports whether policy a is evaluated before policy b: by tier
// (Admin, NetworkPolicy, Baseline), then priority (lower first), then key.
// Ties between policies of one tier and priority are therefore broken by
// name, deterministically on every node and dataplane. (NetworkPolicies
// are additive, so their order does not change a verdict.)
func Before(a, b *Policy) bool {
	if ra, rb := a.Tier.rank(), b.Tier.rank(); ra != rb {
		return ra < rb
	}
	if a.Priority != b.Priority {
		return a.Priority < b.Priority
	}
	return a.Key() < b.Key()
}

// Order sorts policy keys into evaluation order (Before); keys without a
// policy in s go last, by key.
func (s *State) Order(keys []string) {
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := s.Policies[keys[i]], s.Policies[keys[j]]
		switch {
		case a != nil && b != nil:
			return Before(a, b)
		case a == nil && b == nil:
			return keys[i] < keys[j]
		default:
			return a != nil
		}
	})
}
