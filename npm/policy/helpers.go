package policy

import (
	"crypto/sha256"
	"encoding/base32"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Hash returns a short stable lower-case hash of s with n characters
// (5 bits each; n ≤ 52). Names built from it are stable across restarts and
// nodes. Callers must detect collisions (two keys, one hash).
func Hash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return b32.EncodeToString(sum[:])[:n]
}

// Clone returns a deep copy of the state.
func (s *State) Clone() *State {
	c := NewState()
	for id, set := range s.Sets {
		c.Sets[id] = set.Clone()
	}
	for k, p := range s.Policies {
		c.Policies[k] = p.Clone()
	}
	for k, e := range s.Endpoints {
		c.Endpoints[k] = e.Clone()
	}
	return c
}

// Clone returns a deep copy of the set.
func (s *Set) Clone() *Set {
	c := *s
	if s.ov != nil {
		c.Members, c.ov = s.ov.materialize(), nil
		return &c
	}
	// maps.Clone copies the table as it is, without rehashing every
	// member: half the time of a loop.
	c.Members = maps.Clone(s.Members)
	if c.Members == nil {
		c.Members = map[Member]struct{}{}
	}
	return &c
}

// Clone returns a deep copy of the policy.
func (p *Policy) Clone() *Policy {
	c := *p
	c.IngressRules = cloneRules(p.IngressRules)
	c.EgressRules = cloneRules(p.EgressRules)
	return &c
}

func cloneRules(rs []Rule) []Rule {
	if rs == nil {
		return nil
	}
	out := make([]Rule, len(rs))
	for i, r := range rs {
		out[i] = Rule{Comment: r.Comment, Action: r.Action, Name: r.Name, Peers: append([]Peer(nil), r.Peers...), Ports: append([]Port(nil), r.Ports...)}
	}
	return out
}

// Clone returns a deep copy of the endpoint.
func (e *Endpoint) Clone() *Endpoint {
	c := *e
	c.IPs = append([]netip.Addr(nil), e.IPs...)
	c.Ingress = append([]string(nil), e.Ingress...)
	c.Egress = append([]string(nil), e.Egress...)
	return &c
}

// EqualPolicy reports whether two policies program the same rules.
func EqualPolicy(a, b *Policy) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Tier == b.Tier && a.Priority == b.Priority && a.Selector == b.Selector &&
		a.Ingress == b.Ingress && a.Egress == b.Egress && a.Error == b.Error && a.FlowLog == b.FlowLog &&
		rulesEqual(a.IngressRules, b.IngressRules) && rulesEqual(a.EgressRules, b.EgressRules)
}

func rulesEqual(a, b []Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !reflect.DeepEqual(normRule(a[i]), normRule(b[i])) {
			return false
		}
	}
	return true
}

func normRule(r Rule) Rule {
	if len(r.Peers) == 0 {
		r.Peers = nil
	}
	if len(r.Ports) == 0 {
		r.Ports = nil
	}
	return r
}

// EqualEndpoint reports whether two endpoints are programmed the same way.
func EqualEndpoint(a, b *Endpoint) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Namespace == b.Namespace && a.Name == b.Name && slices.Equal(a.IPs, b.IPs) &&
		slices.Equal(a.Ingress, b.Ingress) && slices.Equal(a.Egress, b.Egress) && a.Remote == b.Remote
}

// RemoteIPs are the addresses of the Remote endpoints of family f, sorted:
// dataplanes enforce their ingress only on traffic the node DNATed.
func (s *State) RemoteIPs(f Family) []netip.Addr {
	var out []netip.Addr
	for _, e := range s.Endpoints {
		if !e.Remote {
			continue
		}
		for _, a := range e.IPs {
			if FamilyOf(a) == f {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// EqualSet reports whether two sets have the same identity and members.
func EqualSet(a, b *Set) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.ID != b.ID || a.Kind != b.Kind || a.Key != b.Key || a.Comment != b.Comment || a.Len() != b.Len() {
		return false
	}
	for m := range a.All() {
		if !b.Has(m) {
			return false
		}
	}
	return true
}

// Diff returns the keys that differ between two states (nil states are
// empty). Equal states give an empty Changes.
func Diff(a, b *State) *Changes {
	if a == nil {
		a = NewState()
	}
	if b == nil {
		b = NewState()
	}
	c := NewChanges()
	diffKeys(a.Sets, b.Sets, EqualSet, c.Sets)
	diffKeys(a.Policies, b.Policies, EqualPolicy, c.Policies)
	diffKeys(a.Endpoints, b.Endpoints, EqualEndpoint, c.Endpoints)
	return c
}

// diffKeys adds to out the keys whose values differ between a and b, or
// that only one of them has.
func diffKeys[V any](a, b map[string]*V, equal func(x, y *V) bool, out map[string]struct{}) {
	for k, x := range a {
		if !equal(x, b[k]) {
			out[k] = struct{}{}
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out[k] = struct{}{}
		}
	}
}

// Group is a set of endpoints isolated, in one direction, by exactly the
// same list of policies. Dataplanes dispatch a packet by its local endpoint
// to the group's chain (one set lookup per group rather than one rule per
// policy), and the chain evaluates only that group's policies.
type Group struct {
	ID        string // stable hash of Direction + Policies
	Direction Direction
	Policies  []string // policy keys in evaluation order (as the endpoints list them)
	Endpoints []string // sorted endpoint keys
	IPs       []netip.Addr
}

// Groups computes the dispatch groups of one direction, sorted by ID.
func (s *State) Groups(d Direction) []*Group {
	by := map[string]*Group{}
	for _, e := range s.Endpoints {
		pols := e.Policies(d)
		if len(pols) == 0 {
			continue
		}
		k := GroupKey(d, pols)
		g := by[k]
		if g == nil {
			g = &Group{ID: Hash(k, 12), Direction: d, Policies: append([]string(nil), pols...)}
			by[k] = g
		}
		g.Endpoints = append(g.Endpoints, e.Key())
		g.IPs = append(g.IPs, e.IPs...)
	}
	out := make([]*Group, 0, len(by))
	for _, g := range by {
		sort.Strings(g.Endpoints)
		sort.Slice(g.IPs, func(i, j int) bool { return g.IPs[i].Less(g.IPs[j]) })
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// GroupKey is the canonical key of a dispatch group.
func GroupKey(d Direction, policies []string) string {
	return d.String() + "|" + strings.Join(policies, ",")
}

// CopyOnWrite returns a new state equal to s with the objects named in ch
// replaced by deep copies of their version in cur (or removed when cur has
// none). s is not modified, and the result shares every unnamed object with
// s, so readers holding s keep an immutable view while a writer moves on:
// the cost is the three maps' size in pointers plus the changed objects.
// A changed set whose changed members ch names (Changes.Members) is not
// copied whole but as an overlay of s's copy (overlay.go): O(the change),
// not O(the set). A nil s or ch copies cur whole.
func (s *State) CopyOnWrite(cur *State, ch *Changes) *State {
	if s == nil || ch == nil {
		return cur.Clone()
	}
	next := &State{Sets: maps.Clone(s.Sets), Policies: maps.Clone(s.Policies), Endpoints: maps.Clone(s.Endpoints)}
	for id := range ch.Sets {
		set := cur.Sets[id]
		switch hints, ok := ch.Members[id]; {
		case set == nil:
			delete(next.Sets, id)
		case ok && s.Sets[id] != nil && s.Sets[id].Kind == set.Kind:
			next.Sets[id] = s.Sets[id].overlaid(set, hints)
		default:
			next.Sets[id] = set.Clone()
		}
	}
	for k := range ch.Policies {
		if p := cur.Policies[k]; p != nil {
			next.Policies[k] = p.Clone()
		} else {
			delete(next.Policies, k)
		}
	}
	for k := range ch.Endpoints {
		if e := cur.Endpoints[k]; e != nil {
			next.Endpoints[k] = e.Clone()
		} else {
			delete(next.Endpoints, k)
		}
	}
	return next
}
