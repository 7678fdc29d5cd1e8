package policy

import (
	"net/netip"
	"strings"
)

// Packet is the first packet of a connection, for Evaluate.
type Packet struct {
	Src, Dst netip.Addr
	Protocol Protocol
	Port     uint16 // destination port
	// DNAT: this node translated the destination (a NodePort or
	// LoadBalancer packet kube-proxy sent to Dst); Src is the original
	// client. Only such packets are evaluated against Remote endpoints.
	DNAT bool
}

// DirVerdict is the decision of one direction.
type DirVerdict struct {
	Endpoint string // local endpoint evaluated ("" when the address is not a local selected pod)
	Isolated bool   // some NetworkPolicy isolates the endpoint in this direction
	Allowed  bool
	// Policy is the policy whose rule decided ("" when no rule decided:
	// the NetworkPolicy tier's default deny, or the default allow), Rule
	// the index of that rule, Tier and Action its tier and action.
	Policy string
	Rule   int
	Tier   Tier
	Action Action
	// Passed is the Admin policy whose Pass rule handed the decision on
	// to the NetworkPolicy tier ("" when none did).
	Passed string
	// Policies lists every policy applying to the endpoint in this
	// direction, in evaluation order.
	Policies []string
}

// Verdict is the decision for a packet: allowed when both the egress
// decision at the source and the ingress decision at the destination allow.
type Verdict struct {
	Allowed bool
	Egress  DirVerdict
	Ingress DirVerdict
}

// Evaluate decides a packet from the model alone, as every dataplane must:
// the reference semantics of the model, used by `explain` and tests. Only
// endpoints of this node are isolated (and Remote endpoints for packets
// the node DNATed); other addresses are open.
func (s *State) Evaluate(p Packet) Verdict {
	byIP := map[netip.Addr]*Endpoint{}
	for _, e := range s.Endpoints {
		for _, a := range e.IPs {
			byIP[a] = e
		}
	}
	v := Verdict{}
	v.Egress = s.evalDir(byIP[p.Src.Unmap()], Egress, p)
	dst := byIP[p.Dst.Unmap()]
	if dst != nil && dst.Remote && !p.DNAT {
		dst = nil // its own node decides
	}
	v.Ingress = s.evalDir(dst, Ingress, p)
	v.Allowed = v.Egress.Allowed && v.Ingress.Allowed
	return v
}

// evalDir walks the tiers (see Tier) for endpoint e in direction d.
func (s *State) evalDir(e *Endpoint, d Direction, p Packet) DirVerdict {
	dv := DirVerdict{Allowed: true}
	if e == nil {
		return dv
	}
	dv.Endpoint = e.Key()
	pols := append([]string(nil), e.Policies(d)...)
	s.Order(pols)
	dv.Policies = pols
	peer := p.Src
	if d == Egress {
		peer = p.Dst
	}
	peer = peer.Unmap()
	decide := func(k string, pol *Policy, i int, a Action) DirVerdict {
		dv.Policy, dv.Rule, dv.Tier, dv.Action = k, i, pol.Tier, a
		dv.Allowed = a != ActionDeny
		return dv
	}
	skip := map[Tier]bool{} // a tier skipped by a Pass
	npAllowed := false
	for _, k := range pols {
		pol := s.Policies[k]
		if pol == nil {
			// a NetworkPolicy the state lacks isolates (fail closed)
			dv.Isolated = dv.Isolated || !strings.HasPrefix(k, ClusterPolicyKeyPrefix)
			continue
		}
		if !pol.Isolates(d) {
			continue
		}
		if pol.Tier == TierBaseline && dv.Isolated {
			break // the NetworkPolicy tier decided
		}
		if skip[pol.Tier] {
			continue
		}
		if pol.Tier == TierNetworkPolicy {
			dv.Isolated = true
			if npAllowed {
				continue
			}
			for i, r := range pol.Rules(d) {
				if s.ruleMatches(r, peer, p) {
					npAllowed = true
					dv.Policy, dv.Rule, dv.Tier, dv.Action = k, i, TierNetworkPolicy, ActionAllow
					break
				}
			}
			continue
		}
		for i, r := range pol.Rules(d) {
			if !s.ruleMatches(r, peer, p) {
				continue
			}
			if r.Action != ActionPass {
				return decide(k, pol, i, r.Action)
			}
			skip[pol.Tier] = true
			if pol.Tier == TierAdmin {
				dv.Passed = k
			} else {
				// Baseline Pass: the default (allow) decides.
				dv.Policy, dv.Rule, dv.Tier, dv.Action = k, i, pol.Tier, ActionPass
			}
			break
		}
	}
	if dv.Isolated {
		dv.Allowed = npAllowed
	}
	return dv
}

// RuleMatches reports whether rule r matches packet p whose peer (source for
// ingress, destination for egress) is peer.
func (s *State) ruleMatches(r Rule, peer netip.Addr, p Packet) bool {
	if len(r.Peers) > 0 {
		ok := false
		for _, pe := range r.Peers {
			if s.setContains(pe.SetID, peer, "", 0) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.Ports) == 0 {
		return true
	}
	for _, pt := range r.Ports {
		if pt.Protocol != p.Protocol {
			continue
		}
		if pt.Name != "" {
			if s.setContains(pt.SetID, p.Dst.Unmap(), p.Protocol, p.Port) {
				return true
			}
			continue
		}
		if pt.Port == 0 {
			return true
		}
		end := pt.EndPort
		if end < pt.Port {
			end = pt.Port
		}
		if p.Port >= pt.Port && p.Port <= end {
			return true
		}
	}
	return false
}

func (s *State) setContains(id string, a netip.Addr, proto Protocol, port uint16) bool {
	set := s.Sets[id]
	if set == nil {
		return false
	}
	if set.Kind == SetIPPort {
		m := AddrMember(a)
		m.Protocol, m.Port = proto, port
		return set.Has(m)
	}
	return set.Contains(a)
}
