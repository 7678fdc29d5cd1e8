//go:build linux

package nftables

import (
	"strings"

	"github.com/google/nftables/expr"

	"github.com/open-acn/acn/npm/policy"
)

// ClusterNetworkPolicies in the group chains. A group lists its policies
// in evaluation order (policy.Tier): Admin tier, NetworkPolicies, Baseline
// tier. The group chain
//
//   - inlines the Admin tier's rules in order (accept, drop, or for Pass
//     `goto` the group's next-tier chain): a Pass must skip the rest of the
//     tier, which a rule in a jumped-to policy chain cannot do;
//   - then jumps to each NetworkPolicy's chain (accept on a match) and
//     drops (when a NetworkPolicy isolates the group's pods; the engine
//     then leaves the Baseline tier out);
//   - or jumps to each Baseline policy's chain, whose rules accept, drop,
//     or accept for Pass (the default, allow, decides); no match returns
//     and the base chain's policy accepts.
//
// A group with an Admin Pass rule splits after the Admin tier: the rest is
// its next-tier chain `ni-`/`ne-<group>`, reached by goto from the Pass
// rules and at the end of the Admin tier. An accept ends only this base
// chain, as for NetworkPolicies: an egress Accept never skips the
// destination's ingress evaluation.

// Next-tier chains of groups with an Admin Pass rule.
const (
	ChainNextIngressPrefix = "ni-"
	ChainNextEgressPrefix  = "ne-"
)

// passTarget stands for the group's next-tier chain in rendered Admin Pass
// rules (rules are rendered per policy, chains per group).
const passTarget = "%next-tier%"

// NextTierChain is the chain of a group's NetworkPolicy and Baseline tiers.
func NextTierChain(g *policy.Group) string {
	if g.Direction == policy.Egress {
		return ChainNextEgressPrefix + g.ID
	}
	return ChainNextIngressPrefix + g.ID
}

// ruleVerdict is a rule's final expression and its nft text.
func ruleVerdict(t policy.Tier, a policy.Action) (*expr.Verdict, string) {
	switch {
	case a == policy.ActionDeny:
		return &expr.Verdict{Kind: expr.VerdictDrop}, "drop"
	case a == policy.ActionPass && t == policy.TierAdmin:
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: passTarget}, "goto " + passTarget
	}
	return &expr.Verdict{Kind: expr.VerdictAccept}, "accept"
}

// groupChains renders the chain (and next-tier chain) of one group.
func groupChains(dir policy.Direction, g *policy.Group, pols map[string]*policy.Policy, rendered map[string][]*kchain, logDeny func(g *policy.Group, cm string) []krule) []*kchain {
	gc, next := GroupChain(g), NextTierChain(g)
	desc := strings.Join(g.Policies, ",")
	adminRules := func(k string) []krule {
		for _, kc := range rendered[k] {
			if kc.name == PolicyChain(dir, k) {
				return kc.rules
			}
		}
		return nil
	}
	hasPass := false
	for _, k := range g.Policies {
		if p := pols[k]; p != nil && p.Tier == policy.TierAdmin {
			for _, r := range adminRules(k) {
				if strings.HasSuffix(r.text, "goto "+passTarget) {
					hasPass = true
				}
			}
		}
	}
	cur := &kchain{name: gc, policy: desc}
	out := []*kchain{cur}
	np, inAdmin := false, true
	for _, k := range g.Policies {
		p := pols[k]
		if p == nil {
			np = true
			continue
		}
		if p.Tier == policy.TierAdmin {
			for _, r := range adminRules(k) {
				if strings.HasSuffix(r.text, "goto "+passTarget) {
					es := append(append([]expr.Any(nil), r.exprs[:len(r.exprs)-1]...), &expr.Verdict{Kind: expr.VerdictGoto, Chain: next})
					r = newRule(strings.ReplaceAll(r.text, passTarget, next), r.comment, es...)
				}
				cur.rules = append(cur.rules, r)
			}
			continue
		}
		if inAdmin && hasPass {
			cur = splitNext(cur, next, desc)
			out = append(out, cur)
		}
		inAdmin = false
		np = np || p.Tier == policy.TierNetworkPolicy
		pc := PolicyChain(dir, k)
		cur.rules = append(cur.rules, newRule("jump "+pc, "policy "+k, &expr.Verdict{Kind: expr.VerdictJump, Chain: pc}))
	}
	if inAdmin && hasPass {
		cur = splitNext(cur, next, desc)
		out = append(out, cur)
	}
	if np {
		cm := "default deny " + dir.String() + " for pods selected by " + desc
		if lr := logDeny; lr != nil && lr(g, cm) != nil {
			cur.rules = append(cur.rules, lr(g, cm)...)
		} else {
			cur.rules = append(cur.rules, newRule("drop", cm, &expr.Verdict{Kind: expr.VerdictDrop}))
		}
	}
	return out
}

// splitNext ends chain c with a goto to the next-tier chain and returns
// that (empty) chain.
func splitNext(c *kchain, next, desc string) *kchain {
	c.rules = append(c.rules, newRule("goto "+next, "next tier", &expr.Verdict{Kind: expr.VerdictGoto, Chain: next}))
	return &kchain{name: next, policy: desc, rules: []krule{}}
}
