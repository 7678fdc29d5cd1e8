package iptables

import "github.com/open-acn/acn/npm/policy"

// Sizes are the lengths of the dataplane's maps (the shared core's, the
// programmed chains, the desired and dispatch sets, the trie), for the
// daemon's status and the soak test's growth check. Called where Apply
// is (the daemon's worker), like RuleCount.
func (d *Dataplane) Sizes() map[string]int {
	sz := d.want.Sizes()
	chains, groups, trie := 0, 0, 0
	for _, f := range d.families {
		chains += len(d.chains[f])
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			groups += len(d.fgroups[f][dir])
			trie += len(d.trie[f][dir])
		}
	}
	sz["chains"] = chains
	sz["familyGroups"] = groups
	sz["trieNodes"] = trie
	sz["wantSets"] = len(d.wantSets)
	sz["dispatchSets"] = len(d.dispatchSets)
	sz["retiringGroups"] = len(d.retiring)
	sz["kernelSets"] = d.sets.Len()
	return sz
}
