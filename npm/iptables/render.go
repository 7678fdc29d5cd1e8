package iptables

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/ipset"
	"github.com/open-acn/acn/npm/policy"
)

// policyRules are a policy's allow rules per family and direction: the
// bodies after "-A CHAIN", inlined into the chains of its dispatch groups.
type policyRules map[policy.Family]map[policy.Direction][]string

// renderer renders model objects into ipsets and rule lines for the
// shared core (dataplane.Renderer).
type renderer struct {
	families []policy.Family
	flowLog  dataplane.FlowLog
	// hints, per batch: kernel set -> members patched (a set without an
	// entry is compared in full)
	hints map[string]map[string]struct{}
}

func (r *renderer) RenderSet(s *policy.Set) []dataplane.KernelSet[*ipset.Set] {
	var out []dataplane.KernelSet[*ipset.Set]
	for _, f := range r.families {
		if s.Kind == policy.SetNet && !hasFamily(s, f) {
			continue
		}
		n := SetName(f, s.ID)
		ks := &ipset.Set{Name: n, Type: setType(s.Kind), Family: famName(f), Comment: s.Comment, Members: map[string]struct{}{}}
		for m := range s.Members {
			if m.Family() == f {
				ks.Members[m.String()] = struct{}{}
			}
		}
		out = append(out, dataplane.KernelSet[*ipset.Set]{Name: n, Family: f, Set: ks})
	}
	return out
}

func (r *renderer) PatchMember(ks dataplane.KernelSet[*ipset.Set], m policy.Member, add bool) {
	ms := m.String()
	if add {
		ks.Set.Members[ms] = struct{}{}
	} else {
		delete(ks.Set.Members, ms)
	}
	h := r.hints[ks.Name]
	if h == nil {
		h = map[string]struct{}{}
		r.hints[ks.Name] = h
	}
	h[ms] = struct{}{}
}

func (r *renderer) RenderPolicy(p *policy.Policy, sets map[string]*policy.Set) (policyRules, []string) {
	out := policyRules{}
	for _, f := range r.families {
		out[f] = map[policy.Direction][]string{}
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			if p.Isolates(dir) {
				out[f][dir] = r.renderRules(f, p, dir, sets)
			}
		}
	}
	return out, nil // the rules live in group chains, named by the groups
}

func (r *renderer) GroupNames(g *policy.Group) []string {
	var out []string
	for _, f := range r.families {
		out = append(out, GroupSetName(f, g))
	}
	return out
}

// update moves the desired state to desired and returns the kernel set
// names whose content may have changed (nil: all).
func (d *Dataplane) update(desired *policy.State, changes *policy.Changes) (map[string]struct{}, error) {
	dl, err := d.want.Update(desired, changes)
	for n := range dl.Sets {
		if s := d.want.Sets[n]; s != nil {
			d.wantSets[n] = s
		} else {
			delete(d.wantSets, n)
		}
	}
	if err != nil {
		return nil, err
	}
	for _, ids := range []map[string]struct{}{dl.Rendered, dl.Users} {
		for id := range ids {
			d.annotate(id)
		}
	}
	dirty := dl.Sets
	// Rules change only with policies or the list of groups (the trie's
	// shape, each group's policies, retiring groups); a batch of member
	// changes alone (most pod events, a pod joining an existing group)
	// leaves every chain as it is and renders none.
	if dl.Full || len(dl.Policies) > 0 {
		d.chainsDirty = true
	}
	if dl.Groups || d.hasRetiring() {
		if d.updateDispatch(dirty) {
			d.chainsDirty = true
		}
	}
	if dl.Full {
		return nil, nil
	}
	return dirty, nil
}

// updateDispatch recomputes the groups of each family, the trie and their
// sets, marking the dispatch sets dirty, and reports whether the list of
// groups changed (then chains may have).
func (d *Dataplane) updateDispatch(dirty map[string]struct{}) bool {
	before := d.groupShape()
	for n := range d.dispatchSets {
		delete(d.wantSets, n)
		dirty[n] = struct{}{}
	}
	d.dispatchSets = map[string]struct{}{}
	newRetiring := map[string]bool{}
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		for _, f := range d.families {
			// A family only gets the groups with addresses in it, so a
			// single-stack pod never touches the other family's table.
			var fg []*policy.Group
			now := map[string]bool{}
			for _, g := range d.want.Groups[dir] {
				for _, a := range g.IPs {
					if policy.FamilyOf(a) == f {
						fg = append(fg, g)
						now[g.ID] = true
						break
					}
				}
			}
			// Groups that just disappeared stay one more batch,
			// "retiring": chain unchanged, set emptied only after the new
			// chains are in (see program), so a pod moving to a new group
			// is never dispatched nowhere. Dropped next batch. Taken from
			// the programmed chains, so this also covers the first Apply
			// after a restart.
			prefix := ChainGroupIngressPrefix
			if dir == policy.Egress {
				prefix = ChainGroupEgressPrefix
			}
			var ret []string
			for c := range d.chains[f] {
				if id, ok := strings.CutPrefix(c, prefix); ok && !now[id] && !d.retiring[id] {
					ret = append(ret, id)
				}
			}
			sort.Strings(ret)
			known := map[string]*policy.Group{}
			if len(ret) > 0 {
				for _, g := range d.fgroups[f][dir] {
					known[g.ID] = g
				}
			}
			for _, id := range ret {
				g := &policy.Group{ID: id, Direction: dir}
				if k := known[id]; k != nil {
					g.Policies = k.Policies // unknown after a restart
				}
				newRetiring[id] = true
				fg = append(fg, g)
			}
			// In ID order, retiring groups where they were: a group that
			// retires keeps its place in the trie's leaves, so its leaf
			// chain is not rewritten (reordered) for nothing, and only
			// the next batch, which drops it, changes the chain.
			if len(ret) > 0 {
				slices.SortFunc(fg, func(a, b *policy.Group) int { return strings.Compare(a.ID, b.ID) })
			}
			if d.fgroups[f] == nil {
				d.fgroups[f] = map[policy.Direction][]*policy.Group{}
				d.trie[f] = map[policy.Direction][]trieNode{}
			}
			d.fgroups[f][dir] = fg
			d.trie[f][dir] = buildTrie(fg)
			sets := map[string]*ipset.Set{}
			trieSets(sets, f, dir, d.trie[f][dir])
			for _, g := range fg {
				n := GroupSetName(f, g)
				ks := &ipset.Set{Name: n, Type: ipset.HashIP, Family: famName(f), Comment: "local pods isolated by " + strings.Join(g.Policies, ","), Members: map[string]struct{}{}, Rank: groupRank}
				for _, a := range g.IPs {
					if policy.FamilyOf(a) == f {
						ks.Members[a.String()] = struct{}{}
					}
				}
				sets[n] = ks
			}
			if dir == policy.Ingress {
				rs := &ipset.Set{Name: RemoteSetName(f), Type: ipset.HashIP, Family: famName(f), Comment: "pods of other nodes backing NodePort/LoadBalancer services", Members: map[string]struct{}{}, Rank: remoteRank}
				for _, a := range d.want.Last.RemoteIPs(f) {
					rs.Members[a.String()] = struct{}{}
				}
				sets[rs.Name] = rs
			}
			for n, s := range sets {
				d.wantSets[n] = s
				d.dispatchSets[n] = struct{}{}
				dirty[n] = struct{}{}
			}
		}
	}
	d.retiring = newRetiring
	return d.groupShape() != before
}

// groupShape is everything of the groups the chains are rendered from:
// per family and direction, each group's ID, policies and whether it is
// retiring.
func (d *Dataplane) groupShape() string {
	var b strings.Builder
	for _, f := range d.families {
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			fmt.Fprintf(&b, "%d/%d:", f, dir)
			for _, g := range d.fgroups[f][dir] {
				fmt.Fprintf(&b, "%s=%s,%v;", g.ID, strings.Join(g.Policies, ","), d.retiring[g.ID])
			}
		}
	}
	return b.String()
}

// groupRank is the ipset.Set.Rank of group sets: filled before, emptied
// after the trie's union sets (whose rank is their depth + 2).
const groupRank = 1000

// remoteRank is the Rank of the Remote endpoints' set: filled after the
// trie and group sets (a remote backend's DNATed traffic is dispatched to
// its group before it stops skipping ingress evaluation), emptied first.
const remoteRank = 1

func (d *Dataplane) hasRetiring() bool { return len(d.retiring) > 0 }

// annotate sets the log comment of a model set's kernel sets: its selector
// and the policies using it.
func (d *Dataplane) annotate(id string) {
	s := d.want.Last.Sets[id]
	if s == nil {
		return
	}
	users := d.want.Users(id)
	if len(users) > 5 {
		users = append(users[:5], fmt.Sprintf("+%d more", len(users)-5))
	}
	c := s.Comment + " (policies " + strings.Join(users, ", ") + ")"
	for _, ks := range d.want.KernelSets(id) {
		ks.Set.Comment = c
	}
}

func hasFamily(s *policy.Set, f policy.Family) bool {
	for m := range s.Members {
		if m.Family() == f {
			return true
		}
	}
	return false
}

func setType(k policy.SetKind) string {
	switch k {
	case policy.SetNet:
		return ipset.HashNet
	case policy.SetIPPort:
		return ipset.HashIPPort
	}
	return ipset.HashIP
}

func famName(f policy.Family) string {
	if f == policy.IPv6 {
		return "inet6"
	}
	return "inet"
}

// desiredChains assembles every chain of one family.
func (d *Dataplane) desiredChains(f policy.Family) map[string][]string {
	out := map[string][]string{
		ChainMain: {
			"-A " + ChainMain + " -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
			"-A " + ChainMain + " -j " + ChainEgress,
			// A Remote endpoint's ingress is decided here only for
			// traffic this node DNATed to it (NodePort/LoadBalancer: the
			// client's address is still the source; see "Services" in
			// npm/README.md); other traffic to it is its node's to decide.
			"-A " + ChainMain + " -m set --match-set " + RemoteSetName(f) + " dst -m conntrack ! --ctstate DNAT -m comment --comment " + comment("ingress of pods on other nodes: only for traffic DNATed here") + " -j RETURN",
			"-A " + ChainMain + " -j " + ChainIngress,
		},
		// Traffic to the node itself: only the egress of its source pod
		// (the destination is the node, which no policy selects).
		ChainInput: {
			"-A " + ChainInput + " -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
		},
	}
	d.r.flowChains(out)
	if f == policy.IPv6 {
		// Router and neighbour solicitations and advertisements: a pod's
		// address resolution with its node, and with the pods of its
		// segment in bridge mode (bridged through FORWARD), is the link
		// working, not traffic a policy speaks of (as ARP for IPv4,
		// which iptables never sees).
		for _, c := range []string{ChainMain, ChainInput} {
			var nd []string
			for _, typ := range []int{133, 134, 135, 136} {
				nd = append(nd, fmt.Sprintf("-A %s -p ipv6-icmp -m icmp6 --icmpv6-type %d -m comment --comment %s -j RETURN", c, typ, comment("neighbour discovery")))
			}
			// After the first rule (established RETURN).
			out[c] = append(out[c][:1], append(nd, out[c][1:]...)...)
		}
	}
	out[ChainInput] = append(out[ChainInput], "-A "+ChainInput+" -j "+ChainEgress)
	for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
		trieChains(out, f, dir, d.trie[f][dir])
		for _, g := range d.fgroups[f][dir] {
			// The group's policies' allow rules, inlined: the first that
			// matches RETURNs (back to ACN-NPM, as the trie is entered
			// with goto); no match: default deny. No packet marks.
			gc := GroupChain(g)
			if d.retiring[g.ID] {
				for _, c := range []string{gc, NextTierChain(g)} {
					if old, ok := d.chains[f][c]; ok {
						out[c] = old
					}
				}
				continue
			}
			for c, lines := range d.groupChains(f, dir, g) {
				out[c] = lines
			}
		}
	}
	return out
}

// renderRules renders the bodies of a policy's allow rules in one family
// and direction; sets are the model sets they reference.
func (rd *renderer) renderRules(f policy.Family, p *policy.Policy, dir policy.Direction, sets map[string]*policy.Set) []string {
	var lines []string
	peerDir := "src"
	if dir == policy.Egress {
		peerDir = "dst"
	}
	for i, r := range p.Rules(dir) {
		var peers []string
		for _, pe := range r.Peers {
			s := sets[pe.SetID]
			if s == nil || (s.Kind == policy.SetNet && !hasFamily(s, f)) {
				continue
			}
			peers = append(peers, fmt.Sprintf("-m set --match-set %s %s", SetName(f, pe.SetID), peerDir))
		}
		if len(r.Peers) > 0 && len(peers) == 0 {
			continue // no peer of this family: the rule matches nothing here
		}
		if len(peers) == 0 {
			peers = []string{""}
		}
		type pm struct{ proto, match string }
		var ports []pm
		for _, pt := range r.Ports {
			proto := "-p " + pt.Protocol.Lower()
			switch {
			case pt.Name != "":
				ports = append(ports, pm{proto, fmt.Sprintf("-m set --match-set %s dst,dst", SetName(f, pt.SetID))})
			case pt.Port == 0:
				ports = append(ports, pm{proto, ""})
			case pt.EndPort > pt.Port:
				ports = append(ports, pm{proto, fmt.Sprintf("-m %s --dport %d:%d", pt.Protocol.Lower(), pt.Port, pt.EndPort)})
			default:
				ports = append(ports, pm{proto, fmt.Sprintf("-m %s --dport %d", pt.Protocol.Lower(), pt.Port)})
			}
		}
		if len(ports) == 0 {
			ports = []pm{{}}
		}
		cm := comment(fmt.Sprintf("%s %s rule %d: %s", p.Key(), dir, i, r.Comment))
		if p.Tier.Cluster() {
			cm = comment(fmt.Sprintf("%s %s %s %s", p.Key(), p.Tier, r.Action, r.Comment))
		}
		verdict := ruleVerdict(p.Tier, r.Action)
		// id: the flow-log ID when this rule's verdict is logged; tgt its
		// verdict target (a Pass is no verdict: never logged).
		id, tgt := "", "RETURN"
		if allow, ok := flowlog.Logged(p, r.Action); ok && rd.flowLogging() {
			id = flowlog.PolicyRuleID(p, dir, i, allow)
			if !allow {
				tgt = "DROP"
			}
		}
		for _, pe := range peers {
			for _, po := range ports {
				var b strings.Builder
				for _, part := range []string{po.proto, po.match, pe} {
					if part != "" {
						b.WriteString(" " + part)
					}
				}
				if id != "" {
					lines = append(lines, rd.flowRules(b.String(), cm, id, tgt)...)
					continue
				}
				fmt.Fprintf(&b, " -m comment --comment %s %s", cm, verdict)
				lines = append(lines, b.String())
			}
		}
	}
	return lines
}

// comment quotes a comment the way iptables-save prints it.
func comment(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\n' || r == '\\' || r == '\'' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 250 {
		s = s[:247] + "..."
	}
	return `"` + s + `"`
}
