// Package policy is the platform-neutral model of what NPM must enforce on
// one node: the desired state that the translator (npm/translate) computes
// from Kubernetes objects and that every dataplane (iptables+ipset,
// nftables, Windows HNS ACLs) programs.
//
// The model has three parts:
//
//   - Sets: computed address sets. Every distinct selector (namespace scope ×
//     pod selector, canonicalised) that some rule references becomes one Set
//     of exact pod IPs; every ipBlock becomes one Set of non-overlapping
//     prefixes (cidr minus excepts, computed in Go); every named port becomes
//     one Set of (IP, protocol, port) tuples. Identical selectors share one set.
//   - Policies: one per NetworkPolicy, with its allow rules per direction.
//     Rules reference sets by ID; a rule matches when any peer matches and any
//     port matches (an empty list matches everything).
//   - Endpoints: the pods hosted on this node that at least one policy selects,
//     with the policies that isolate them per direction. Dataplanes dispatch
//     per endpoint: a packet to (ingress) or from (egress) a listed endpoint is
//     allowed when any of the endpoint's policies of that direction allows it,
//     and dropped otherwise. Traffic of pods that are not listed is not
//     touched. Only NEW connections are evaluated.
//
// Everything is plain data with value semantics so dataplanes can diff two
// states; nothing here talks to a kernel.
package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strings"
)

// Protocol is an L4 protocol a port applies to.
type Protocol string

const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Number is the IP protocol number (6, 17, 132).
func (p Protocol) Number() uint8 {
	switch p {
	case UDP:
		return 17
	case SCTP:
		return 132
	default:
		return 6
	}
}

// Lower is the lower-case name used by iptables/ipset ("tcp").
func (p Protocol) Lower() string { return strings.ToLower(string(p)) }

// Direction of a rule, relative to the selected (local) pod.
type Direction uint8

const (
	Ingress Direction = iota // traffic to the selected pod; peer = source
	Egress                   // traffic from the selected pod; peer = destination
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Family is an IP address family.
type Family uint8

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// Families lists both families in a stable order.
var Families = []Family{IPv4, IPv6}

// FamilyOf returns the family of a (possibly 4in6) address.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// SetKind says what a Set holds.
type SetKind uint8

const (
	// SetIP holds single addresses (pod IPs): ipset hash:ip, nftables
	// ipv4_addr/ipv6_addr set, HNS IPSET.
	SetIP SetKind = iota
	// SetNet holds non-overlapping prefixes (ipBlock cidr minus excepts):
	// ipset hash:net, nftables interval set, HNS address list. Never a /0:
	// the translator splits 0.0.0.0/0 into two /1.
	SetNet
	// SetIPPort holds (address, protocol, port) tuples of a named port:
	// ipset hash:ip,port, nftables concatenation, HNS per-endpoint ports.
	SetIPPort
)

func (k SetKind) String() string {
	switch k {
	case SetNet:
		return "net"
	case SetIPPort:
		return "ipport"
	default:
		return "ip"
	}
}

// Member is one element of a Set. For SetIP the prefix is a single address
// (/32 or /128), for SetNet any prefix, for SetIPPort a single address plus
// Protocol and Port. Member is comparable and is used as a map key.
type Member struct {
	Prefix   netip.Prefix
	Protocol Protocol // SetIPPort only
	Port     uint16   // SetIPPort only
}

// Family of the member's address.
func (m Member) Family() Family { return FamilyOf(m.Prefix.Addr()) }

func (m Member) String() string {
	s := m.Prefix.String()
	if m.Prefix.IsSingleIP() {
		s = m.Prefix.Addr().String()
	}
	if m.Port != 0 || m.Protocol != "" {
		s += fmt.Sprintf(",%s:%d", m.Protocol.Lower(), m.Port)
	}
	return s
}

// AddrMember is the Member for a single address.
func AddrMember(a netip.Addr) Member {
	return Member{Prefix: netip.PrefixFrom(a, a.BitLen())}
}

// Set is a computed set of addresses. Its ID is a short stable hash of Key
// (the canonical selector it was computed from); Comment is the readable
// form that dataplanes attach to kernel objects and log lines.
//
// A set of a published copy of a state (State.CopyOnWrite) may be an
// overlay: its members are an older copy's plus and minus a few
// (overlay.go), and Members is nil. Read members with Has, Len, All,
// Contains or Sorted, which see either form; Members directly only in sets
// that are not such copies (the engine's, the dataplanes').
type Set struct {
	ID      string
	Kind    SetKind
	Key     string // canonical origin, e.g. `pods ns=default sel=app in (web)`
	Comment string // human-readable selector, e.g. `pods in ns default with app in (web)`
	Members map[Member]struct{}
	ov      *overlay // non-nil: the members are ov's (Members is nil)
}

// Contains reports whether address a is a member of an address set: in
// one of the prefixes of a SetNet, equal to a member of a SetIP. A
// SetIPPort holds no bare address.
func (s *Set) Contains(a netip.Addr) bool {
	if s.Kind != SetNet {
		return s.Has(AddrMember(a))
	}
	for m := range s.All() {
		if m.Prefix.Contains(a) {
			return true
		}
	}
	return false
}

// Sorted returns the members in a stable order.
func (s *Set) Sorted() []Member {
	out := make([]Member, 0, s.Len())
	for m := range s.All() {
		out = append(out, m)
	}
	SortMembers(out)
	return out
}

// SortMembers sorts members by address, then protocol, then port.
func SortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool { return LessMember(ms[i], ms[j]) })
}

// LessMember orders members (addresses, then prefix length, protocol, port).
func LessMember(a, b Member) bool {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c < 0
	}
	if a.Prefix.Bits() != b.Prefix.Bits() {
		return a.Prefix.Bits() < b.Prefix.Bits()
	}
	if a.Protocol != b.Protocol {
		return a.Protocol < b.Protocol
	}
	return a.Port < b.Port
}

// Peer is one `from`/`to` element of a rule: the peer address must be in
// the referenced set (SetIP or SetNet).
type Peer struct {
	SetID string
}

// Port is one `ports` element of a rule.
//
// A numeric port matches Protocol and destination port in [Port, EndPort]
// (EndPort 0 means just Port; Port 0 means any port of Protocol).
//
// A named port (Name != "") is resolved per pod: SetID references a
// SetIPPort set holding (pod IP, protocol, port) for every pod in scope that
// declares a container port with that name and protocol. The packet's
// (destination address, protocol, destination port) must be in the set. For
// ingress the scope is the policy's selected pods (the destination); for
// egress it is the rule's pod peers (all pods when the rule has an ipBlock
// peer or no peer).
type Port struct {
	Protocol Protocol
	Port     uint16
	EndPort  uint16
	Name     string
	SetID    string
}

func (p Port) String() string {
	switch {
	case p.Name != "":
		return fmt.Sprintf("%s/%s", p.Name, p.Protocol)
	case p.Port == 0:
		return fmt.Sprintf("any/%s", p.Protocol)
	case p.EndPort > p.Port:
		return fmt.Sprintf("%d-%d/%s", p.Port, p.EndPort, p.Protocol)
	default:
		return fmt.Sprintf("%d/%s", p.Port, p.Protocol)
	}
}

// Rule is one allow rule: it matches when (no Peers or any peer matches) and
// (no Ports or any port matches). Comment is a readable description of the
// peers ("from pods in ns x with app=db; from 10.0.0.0/8 except 10.1.0.0/16").
type Rule struct {
	Peers   []Peer
	Ports   []Port
	Comment string
	// Action of a ClusterNetworkPolicy rule (NetworkPolicy rules allow).
	Action Action
	// Name of a ClusterNetworkPolicy rule (may be empty).
	Name string
}

// Policy is the translation of one NetworkPolicy. A policy isolates the
// pods it selects in each direction listed in its policy types; the rules of
// that direction are the only allows it contributes. A policy whose
// translation failed has Error set and no rules: it still isolates the pods
// it selects (fail closed) in both directions.
//
// A ClusterNetworkPolicy is a Policy too, with Tier Admin or Baseline, its
// Priority and no Namespace; its rules carry actions (see Tier for the
// order of evaluation). Ingress/Egress then say whether it has rules of
// that direction (a direction without rules is not affected by it).
type Policy struct {
	Namespace    string
	Name         string
	Tier         Tier
	Priority     int32
	Selector     string // human-readable target selector
	Ingress      bool   // isolates selected pods for ingress
	Egress       bool   // isolates selected pods for egress
	IngressRules []Rule
	EgressRules  []Rule
	Error        string // non-empty: untranslatable, fails closed
	// FlowLog: the verdicts on its pods logged per connection (from its
	// namespace's annotation, else the configured default).
	FlowLog FlowLog
}

// Key is "namespace/name", or "ClusterNetworkPolicy/name".
func (p *Policy) Key() string {
	if p.Tier.Cluster() {
		return ClusterPolicyKey(p.Name)
	}
	return p.Namespace + "/" + p.Name
}

// Rules returns the rules of one direction.
func (p *Policy) Rules(d Direction) []Rule {
	if d == Egress {
		return p.EgressRules
	}
	return p.IngressRules
}

// Isolates reports whether the policy isolates its pods in direction d.
func (p *Policy) Isolates(d Direction) bool {
	if d == Egress {
		return p.Egress
	}
	return p.Ingress
}

// Endpoint is a pod hosted on this node that at least one policy selects.
// Ingress/Egress list the keys of the policies applying to it in that
// direction in evaluation order (State.Order: Admin tier by priority, the
// NetworkPolicies sorted by key, Baseline tier by priority); an empty list
// means that direction is open.
type Endpoint struct {
	Namespace string
	Name      string
	IPs       []netip.Addr
	Ingress   []string
	Egress    []string
	// Remote: a pod of another node that backs a NodePort or LoadBalancer
	// service (externalTrafficPolicy Cluster). This node enforces its
	// ingress policies (Egress is empty) only on traffic this node DNATed
	// to it, by the original client address, before kube-proxy's SNAT
	// hides it from the pod's own node. Other traffic to it is its own
	// node's to decide.
	Remote bool
}

// Key is "namespace/name".
func (e *Endpoint) Key() string { return e.Namespace + "/" + e.Name }

// Policies returns the policy keys of one direction.
func (e *Endpoint) Policies(d Direction) []string {
	if d == Egress {
		return e.Egress
	}
	return e.Ingress
}

// State is the desired state of one node. Sets contains exactly the sets
// referenced by some policy's rules. Maps are keyed by Set.ID, Policy.Key()
// and Endpoint.Key().
type State struct {
	Sets      map[string]*Set
	Policies  map[string]*Policy
	Endpoints map[string]*Endpoint
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Sets: map[string]*Set{}, Policies: map[string]*Policy{}, Endpoints: map[string]*Endpoint{}}
}

// Changes names what changed between two states (or since the last call of
// an incremental engine). Dataplanes may use it to diff only these objects;
// a nil *Changes means "anything may have changed".
type Changes struct {
	Sets      map[string]struct{} // set IDs whose existence or members changed
	Policies  map[string]struct{} // policy keys whose rules/isolation changed
	Endpoints map[string]struct{} // endpoint keys whose IPs/policies changed
	// Members optionally narrows a set listed in Sets to the members that
	// may have been added or removed. A set in Sets without an entry here
	// may have changed arbitrarily (created, deleted, rebuilt). Dataplanes
	// use it to diff big sets in O(changes) instead of O(size).
	Members map[string]map[Member]struct{}
}

// NewChanges returns an empty change record.
func NewChanges() *Changes {
	return &Changes{Sets: map[string]struct{}{}, Policies: map[string]struct{}{}, Endpoints: map[string]struct{}{}, Members: map[string]map[Member]struct{}{}}
}

// Empty reports whether nothing changed.
func (c *Changes) Empty() bool {
	return c != nil && len(c.Sets) == 0 && len(c.Policies) == 0 && len(c.Endpoints) == 0
}

// Merge adds o's entries to c.
func (c *Changes) Merge(o *Changes) {
	if o == nil {
		return
	}
	if c.Members == nil {
		c.Members = map[string]map[Member]struct{}{}
	}
	for k := range o.Sets {
		_, had := c.Sets[k]
		hc, hasC := c.Members[k]
		ho, hasO := o.Members[k]
		switch {
		case !hasO || had && !hasC:
			delete(c.Members, k) // arbitrary change
		case !had:
			c.Members[k] = make(map[Member]struct{}, len(ho))
			maps.Copy(c.Members[k], ho)
		default:
			maps.Copy(hc, ho)
		}
		c.Sets[k] = struct{}{}
	}
	for k := range o.Policies {
		c.Policies[k] = struct{}{}
	}
	for k := range o.Endpoints {
		c.Endpoints[k] = struct{}{}
	}
}
