package flowlog

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/open-acn/acn/npm/policy"
)

// An ID names the rule that decided a connection, compactly enough for
// the kernel's log prefix (NFLOG: 63 bytes; at most 27 here):
//
//	acn:<verdict><direction><kind>:<hash>[:<rule>]
//
// verdict a (allow) or d (deny); direction i (ingress) or e (egress);
// kind and hash:
//
//	n  a NetworkPolicy's allow rule: hash = policy.Hash(namespace/name, 12), rule = its index
//	g  the default deny of a dispatch group (the local pods isolated by the
//	   same policies): hash = the group's ID, no rule
//
//	a  a ClusterNetworkPolicy Admin-tier Accept or Deny rule,
//	b  a ClusterNetworkPolicy Baseline-tier rule: hash = policy.Hash of
//	   the policy's key, rule = its index (an Admin Pass is no verdict and
//	   is not logged; the tier after it logs)
type ID struct {
	Allow     bool
	Direction policy.Direction
	Kind      Kind
	Hash      string
	Rule      int // KindRule only
}

// Kind is what decided.
type Kind byte

const (
	KindRule     Kind = 'n' // a NetworkPolicy allow rule
	KindGroup    Kind = 'g' // a dispatch group's default deny
	KindAdmin    Kind = 'a' // a ClusterNetworkPolicy Admin-tier rule
	KindBaseline Kind = 'b' // a ClusterNetworkPolicy Baseline-tier rule
)

const idPrefix = "acn:"

// HashLen is the length of the hash in an ID.
const HashLen = 12

// RuleID is the ID of an allow rule of a NetworkPolicy.
func RuleID(policyKey string, d policy.Direction, rule int) string {
	return ID{Allow: true, Direction: d, Kind: KindRule, Hash: policy.Hash(policyKey, HashLen), Rule: rule}.String()
}

// PolicyRuleID is the ID of rule of p in direction d with the verdict
// allow (see Logged): KindRule for a NetworkPolicy, KindAdmin or
// KindBaseline for a ClusterNetworkPolicy.
func PolicyRuleID(p *policy.Policy, d policy.Direction, rule int, allow bool) string {
	if !p.Tier.Cluster() {
		return RuleID(p.Key(), d, rule)
	}
	k := KindAdmin
	if p.Tier == policy.TierBaseline {
		k = KindBaseline
	}
	return ID{Allow: allow, Direction: d, Kind: k, Hash: policy.Hash(p.Key(), HashLen), Rule: rule}.String()
}

// Logged reports whether a rule of p with action a is logged under p's
// flow-log mode, and whether its verdict is an allow. A NetworkPolicy
// rule allows; an Admin Pass decides nothing (the next tier does) and is
// never logged; a Baseline Pass leaves the default, allow.
func Logged(p *policy.Policy, a policy.Action) (allow, ok bool) {
	if !p.Tier.Cluster() {
		return true, p.FlowLog.Allow()
	}
	switch {
	case a == policy.ActionPass && p.Tier == policy.TierAdmin:
		return false, false
	case a == policy.ActionDeny:
		return false, p.FlowLog.Deny()
	}
	return true, p.FlowLog.Allow()
}

// DenyID is the ID of the default deny of a dispatch group.
func DenyID(g *policy.Group) string {
	return ID{Direction: g.Direction, Kind: KindGroup, Hash: g.ID}.String()
}

func (id ID) String() string {
	v, d := byte('d'), byte('i')
	if id.Allow {
		v = 'a'
	}
	if id.Direction == policy.Egress {
		d = 'e'
	}
	s := idPrefix + string([]byte{v, d, byte(id.Kind)}) + ":" + id.Hash
	if id.Kind != KindGroup {
		s += ":" + strconv.Itoa(id.Rule)
	}
	return s
}

// ParseID parses an ID (the prefix of an NFLOG message).
func ParseID(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, idPrefix)
	parts := strings.Split(rest, ":")
	if !ok || len(parts) < 2 || len(parts[0]) != 3 || parts[1] == "" {
		return ID{}, fmt.Errorf("flow log id %q: not an azure-npm rule id", s)
	}
	var id ID
	switch parts[0][0] {
	case 'a':
		id.Allow = true
	case 'd':
	default:
		return ID{}, fmt.Errorf("flow log id %q: verdict %q", s, parts[0][0])
	}
	switch parts[0][1] {
	case 'i':
		id.Direction = policy.Ingress
	case 'e':
		id.Direction = policy.Egress
	default:
		return ID{}, fmt.Errorf("flow log id %q: direction %q", s, parts[0][1])
	}
	id.Kind, id.Hash = Kind(parts[0][2]), parts[1]
	switch id.Kind {
	case KindGroup:
		if len(parts) != 2 {
			return ID{}, fmt.Errorf("flow log id %q: a default deny has no rule index", s)
		}
	case KindRule, KindAdmin, KindBaseline:
		if len(parts) != 3 {
			return ID{}, fmt.Errorf("flow log id %q: want a rule index", s)
		}
		n, err := strconv.Atoi(parts[2])
		if err != nil || n < 0 {
			return ID{}, fmt.Errorf("flow log id %q: rule index %q", s, parts[2])
		}
		id.Rule = n
	default:
		return ID{}, fmt.Errorf("flow log id %q: kind %q", s, parts[0][2])
	}
	return id, nil
}
