package hnsacl

import (
	"fmt"

	"github.com/open-acn/acn/npm/policy"
)

// ClusterNetworkPolicies as ACL priorities. HNS evaluates an endpoint's
// ACLs by ascending priority and the first match decides, which is the
// tiers' "first matching rule decides" (policy.Tier):
//
//	100            node health probes (ingress; as for NetworkPolicies)
//	101–199        Admin tier: one priority per rule, in evaluation order;
//	               Accept = Allow, Deny = Block
//	200            NetworkPolicy allows (additive: one priority)
//	4000           default deny, only when a NetworkPolicy isolates the pod
//	4001–65000     Baseline tier, one priority per rule; Accept and Pass =
//	               Allow (a Baseline Pass hands over to the default, allow),
//	               Deny = Block
//
// HNS has no jump, so an Admin Pass (skip the rest of the Admin tier) is
// approximated on the safe side and reported as a failure: the Pass rule
// itself gets no ACL (its traffic reaches the NetworkPolicy priorities),
// and every later Admin Accept rule of the endpoint is left out (its
// traffic, too, goes on to the NetworkPolicy and Baseline tiers instead of
// being accepted), while later Admin Deny rules stay (they may drop
// traffic the Pass handed to the NetworkPolicies). So a Pass can make the
// node deny more than the API says, never allow more. More than 99 Admin
// rules on one endpoint: the rest are left out as failures, except Deny
// rules, which then all share priority 199 (order among Deny rules does
// not matter).
const (
	priorityAdminFirst    uint16 = PriorityHost + 1
	priorityAdminLast     uint16 = PriorityAllow - 1
	priorityBaselineFirst uint16 = PriorityBlock + 1
	priorityBaselineLast  uint16 = 65000
)

// tierPriorities hands out the priorities of one endpoint direction.
type tierPriorities struct {
	admin, baseline uint16
	passed          bool // an Admin Pass rule came earlier
}

func newTierPriorities() *tierPriorities {
	return &tierPriorities{admin: priorityAdminFirst, baseline: priorityBaselineFirst}
}

// next returns the ACL action and priority of a rule; false: no ACL.
func (t *tierPriorities) next(r *renderer, e *policy.Endpoint, pol *policy.Policy, d policy.Direction, ri int, rule policy.Rule) (Action, uint16, bool) {
	action := Allow
	if rule.Action == policy.ActionDeny {
		action = Block
	}
	switch pol.Tier {
	case policy.TierAdmin:
		switch {
		case rule.Action == policy.ActionPass:
			t.passed = true
			r.fail(pol.Key(), e.Key(), fmt.Sprintf("%s rule %d: HNS cannot skip the rest of the Admin tier (Pass); later Admin Accept rules of this pod are left out (fail closed)", d, ri))
			return "", 0, false
		case t.passed && action == Allow:
			return "", 0, false // reported at the Pass
		case t.admin > priorityAdminLast:
			if action == Block {
				return Block, priorityAdminLast, true
			}
			r.fail(pol.Key(), e.Key(), fmt.Sprintf("%s rule %d: more than %d Admin rules on one pod; this Accept rule is left out (fail closed)", d, ri, priorityAdminLast-priorityAdminFirst+1))
			return "", 0, false
		}
		p := t.admin
		t.admin++
		return action, p, true
	case policy.TierBaseline:
		if t.baseline > priorityBaselineLast {
			if action == Block {
				return Block, priorityBaselineLast, true
			}
			r.fail(pol.Key(), e.Key(), fmt.Sprintf("%s rule %d: too many Baseline rules on one pod; left out", d, ri))
			return "", 0, false
		}
		p := t.baseline
		t.baseline++
		return action, p, true
	}
	return Allow, PriorityAllow, true
}

// with sets an ACL's action and priority.
func (a ACL) with(action Action, prio uint16) ACL {
	a.Action, a.Priority = action, prio
	return a
}
