//go:build linux

package nftables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
)

// The dataplane's own picture of kernel objects: what it wants (rendered
// from the model) and what it believes or reads back is in the kernel.
// Objects are immutable once built, so "want" and "have" share pointers and
// an unchanged object compares equal by pointer.

// kset is a set or verdict map of the table.
type kset struct {
	name     string
	comment  string // human-readable selector, for logs
	keyType  gnft.SetDatatype
	interval bool
	concat   bool
	isMap    bool
	elems    map[string]kelem // by elemID
}

// kelem is one element: a key (with the interval-end flag for interval
// sets) and, for verdict maps, the chain it jumps to.
type kelem struct {
	key   []byte
	end   bool
	chain string // verdict maps: goto target
	text  string // readable member for logs; "" means formatKey
}

// String is the readable element, for logs (computed only when logged).
func (e kelem) String() string {
	s := e.text
	if s == "" {
		s = formatKey(e.key, e.end)
	}
	if e.chain != "" {
		s += " : goto " + e.chain
	}
	return s
}

func (s *kset) family() policy.Family {
	if len(s.name) > 1 && s.name[1] == '6' || s.name == MapIngress6 || s.name == MapEgress6 {
		return policy.IPv6
	}
	return policy.IPv4
}

func elemID(key []byte, end bool) string {
	if end {
		return string(key) + "\x01"
	}
	return string(key)
}

// kchain is a chain with its rules; base chains have a hook and priority.
type kchain struct {
	name   string
	base   bool
	input  bool // a base chain on the input hook (else forward)
	prio   int32
	policy string // policy key it implements ("" for dispatch/base chains), for logs
	rules  []krule
}

// krule is one rule: its expressions, comment (kernel user data) and a
// readable text for logs. fp identifies the rule for comparisons with the
// kernel's read-back.
type krule struct {
	exprs   []expr.Any
	comment string
	text    string
	fp      string
}

func newRule(text, comment string, exprs ...expr.Any) krule {
	comment = clip(comment)
	return krule{exprs: exprs, comment: comment, text: text, fp: fingerprint(exprs) + "|" + comment}
}

// fingerprint is a canonical text of a rule's expressions, equal for the
// expressions we build and the ones google/nftables decodes from a dump.
func fingerprint(es []expr.Any) string {
	var b strings.Builder
	for _, e := range es {
		switch v := e.(type) {
		case *expr.Lookup:
			fmt.Fprintf(&b, "lookup(%d,%d,%v,%s,%v)", v.SourceRegister, v.DestRegister, v.IsDestRegSet, v.SetName, v.Invert)
		case *expr.Verdict:
			fmt.Fprintf(&b, "verdict(%d,%s)", v.Kind, v.Chain)
		case *expr.Log:
			fmt.Fprintf(&b, "log(%d,%q)", v.Group, v.Data)
		case *expr.Objref:
			fmt.Fprintf(&b, "objref(%d,%s)", v.Type, v.Name)
		case *expr.Payload:
			fmt.Fprintf(&b, "payload(%d,%d,%d,%d,%d)", v.OperationType, v.DestRegister, v.Base, v.Offset, v.Len)
		default:
			fmt.Fprintf(&b, "%T%+v", e, deref(e))
		}
		b.WriteByte(';')
	}
	return b.String()
}

func deref(e expr.Any) any {
	switch v := e.(type) {
	case *expr.Meta:
		return *v
	case *expr.Cmp:
		return *v
	case *expr.Ct:
		return *v
	case *expr.Bitwise:
		return *v
	case *expr.Range:
		return *v
	case *expr.Counter:
		return "counter" // counters change; never part of identity
	}
	return e
}

func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\n' || r == '\\' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxComment {
		s = strings.ToValidUTF8(s[:maxComment-3], "") + "..."
	}
	return s
}

// ---- expression builders (the same expressions `nft` generates) ----

func nfproto(f policy.Family) []expr.Any {
	v := byte(unix.NFPROTO_IPV4)
	if f == policy.IPv6 {
		v = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{v}},
	}
}

// addr loads the source (src) or destination address into reg.
func addr(f policy.Family, src bool, reg uint32) *expr.Payload {
	off, n := uint32(16), uint32(4)
	if src {
		off = 12
	}
	if f == policy.IPv6 {
		off, n = 24, 16
		if src {
			off = 8
		}
	}
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func ctEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

func famName(f policy.Family) string {
	if f == policy.IPv6 {
		return "ip6"
	}
	return "ip"
}

func addrType(f policy.Family) gnft.SetDatatype {
	if f == policy.IPv6 {
		return gnft.TypeIP6Addr
	}
	return gnft.TypeIPAddr
}

var (
	ipPortType4 = gnft.MustConcatSetType(gnft.TypeIPAddr, gnft.TypeInetProto, gnft.TypeInetService)
	ipPortType6 = gnft.MustConcatSetType(gnft.TypeIP6Addr, gnft.TypeInetProto, gnft.TypeInetService)
)

// ---- base chains and dispatch ----

func baseChains() []*kchain {
	var out []*kchain
	for _, c := range []struct {
		name  string
		prio  int32
		dir   policy.Direction
		input bool
	}{{ChainEgress, PriorityEgress, policy.Egress, false}, {ChainIngress, PriorityIngress, policy.Ingress, false}, {ChainInput, PriorityInput, policy.Egress, true}} {
		field := "daddr"
		if c.dir == policy.Egress {
			field = "saddr"
		}
		kc := &kchain{name: c.name, base: true, input: c.input, prio: c.prio}
		kc.rules = append(kc.rules, newRule("ct state established,related accept", "only new connections are evaluated", ctEstablished()...))
		// Every hook: in bridge mode pods of one segment resolve each
		// other's addresses through the forward hook.
		kc.rules = append(kc.rules, ndExempt())
		if c.dir == policy.Ingress {
			for _, f := range policy.Families {
				kc.rules = append(kc.rules, remoteSkip(f))
			}
		}
		for _, f := range policy.Families {
			m := DispatchMap(c.dir, f)
			es := append(nfproto(f), addr(f, c.dir == policy.Egress, 1),
				&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: m})
			kc.rules = append(kc.rules, newRule(fmt.Sprintf("%s %s vmap @%s", famName(f), field, m), c.dir.String()+" dispatch by local pod", es...))
		}
		out = append(out, kc)
	}
	return out
}

// remoteSkip accepts, in the ingress chain, traffic to a Remote endpoint
// that this node did not DNAT: a pod of another node is enforced here only
// for the NodePort/LoadBalancer traffic this node translated to it (see
// "Services" in npm/README.md).
func remoteSkip(f policy.Family) krule {
	m := RemoteSetName(f)
	return newRule(fmt.Sprintf("ct status & dnat == 0 %s daddr @%s accept", famName(f), m), "ingress of pods on other nodes: only for traffic DNATed here",
		append(nfproto(f),
			&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			addr(f, false, 1),
			&expr.Lookup{SourceRegister: 1, SetName: m},
			&expr.Verdict{Kind: expr.VerdictAccept})...)
}

// ctStatusDNAT is IPS_DST_NAT of the conntrack status bits.
const ctStatusDNAT = 1 << 5

// RemoteSetName is the set of Remote endpoint addresses of a family.
func RemoteSetName(f policy.Family) string {
	if f == policy.IPv6 {
		return Remote6
	}
	return Remote4
}

// remoteSets renders the sets of Remote endpoint addresses of both families.
func remoteSets(st *policy.State) []*kset {
	var out []*kset
	for _, f := range policy.Families {
		ks := &kset{name: RemoteSetName(f), comment: "pods of other nodes backing NodePort/LoadBalancer services", keyType: addrType(f), elems: map[string]kelem{}}
		for _, a := range st.RemoteIPs(f) {
			k := addrKey(a)
			ks.elems[elemID(k, false)] = kelem{key: k}
		}
		out = append(out, ks)
	}
	return out
}

// ndExempt accepts IPv6 router and neighbour solicitations and
// advertisements (ICMPv6 types 133-136) on every hook: a pod's address
// resolution with its node and (bridge mode) with the pods of its segment
// is the link working, not traffic a policy speaks of (as ARP for IPv4),
// and a policy must not cut the pod off its gateway or its neighbours.
func ndExempt() krule {
	return newRule("meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-136 accept", "neighbour discovery",
		append(nfproto(policy.IPv6),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: []byte{133}},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: []byte{136}},
			&expr.Verdict{Kind: expr.VerdictAccept})...)
}

func addrKey(a netip.Addr) []byte {
	a = a.Unmap()
	return a.AsSlice()
}

// renderGroups renders the group chains and the four dispatch maps.
// rendered holds each policy's rendered chains (the Admin tier's rules
// are inlined into the group chains, see tiers.go). logDeny, when not
// nil, renders a group's logged default deny (nil: the group's denies are
// not logged).
func renderGroups(groups map[policy.Direction][]*policy.Group, pols map[string]*policy.Policy, rendered map[string][]*kchain, logDeny func(g *policy.Group, cm string) []krule, withChains bool) ([]*kchain, []*kset) {
	var chains []*kchain
	var maps []*kset
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		byFam := map[policy.Family]*kset{}
		for _, f := range policy.Families {
			byFam[f] = &kset{name: DispatchMap(dir, f), comment: "local pods isolated for " + dir.String(), keyType: addrType(f), isMap: true, elems: map[string]kelem{}}
		}
		for _, g := range groups[dir] {
			gc := GroupChain(g)
			if withChains {
				chains = append(chains, groupChains(dir, g, pols, rendered, logDeny)...)
			}
			for _, a := range g.IPs {
				m := byFam[policy.FamilyOf(a)]
				k := addrKey(a)
				id := elemID(k, false)
				if _, dup := m.elems[id]; dup {
					continue
				}
				m.elems[id] = kelem{key: k, chain: gc}
			}
		}
		for _, f := range policy.Families {
			maps = append(maps, byFam[f])
		}
	}
	return chains, maps
}

// ---- model sets ----

func hasFamily(s *policy.Set, f policy.Family) bool {
	for m := range s.Members {
		if m.Family() == f {
			return true
		}
	}
	return false
}

// setFamilies are the families a model set exists in: pod sets and named
// port sets in both (they gain members as pods come), ipBlock sets only in
// the families of their prefixes (they never change).
func setFamilies(s *policy.Set) []policy.Family {
	if s.Kind != policy.SetNet {
		return policy.Families
	}
	var out []policy.Family
	for _, f := range policy.Families {
		if hasFamily(s, f) {
			out = append(out, f)
		}
	}
	return out
}

// renderSet renders a model set into its kernel sets.
func renderSet(s *policy.Set) []*kset {
	var out []*kset
	for _, f := range setFamilies(s) {
		ks := &kset{name: SetName(f, s.ID), comment: clip(s.Comment), elems: map[string]kelem{}}
		var ms []policy.Member
		for m := range s.Members {
			if m.Family() == f {
				ms = append(ms, m)
			}
		}
		switch s.Kind {
		case policy.SetIP:
			ks.keyType = addrType(f)
			for _, m := range ms {
				k := addrKey(m.Prefix.Addr())
				ks.elems[elemID(k, false)] = kelem{key: k}
			}
		case policy.SetIPPort:
			ks.keyType, ks.concat = ipPortType4, true
			if f == policy.IPv6 {
				ks.keyType = ipPortType6
			}
			for _, m := range ms {
				k := ipPortKey(m)
				ks.elems[elemID(k, false)] = kelem{key: k}
			}
		case policy.SetNet:
			ks.keyType, ks.interval = addrType(f), true
			for _, e := range intervalElems(ms) {
				ks.elems[elemID(e.key, e.end)] = e
			}
		}
		out = append(out, ks)
	}
	return out
}

func ipPortKey(m policy.Member) []byte {
	k := addrKey(m.Prefix.Addr())
	k = append(k, m.Protocol.Number(), 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, m.Port)
	return append(k, 0, 0)
}

// intervalElems encodes non-overlapping prefixes the way nft does: a start
// element per prefix, an end element (flag interval-end) at the first
// address after it unless that overflows, and a leading end element at the
// zero address when the first prefix does not start there.
func intervalElems(ms []policy.Member) []kelem {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Prefix.Addr().Less(ms[j].Prefix.Addr()) })
	var out []kelem
	for i, m := range ms {
		p := m.Prefix.Masked()
		start := p.Addr()
		if i == 0 && !start.IsUnspecified() {
			out = append(out, kelem{key: make([]byte, start.BitLen()/8), end: true, text: "(start of ranges)"})
		}
		out = append(out, kelem{key: addrKey(start), text: p.String()})
		if next, ok := afterPrefix(p); ok {
			out = append(out, kelem{key: addrKey(next), end: true, text: p.String() + " (end)"})
		}
	}
	return out
}

// afterPrefix is the first address after p; false when p reaches the top.
func afterPrefix(p netip.Prefix) (netip.Addr, bool) {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := bits; i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			a, _ := netip.AddrFromSlice(b)
			return a, true
		}
	}
	return netip.Addr{}, false
}

// ---- policies ----

// renderPolicy renders a policy's chains (one per isolated direction).
// sets gives the model sets the rules reference.
// flow, when not nil, renders a logged verdict rule from its match (see
// flowlog.go).
func renderPolicy(p *policy.Policy, sets map[string]*policy.Set, flow flowFunc) []*kchain {
	var out []*kchain
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		if !p.Isolates(dir) {
			continue
		}
		kc := &kchain{name: PolicyChain(dir, p.Key()), policy: p.Key(), rules: []krule{}}
		for i, r := range p.Rules(dir) {
			var fr func(match []expr.Any, text, cm string) []krule
			if allow, ok := flowlog.Logged(p, r.Action); ok && flow != nil {
				id, v := flowlog.PolicyRuleID(p, dir, i, allow), expr.VerdictAccept
				if !allow {
					v = expr.VerdictDrop
				}
				fr = func(match []expr.Any, text, cm string) []krule { return flow(match, text, cm, id, v) }
			}
			kc.rules = append(kc.rules, renderRuleWith(p, dir, i, r, sets, fr)...)
		}
		out = append(out, kc)
	}
	return out
}

type match struct {
	fam   policy.Family // 0: any family
	exprs []expr.Any
	text  string
}

// renderRule renders one allow rule: one kernel rule per (peer, port)
// combination of compatible families, each ending in accept.
func renderRule(p *policy.Policy, dir policy.Direction, idx int, r policy.Rule, sets map[string]*policy.Set) []krule {
	return renderRuleWith(p, dir, idx, r, sets, nil)
}

// flowFunc renders a logged verdict rule from its match, text, comment,
// flow-log ID and verdict.
type flowFunc func(match []expr.Any, text, cm, id string, v expr.VerdictKind) []krule

// renderRuleWith is renderRule; logged, when not nil, renders each kernel
// rule from its match instead (flow logs).
func renderRuleWith(p *policy.Policy, dir policy.Direction, idx int, r policy.Rule, sets map[string]*policy.Set, logged func(match []expr.Any, text, cm string) []krule) []krule {
	peerSrc := dir == policy.Ingress
	field := "daddr"
	if peerSrc {
		field = "saddr"
	}
	var peers []match
	for _, pe := range r.Peers {
		s := sets[pe.SetID]
		if s == nil {
			continue
		}
		for _, f := range setFamilies(s) {
			n := SetName(f, pe.SetID)
			peers = append(peers, match{fam: f, exprs: []expr.Any{addr(f, peerSrc, 1), &expr.Lookup{SourceRegister: 1, SetName: n}},
				text: fmt.Sprintf("%s %s @%s", famName(f), field, n)})
		}
	}
	if len(r.Peers) > 0 && len(peers) == 0 {
		return nil // no peer set exists: the rule matches nothing
	}
	if len(peers) == 0 {
		peers = []match{{}}
	}
	var ports []match
	for _, pt := range r.Ports {
		proto := pt.Protocol.Lower()
		l4 := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{pt.Protocol.Number()}}}
		dport := &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
		switch {
		case pt.Name != "":
			if sets[pt.SetID] == nil {
				continue
			}
			for _, f := range policy.Families {
				n := SetName(f, pt.SetID)
				pr, po := uint32(9), uint32(10)
				if f == policy.IPv6 {
					pr, po = 2, 13 // 32-bit register 12 is 16-byte register 2; the kernel dumps it as 2
				}
				ports = append(ports, match{fam: f, exprs: []expr.Any{addr(f, false, 1),
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: pr},
					&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: po, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					&expr.Lookup{SourceRegister: 1, SetName: n}},
					text: fmt.Sprintf("%s daddr . meta l4proto . th dport @%s", famName(f), n)})
			}
		case pt.Port == 0:
			ports = append(ports, match{exprs: l4, text: "meta l4proto " + proto})
		case pt.EndPort > pt.Port:
			ports = append(ports, match{exprs: append(l4, dport,
				&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(pt.Port)},
				&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(pt.EndPort)}),
				text: fmt.Sprintf("%s dport %d-%d", proto, pt.Port, pt.EndPort)})
		default:
			ports = append(ports, match{exprs: append(l4, dport,
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(pt.Port)}),
				text: fmt.Sprintf("%s dport %d", proto, pt.Port)})
		}
	}
	if len(r.Ports) > 0 && len(ports) == 0 {
		return nil
	}
	if len(ports) == 0 {
		ports = []match{{}}
	}
	cm := fmt.Sprintf("%s %s rule %d: %s", p.Key(), dir, idx, r.Comment)
	if p.Tier.Cluster() {
		cm = fmt.Sprintf("%s %s %s %s", p.Key(), p.Tier, r.Action, r.Comment)
	}
	var out []krule
	for _, pe := range peers {
		for _, po := range ports {
			if pe.fam != 0 && po.fam != 0 && pe.fam != po.fam {
				continue
			}
			fam := pe.fam
			if fam == 0 {
				fam = po.fam
			}
			var es []expr.Any
			var txt []string
			if fam != 0 {
				es = append(es, nfproto(fam)...)
				txt = append(txt, "meta nfproto ipv"+fmt.Sprint(int(fam)))
			}
			es = append(es, pe.exprs...)
			es = append(es, po.exprs...)
			v, vt := ruleVerdict(p.Tier, r.Action)
			for _, t := range []string{pe.text, po.text} {
				if t != "" {
					txt = append(txt, t)
				}
			}
			if logged != nil {
				out = append(out, logged(es, strings.Join(txt, " "), cm)...)
				continue
			}
			es = append(es, v)
			txt = append(txt, vt)
			out = append(out, newRule(strings.Join(txt, " "), cm, es...))
		}
	}
	return out
}
