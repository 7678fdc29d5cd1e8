package iptables

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/open-acn/acn/npm/policy"
)

// Flow logs (dataplane.FlowLog). A logged verdict rule becomes three rules
// with the same match:
//
//	<match> -m hashlimit --hashlimit-above R/sec ... -g ACN-NPM-FLOW-ALLOW   (over the limit: counted there, same verdict)
//	<match> -j NFLOG --nflog-prefix <flowlog ID> --nflog-group G            (within it: logged; NFLOG does not terminate)
//	<match> -j RETURN                                                       (the verdict, as without flow logs)
//
// (DROP and ACN-NPM-FLOW-DENY for a default deny). All hashlimit matches
// share one bucket per family (one --hashlimit-name, no --hashlimit-mode):
// the limit is per node, not per rule. A packet within the limit takes a
// token in the first rule and is logged by the second; one over it jumps
// to the shared over-limit chain, whose single rule's packet counter is
// npm_flow_log_dropped_total, and gets the same verdict there. Those
// chains never change, so their counters survive every rewrite of the
// group chains (and a daemon restart).
const (
	ChainFlowAllow = "ACN-NPM-FLOW-ALLOW"
	ChainFlowDeny  = "ACN-NPM-FLOW-DENY"
	// flowHashlimit names the shared bucket (at most 15 bytes).
	flowHashlimit = "acn-npm-flow"
)

func (r *renderer) flowLogging() bool { return r.flowLog.Enabled() }

// flowRules expands one verdict rule's match (the body after "-A CHAIN",
// before the comment) into the bodies of the logged form; verdict is
// RETURN or DROP.
func (r *renderer) flowRules(body, cm, id, verdict string) []string {
	over, tgt := ChainFlowAllow, "RETURN"
	if verdict == "DROP" {
		over, tgt = ChainFlowDeny, "DROP"
	}
	fl := r.flowLog
	return []string{
		fmt.Sprintf("%s -m hashlimit --hashlimit-above %d/sec --hashlimit-burst %d --hashlimit-name %s -m comment --comment %s -g %s", body, fl.Rate, fl.Burst, flowHashlimit, cm, over),
		fmt.Sprintf("%s -m comment --comment %s -j NFLOG --nflog-prefix \"%s\" --nflog-group %d", body, cm, id, fl.Group),
		fmt.Sprintf("%s -m comment --comment %s -j %s", body, cm, tgt),
	}
}

// flowChains adds the two over-limit chains.
func (r *renderer) flowChains(out map[string][]string) {
	if !r.flowLogging() {
		return
	}
	out[ChainFlowAllow] = []string{"-A " + ChainFlowAllow + " -m comment --comment " + comment("flow log rate limit exceeded: allowed, not logged") + " -j RETURN"}
	out[ChainFlowDeny] = []string{"-A " + ChainFlowDeny + " -m comment --comment " + comment("flow log rate limit exceeded: denied, not logged") + " -j DROP"}
}

// groupLogsDeny reports whether a group's default deny is logged: some of
// its NetworkPolicies' namespaces log denies (the default deny is theirs).
func (d *Dataplane) groupLogsDeny(g *policy.Group) bool {
	if !d.r.flowLogging() {
		return false
	}
	for _, k := range g.Policies {
		if p := d.want.Last.Policies[k]; p != nil && !p.Tier.Cluster() && p.FlowLog.Deny() {
			return true
		}
	}
	return false
}

// FlowLogDropped implements dataplane.FlowLogCounter: the packet counters
// of the over-limit chains' rules, both families.
func (d *Dataplane) FlowLogDropped(ctx context.Context) (uint64, error) {
	if !d.r.flowLogging() {
		return 0, nil
	}
	var n uint64
	for _, f := range d.families {
		for _, c := range []string{ChainFlowAllow, ChainFlowDeny} {
			bin := "iptables-" + string(d.mode)
			if f == policy.IPv6 {
				bin = "ip6tables-" + string(d.mode)
			}
			out, err := d.run.Run(ctx, nil, bin, "-w", "5", "-t", Table, "-L", c, "-x", "-v", "-n")
			if err != nil {
				return n, err
			}
			v, err := parseListCounter(string(out))
			if err != nil {
				return n, fmt.Errorf("%s: %w", c, err)
			}
			n += v
		}
	}
	return n, nil
}

// parseListCounter sums the packet column of `iptables -L CHAIN -x -v -n`.
func parseListCounter(out string) (uint64, error) {
	var n uint64
	for i, l := range strings.Split(out, "\n") {
		fs := strings.Fields(l)
		if i < 2 || len(fs) == 0 {
			continue // "Chain X (n references)" and the column titles
		}
		v, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			return n, fmt.Errorf("unexpected line %q", l)
		}
		n += v
	}
	return n, nil
}
