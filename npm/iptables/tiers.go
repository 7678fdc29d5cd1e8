package iptables

import (
	"fmt"
	"strings"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
)

// ClusterNetworkPolicies in the group chains. A dispatch group lists its
// policies in evaluation order (policy.Tier): Admin tier, NetworkPolicies,
// Baseline tier. Its chain inlines their rules in that order, each rule
// ending in its verdict:
//
//	Accept (and a NetworkPolicy allow)  -j RETURN  (back to ACN-NPM: allowed in this direction)
//	Deny                                -j DROP
//	Pass in the Admin tier              -g ACN-NPM-NI-/NE-<group>: the group's next-tier chain
//	Pass in the Baseline tier           -j RETURN  (the default, allow, decides)
//
// After the NetworkPolicies' rules comes the group's default DROP (only
// when a NetworkPolicy isolates the group's pods; the engine then leaves
// the Baseline tier out). Without a NetworkPolicy the chain ends after the
// Baseline rules and the packet returns: allowed. A group with an Admin
// Pass rule splits at the end of the Admin tier: the rest of the chain is
// its next-tier chain, which the chain reaches by -g too. So a packet
// still costs one dispatch plus the rules of the policies selecting its
// pod, and a group without cluster policies renders exactly as before.

// Next-tier chains of groups with an Admin Pass rule.
const (
	ChainNextIngressPrefix = "ACN-NPM-NI-"
	ChainNextEgressPrefix  = "ACN-NPM-NE-"
)

// passTarget stands for the group's next-tier chain in rendered Admin Pass
// rules (rules are rendered per policy, chains per group).
const passTarget = "%NEXT-TIER%"

// NextTierChain is the chain holding a group's NetworkPolicy and Baseline
// tiers, the target of its Admin Pass rules.
func NextTierChain(g *policy.Group) string {
	if g.Direction == policy.Egress {
		return ChainNextEgressPrefix + g.ID
	}
	return ChainNextIngressPrefix + g.ID
}

func ruleVerdict(t policy.Tier, a policy.Action) string {
	switch {
	case a == policy.ActionDeny:
		return "-j DROP"
	case a == policy.ActionPass && t == policy.TierAdmin:
		return "-g " + passTarget
	}
	return "-j RETURN"
}

// groupChains renders the chain (and next-tier chain) of one group.
func (d *Dataplane) groupChains(f policy.Family, dir policy.Direction, g *policy.Group) map[string][]string {
	gc := GroupChain(g)
	out := map[string][]string{}
	chain, next := gc, NextTierChain(g)
	var lines []string
	hasPass, np := false, false
	for _, k := range g.Policies {
		for _, body := range d.want.Policies[k][f][dir] {
			if strings.HasSuffix(body, " -g "+passTarget) {
				hasPass = true
			}
		}
	}
	for i, k := range g.Policies {
		p := d.want.Last.Policies[k]
		admin := p != nil && p.Tier == policy.TierAdmin
		if !admin && hasPass && chain == gc {
			// end of the Admin tier: the rest lives in the next-tier chain
			lines = append(lines, "-A "+gc+" -g "+next)
			out[gc] = lines
			chain, lines = next, nil
		}
		if p == nil || !p.Tier.Cluster() {
			np = true
		}
		for _, body := range d.want.Policies[k][f][dir] {
			lines = append(lines, "-A "+chain+strings.ReplaceAll(body, passTarget, next))
		}
		if i == len(g.Policies)-1 && hasPass && chain == gc {
			lines = append(lines, "-A "+gc+" -g "+next)
			out[gc] = lines
			chain, lines = next, []string{}
		}
	}
	if np {
		cm := comment("default deny " + dir.String() + " for pods selected by " + strings.Join(g.Policies, ","))
		if d.groupLogsDeny(g) {
			for _, body := range d.r.flowRules("", cm, flowlog.DenyID(g), "DROP") {
				lines = append(lines, "-A "+chain+body)
			}
		} else {
			lines = append(lines, fmt.Sprintf("-A %s -m comment --comment %s -j DROP", chain, cm))
		}
	}
	if lines == nil {
		lines = []string{}
	}
	out[chain] = lines
	return out
}
