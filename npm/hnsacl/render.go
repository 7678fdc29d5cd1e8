package hnsacl

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/open-acn/acn/npm/policy"
)

// setKind is how a SetPolicy is derived from the model.
type setKind uint8

const (
	setBase   setKind = iota // the members of one model set (SetIP or SetNet) of one family
	setNested                // the union of several model sets of one family (a rule's peers)
	setNamed                 // egress named port: the pods of a named-port set with one (protocol, port) that are in the rule's peers
)

// setDesc identifies a SetPolicy by what it is computed from.
type setDesc struct {
	kind     setKind
	fam      policy.Family
	set      string   // base: model set; named: the SetIPPort set
	children []string // nested: sorted model set IDs; named: the rule's peer set IDs (sorted)
	proto    policy.Protocol
	port     uint16
}

func famTag(f policy.Family) string {
	if f == policy.IPv6 {
		return "6"
	}
	return "4"
}

// id is the stable SetPolicy ID.
func (d setDesc) id() string {
	switch d.kind {
	case setNested:
		return Prefix + "n" + policy.Hash("nested|"+strings.Join(d.children, ","), 12) + "-" + famTag(d.fam)
	case setNamed:
		return Prefix + "p" + policy.Hash(fmt.Sprintf("named|%s|%s|%d|%s", d.set, d.proto, d.port, strings.Join(d.children, ",")), 12) + "-" + famTag(d.fam)
	default:
		return Prefix + d.set + "-" + famTag(d.fam)
	}
}

// deps are the model set IDs the content depends on.
func (d setDesc) deps() []string {
	switch d.kind {
	case setNested:
		return d.children
	case setNamed:
		return append([]string{d.set}, d.children...)
	default:
		return []string{d.set}
	}
}

// setEntry is a computed SetPolicy (sp.Values == "" means empty: not created).
type setEntry struct {
	desc     setDesc
	sp       SetPolicy
	comment  string
	children []setDesc // nested: the non-empty base sets it contains
}

// aclInfo is a rendered ACL with what it implements, for logs and explain.
type aclInfo struct {
	ACL
	Policies []string // policy keys (ns/name) it implements
	Selector string   // the target selector of the (first) policy
	Comment  string   // rule comment
}

// epRender is the rendered desired state of one model endpoint.
type epRender struct {
	key  string
	ips  []netip.Addr
	acls map[string]*aclInfo // by ACL ID
	sets map[string]setDesc  // SetPolicies the ACLs reference, by ID
}

// failure is something HNS cannot express, failed closed.
type failure struct {
	policy string
	reason string
}

// renderer renders model endpoints, caching computed SetPolicies.
type renderer struct {
	st       *policy.State
	sctp     bool
	hostIPs  []netip.Addr
	cache    map[string]*setEntry
	failures map[failure]map[string]struct{} // -> endpoint keys
	named    map[string]*namedIdx            // named-port set indexes of this Apply
}

// set returns the computed SetPolicy of d (memoised).
func (r *renderer) set(d setDesc) *setEntry {
	id := d.id()
	if e := r.cache[id]; e != nil {
		return e
	}
	e := &setEntry{desc: d, sp: SetPolicy{ID: id, Name: id, Type: IPSet}}
	var vals []string
	switch d.kind {
	case setBase:
		s := r.st.Sets[d.set]
		if s != nil {
			e.comment = s.Comment
			for _, m := range s.Sorted() {
				if m.Family() == d.fam {
					vals = append(vals, addrString(m.Prefix))
				}
			}
		}
	case setNested:
		e.sp.Type = NestedIPSet
		var cs []string
		for _, c := range d.children {
			cd := setDesc{kind: setBase, fam: d.fam, set: c}
			ce := r.set(cd)
			if s := r.st.Sets[c]; s != nil {
				cs = append(cs, s.Comment)
			}
			if ce.sp.Values != "" {
				vals = append(vals, ce.sp.ID)
				e.children = append(e.children, cd)
			}
		}
		e.comment = strings.Join(cs, " or ")
	case setNamed:
		s := r.st.Sets[d.set]
		if s != nil {
			e.comment = fmt.Sprintf("%s port %d/%s", s.Comment, d.port, d.proto)
			for _, m := range s.Sorted() {
				if m.Family() != d.fam || m.Protocol != d.proto || m.Port != d.port {
					continue
				}
				if len(d.children) > 0 && !r.inAny(d.children, m.Prefix.Addr()) {
					continue
				}
				vals = append(vals, addrString(m.Prefix))
			}
		}
	}
	if d.kind == setNested {
		sort.Strings(vals)
	}
	// base and named values are in address order (Set.Sorted), unique
	e.sp.Values = strings.Join(vals, ",")
	r.cache[id] = e
	return e
}

func addrString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// inAny reports whether a is in one of the model sets (SetIP or SetNet).
func (r *renderer) inAny(ids []string, a netip.Addr) bool {
	return slices.ContainsFunc(ids, func(id string) bool {
		s := r.st.Sets[id]
		return s != nil && s.Contains(a)
	})
}

// target is the remote side of an ACL: nil means any address.
type target *setDesc

// peerTargets returns the remote targets of a rule's peers: any address
// when the rule has no peers, else one (possibly nested) SetPolicy per
// family that has members.
func (r *renderer) peerTargets(rule policy.Rule) []target {
	if len(rule.Peers) == 0 {
		return []target{nil}
	}
	ids := peerIDs(rule)
	var out []target
	for _, f := range policy.Families {
		d := setDesc{kind: setBase, fam: f, set: ids[0]}
		if len(ids) > 1 {
			d = setDesc{kind: setNested, fam: f, children: ids}
		}
		if r.set(d).sp.Values != "" {
			out = append(out, &d)
		}
	}
	return out
}

func peerIDs(rule policy.Rule) []string {
	var ids []string
	for _, p := range rule.Peers {
		ids = append(ids, p.SetID)
	}
	sort.Strings(ids)
	return slices.Compact(ids)
}

// portSpec is one port of a rule rendered for one endpoint.
type portSpec struct {
	proto  string // "" any
	ports  string // "" any
	local  string // ingress named port: the endpoint addresses having that port ("" all)
	remote target // egress named port: replaces the peer targets
}

func portRange(p policy.Port) string {
	switch {
	case p.Port == 0:
		return ""
	case p.EndPort > p.Port:
		return fmt.Sprintf("%d-%d", p.Port, p.EndPort)
	default:
		return fmt.Sprint(p.Port)
	}
}

// ports renders the ports of a rule for endpoint e. An empty result for a
// rule that has ports means none can match on this endpoint: the rule is
// omitted (never widened to "any port").
func (r *renderer) ports(e *policy.Endpoint, pol *policy.Policy, ri int, d policy.Direction, rule policy.Rule) []portSpec {
	if len(rule.Ports) == 0 {
		return []portSpec{{}}
	}
	var out []portSpec
	for _, pt := range rule.Ports {
		if pt.Protocol == policy.SCTP && !r.sctp {
			r.fail(pol.Key(), e.Key(), fmt.Sprintf("%s rule %d port %s: SCTP is not enforced by this HNS (enable SCTP in the options where it is); the port is not allowed (fail closed)", d, ri, pt))
			continue
		}
		proto := ProtocolNumber(pt.Protocol)
		if pt.Name == "" {
			out = append(out, portSpec{proto: proto, ports: portRange(pt)})
			continue
		}
		set := r.st.Sets[pt.SetID]
		if set == nil {
			continue
		}
		idx := r.namedIndex(set)
		if d == policy.Ingress {
			// the endpoint's own port numbers of that name
			byPort := map[uint16][]netip.Addr{}
			for _, ip := range e.IPs {
				for _, m := range idx.byAddr[ip] {
					if m.Protocol == pt.Protocol {
						byPort[m.Port] = append(byPort[m.Port], ip)
					}
				}
			}
			for _, port := range slices.Sorted(maps.Keys(byPort)) {
				ips := byPort[port]
				local := ""
				if len(ips) != len(e.IPs) {
					sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
					var ss []string
					for _, ip := range ips {
						ss = append(ss, ip.String())
					}
					local = strings.Join(ss, ",")
				}
				out = append(out, portSpec{proto: proto, ports: fmt.Sprint(port), local: local})
			}
			continue
		}
		// egress: (peer IP, port) pairs grouped by port into SetPolicies
		ps := idx.ports[pt.Protocol]
		peers := []string(nil)
		if len(rule.Peers) > 0 {
			peers = peerIDs(rule)
		}
		for _, port := range ps {
			for _, f := range policy.Families {
				sd := setDesc{kind: setNamed, fam: f, set: pt.SetID, children: peers, proto: pt.Protocol, port: port}
				if r.set(sd).sp.Values != "" {
					out = append(out, portSpec{proto: proto, ports: fmt.Sprint(port), remote: &sd})
				}
			}
		}
	}
	return out
}

// namedIdx indexes a named-port set.
type namedIdx struct {
	byAddr map[netip.Addr][]policy.Member
	ports  map[policy.Protocol][]uint16 // sorted, distinct
}

// namedIndex returns the index of a SetIPPort set, built once per Apply.
func (r *renderer) namedIndex(s *policy.Set) *namedIdx {
	if x := r.named[s.ID]; x != nil {
		return x
	}
	x := &namedIdx{byAddr: map[netip.Addr][]policy.Member{}, ports: map[policy.Protocol][]uint16{}}
	seen := map[policy.Member]bool{}
	for m := range s.Members {
		a := m.Prefix.Addr()
		x.byAddr[a] = append(x.byAddr[a], m)
		k := policy.Member{Protocol: m.Protocol, Port: m.Port}
		if !seen[k] {
			seen[k] = true
			x.ports[m.Protocol] = append(x.ports[m.Protocol], m.Port)
		}
	}
	for _, ps := range x.ports {
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	}
	if r.named == nil {
		r.named = map[string]*namedIdx{}
	}
	r.named[s.ID] = x
	return x
}

func (r *renderer) fail(pol, ep, reason string) {
	k := failure{policy: pol, reason: reason}
	if r.failures[k] == nil {
		r.failures[k] = map[string]struct{}{}
	}
	r.failures[k][ep] = struct{}{}
}

// render computes the desired ACLs of one model endpoint.
func (r *renderer) render(e *policy.Endpoint) *epRender {
	out := &epRender{key: e.Key(), ips: append([]netip.Addr(nil), e.IPs...), acls: map[string]*aclInfo{}, sets: map[string]setDesc{}}
	add := func(a ACL, pols []string, sel, comment string, refs ...target) {
		a = a.withID()
		if prev := out.acls[a.ID]; prev != nil {
			for _, p := range pols {
				if !slices.Contains(prev.Policies, p) {
					prev.Policies = append(prev.Policies, p)
				}
			}
			return
		}
		out.acls[a.ID] = &aclInfo{ACL: a, Policies: pols, Selector: sel, Comment: comment}
		for _, t := range refs {
			if t != nil {
				out.sets[(*t).id()] = *t
			}
		}
	}
	for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		keys := append([]string(nil), e.Policies(d)...) // evaluation order
		if len(keys) == 0 {
			continue
		}
		dir := In
		if d == policy.Egress {
			dir = Out
		}
		var sels []string
		isolated := false // a NetworkPolicy isolates this direction
		for _, k := range keys {
			pol := r.st.Policies[k]
			if pol == nil || !pol.Tier.Cluster() {
				isolated = true
			}
			if pol != nil {
				sels = append(sels, k+": "+pol.Selector)
			}
		}
		selected := strings.Join(sels, "; ")
		if isolated {
			add(ACL{Action: Block, Direction: dir, Priority: PriorityBlock}, keys, selected, "default deny "+d.String()+" of isolated pod")
		}
		if d == policy.Ingress && len(r.hostIPs) > 0 {
			var hs []string
			for _, h := range r.hostIPs {
				hs = append(hs, h.String())
			}
			add(ACL{Action: Allow, Direction: In, Priority: PriorityHost, RemoteAddresses: strings.Join(hs, ",")}, keys, selected, "node health probes")
		}
		tiers := newTierPriorities()
		for _, k := range keys {
			pol := r.st.Policies[k]
			if pol == nil {
				continue
			}
			if pol.Error != "" {
				r.fail(k, e.Key(), "translation failed ("+pol.Error+"): the selected pods stay isolated with no allows from this policy")
			}
			for ri, rule := range pol.Rules(d) {
				action, prio, ok := tiers.next(r, e, pol, d, ri, rule)
				if !ok {
					continue
				}
				specs := r.ports(e, pol, ri, d, rule)
				var targets []target
				for _, ps := range specs {
					if ps.remote != nil {
						add(r.acl(dir, ps, ps.remote).with(action, prio), []string{k}, pol.Selector, rule.Comment, ps.remote)
						continue
					}
					if targets == nil {
						targets = r.peerTargets(rule)
					}
					for _, t := range targets {
						add(r.acl(dir, ps, t).with(action, prio), []string{k}, pol.Selector, rule.Comment, t)
					}
				}
			}
		}
	}
	// nested SetPolicies need their children
	for _, sd := range out.sets {
		if sd.kind == setNested {
			for _, c := range r.set(sd).children {
				out.sets[c.id()] = c
			}
		}
	}
	return out
}

func (r *renderer) acl(dir Direction, ps portSpec, t target) ACL {
	a := ACL{Action: Allow, Direction: dir, Priority: PriorityAllow, Protocols: ps.proto, LocalAddresses: ps.local}
	if t != nil {
		a.RemoteAddresses = (*t).id()
	}
	if dir == In {
		a.LocalPorts = ps.ports
	} else {
		a.RemotePorts = ps.ports
	}
	return a
}
