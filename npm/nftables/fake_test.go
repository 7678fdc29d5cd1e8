//go:build linux

package nftables

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/npm/policy"
)

// fakeNft is a netlink connection (conn) to a fake kernel holding table
// inet azure-npm. A transaction (the messages up to Flush) is applied to a
// copy of the table with the kernel's checks — a rule may only reference
// existing sets and chains, a chain or set still referenced cannot be
// deleted — and kept only if all of it is valid. Every transaction is
// recorded, message by message; tr traces packets through the table.
type fakeNft struct {
	mu      sync.Mutex
	cur     *fakeTable // nil: no table
	pending []fakeOp
	// overLimit: the flow-log limit object is exhausted; logged are the
	// log prefixes of the last trace; dropped counts the packets that
	// passed the counter object.
	overLimit bool
	logged    []string
	dropped   uint64
	txs       [][]string // committed transactions: one description per message
}

type fakeTable struct {
	sets   map[string]*fakeSet
	chains map[string]*fakeChain
	objs   map[string]bool // stateful objects by name
}

type fakeSet struct {
	set   gnft.Set
	elems map[string]gnft.SetElement // by elemID
}

type fakeChain struct {
	chain gnft.Chain
	rules []*gnft.Rule
}

type fakeOp struct {
	desc string
	do   func(t **fakeTable) error
}

func (f *fakeNft) dial() (conn, func(), error) { return f, func() {}, nil }

func (f *fakeNft) queue(desc string, do func(t **fakeTable) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = append(f.pending, fakeOp{desc, do})
}

func (t *fakeTable) clone() *fakeTable {
	if t == nil {
		return nil
	}
	c := &fakeTable{sets: map[string]*fakeSet{}, chains: map[string]*fakeChain{}, objs: maps.Clone(t.objs)}
	for n, s := range t.sets {
		c.sets[n] = &fakeSet{set: s.set, elems: maps.Clone(s.elems)}
	}
	for n, ch := range t.chains {
		c.chains[n] = &fakeChain{chain: ch.chain, rules: slices.Clone(ch.rules)}
	}
	return c
}

// refs counts the references to a chain (jump, goto, map elements) and to
// a set (lookups) in t.
func (t *fakeTable) refs(name string) int {
	n := 0
	for _, ch := range t.chains {
		for _, r := range ch.rules {
			for _, e := range r.Exprs {
				switch v := e.(type) {
				case *expr.Verdict:
					if v.Chain == name {
						n++
					}
				case *expr.Lookup:
					if v.SetName == name {
						n++
					}
				}
			}
		}
	}
	for _, s := range t.sets {
		for _, e := range s.elems {
			if e.VerdictData != nil && e.VerdictData.Chain == name {
				n++
			}
		}
	}
	return n
}

func (f *fakeNft) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ops := f.pending
	f.pending = nil
	t := f.cur.clone()
	var descs []string
	for _, op := range ops {
		if err := op.do(&t); err != nil {
			return fmt.Errorf("fake nft: %s: %w", op.desc, err)
		}
		descs = append(descs, op.desc)
	}
	if t != nil { // every reference resolves at commit
		for _, ch := range t.chains {
			for _, r := range ch.rules {
				for _, e := range r.Exprs {
					if v, ok := e.(*expr.Verdict); ok && v.Chain != "" && t.chains[v.Chain] == nil {
						return fmt.Errorf("fake nft: chain %s jumps to missing %s", ch.chain.Name, v.Chain)
					}
					if v, ok := e.(*expr.Lookup); ok && t.sets[v.SetName] == nil {
						return fmt.Errorf("fake nft: chain %s looks up missing set %s", ch.chain.Name, v.SetName)
					}
					if v, ok := e.(*expr.Objref); ok && !t.objs[v.Name] {
						return fmt.Errorf("fake nft: chain %s references missing object %s", ch.chain.Name, v.Name)
					}
				}
			}
		}
	}
	f.cur = t
	f.txs = append(f.txs, descs)
	return nil
}

func needTable(t **fakeTable) error {
	if *t == nil {
		return fmt.Errorf("no table %s", TableName)
	}
	return nil
}

func (f *fakeNft) AddTable(tb *gnft.Table) *gnft.Table {
	f.queue("add table", func(t **fakeTable) error {
		if *t == nil {
			*t = &fakeTable{sets: map[string]*fakeSet{}, chains: map[string]*fakeChain{}}
		}
		return nil
	})
	return tb
}

func (f *fakeNft) DelTable(*gnft.Table) {
	f.queue("delete table", func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		*t = nil
		return nil
	})
}

func (f *fakeNft) AddSet(s *gnft.Set, _ []gnft.SetElement) error {
	cp := *s
	f.queue("add set "+s.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		if (*t).sets[cp.Name] == nil {
			(*t).sets[cp.Name] = &fakeSet{set: cp, elems: map[string]gnft.SetElement{}}
		}
		return nil
	})
	return nil
}

func (f *fakeNft) DelSet(s *gnft.Set) {
	f.queue("delete set "+s.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		if (*t).sets[s.Name] == nil {
			return fmt.Errorf("no set %s", s.Name)
		}
		if (*t).refs(s.Name) > 0 {
			return fmt.Errorf("set %s in use", s.Name)
		}
		delete((*t).sets, s.Name)
		return nil
	})
}

func (f *fakeNft) FlushSet(s *gnft.Set) {
	f.queue("flush set "+s.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		fs := (*t).sets[s.Name]
		if fs == nil {
			return fmt.Errorf("no set %s", s.Name)
		}
		fs.elems = map[string]gnft.SetElement{}
		return nil
	})
}

func (f *fakeNft) elements(s *gnft.Set, es []gnft.SetElement, add bool) error {
	es = slices.Clone(es)
	verb := "add"
	if !add {
		verb = "delete"
	}
	f.queue(verb+" elements "+s.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		fs := (*t).sets[s.Name]
		if fs == nil {
			return fmt.Errorf("no set %s", s.Name)
		}
		for _, e := range es {
			id := elemID(e.Key, e.IntervalEnd)
			if add {
				if e.VerdictData != nil && (*t).chains[e.VerdictData.Chain] == nil {
					return fmt.Errorf("element of %s jumps to missing chain %s", s.Name, e.VerdictData.Chain)
				}
				fs.elems[id] = e
			} else {
				if _, ok := fs.elems[id]; !ok {
					return fmt.Errorf("%s has no element %x", s.Name, e.Key)
				}
				delete(fs.elems, id)
			}
		}
		return nil
	})
	return nil
}

func (f *fakeNft) SetAddElements(s *gnft.Set, es []gnft.SetElement) error {
	return f.elements(s, es, true)
}

func (f *fakeNft) SetDeleteElements(s *gnft.Set, es []gnft.SetElement) error {
	return f.elements(s, es, false)
}

func (f *fakeNft) AddChain(c *gnft.Chain) *gnft.Chain {
	cp := *c
	f.queue("add chain "+c.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		if (*t).chains[cp.Name] == nil {
			(*t).chains[cp.Name] = &fakeChain{chain: cp}
		}
		return nil
	})
	return c
}

func (f *fakeNft) DelChain(c *gnft.Chain) {
	f.queue("delete chain "+c.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		ch := (*t).chains[c.Name]
		switch {
		case ch == nil:
			return fmt.Errorf("no chain %s", c.Name)
		case len(ch.rules) > 0:
			return fmt.Errorf("chain %s not empty", c.Name)
		case (*t).refs(c.Name) > 0:
			return fmt.Errorf("chain %s in use", c.Name)
		}
		delete((*t).chains, c.Name)
		return nil
	})
}

func (f *fakeNft) FlushChain(c *gnft.Chain) {
	f.queue("flush chain "+c.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		ch := (*t).chains[c.Name]
		if ch == nil {
			return fmt.Errorf("no chain %s", c.Name)
		}
		ch.rules = nil
		return nil
	})
}

func (f *fakeNft) AddObj(o gnft.Obj) gnft.Obj {
	no := o.(*gnft.NamedObj)
	f.queue("add object "+no.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		if (*t).objs == nil {
			(*t).objs = map[string]bool{}
		}
		(*t).objs[no.Name] = true // without NLM_F_EXCL: an existing one is kept
		return nil
	})
	return o
}

func (f *fakeNft) GetObject(o gnft.Obj) (gnft.Obj, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	no := o.(*gnft.NamedObj)
	if f.cur == nil || !f.cur.objs[no.Name] {
		return nil, fmt.Errorf("no object %s", no.Name)
	}
	return &gnft.NamedObj{Table: no.Table, Name: no.Name, Type: no.Type, Obj: &expr.Counter{Packets: f.dropped}}, nil
}

func (f *fakeNft) AddRule(r *gnft.Rule) *gnft.Rule {
	cp := *r
	f.queue("add rule "+r.Chain.Name, func(t **fakeTable) error {
		if err := needTable(t); err != nil {
			return err
		}
		ch := (*t).chains[cp.Chain.Name]
		if ch == nil {
			return fmt.Errorf("no chain %s", cp.Chain.Name)
		}
		for _, e := range cp.Exprs {
			if v, ok := e.(*expr.Lookup); ok && (*t).sets[v.SetName] == nil {
				return fmt.Errorf("rule looks up missing set %s", v.SetName)
			}
			if v, ok := e.(*expr.Verdict); ok && v.Chain != "" && (*t).chains[v.Chain] == nil {
				return fmt.Errorf("rule jumps to missing chain %s", v.Chain)
			}
		}
		ch.rules = append(ch.rules, &cp)
		return nil
	})
	return r
}

// ---- reads ----

func (f *fakeNft) ListTablesOfFamily(gnft.TableFamily) ([]*gnft.Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil {
		return nil, nil
	}
	return []*gnft.Table{table}, nil
}

func (f *fakeNft) ListChainsOfTableFamily(gnft.TableFamily) ([]*gnft.Chain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*gnft.Chain
	if f.cur != nil {
		for _, ch := range f.cur.chains {
			c := ch.chain
			c.Table = table
			out = append(out, &c)
		}
	}
	return out, nil
}

func (f *fakeNft) GetRules(_ *gnft.Table, c *gnft.Chain) ([]*gnft.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil || f.cur.chains[c.Name] == nil {
		return nil, fmt.Errorf("no chain %s", c.Name)
	}
	return slices.Clone(f.cur.chains[c.Name].rules), nil
}

func (f *fakeNft) GetSets(*gnft.Table) ([]*gnft.Set, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*gnft.Set
	if f.cur != nil {
		for _, s := range f.cur.sets {
			c := s.set
			out = append(out, &c)
		}
	}
	return out, nil
}

func (f *fakeNft) GetSetElements(s *gnft.Set) ([]gnft.SetElement, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil || f.cur.sets[s.Name] == nil {
		return nil, fmt.Errorf("no set %s", s.Name)
	}
	return slices.Collect(maps.Values(f.cur.sets[s.Name].elems)), nil
}

// ---- printing, as `nft list table` shows the table ----

func (f *fakeNft) dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	for _, n := range slices.Sorted(maps.Keys(f.cur.sets)) {
		s := f.cur.sets[n]
		kind, typ := "set", s.set.KeyType.Name
		if s.set.IsMap {
			kind, typ = "map", typ+" : verdict"
		}
		fmt.Fprintf(&b, "\t%s %s {\n\t\ttype %s\n", kind, n, typ)
		if s.set.Interval {
			b.WriteString("\t\tflags interval\n")
		}
		if s.set.Comment != "" {
			fmt.Fprintf(&b, "\t\tcomment %q\n", s.set.Comment)
		}
		var es []string
		for _, e := range sortedFakeElems(s) {
			t := formatKey(e.Key, e.IntervalEnd)
			if e.VerdictData != nil {
				t += " : goto " + e.VerdictData.Chain
			}
			es = append(es, t)
		}
		if len(es) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(es, ",\n\t\t\t     "))
		}
		b.WriteString("\t}\n")
	}
	for _, n := range slices.Sorted(maps.Keys(f.cur.chains)) {
		ch := f.cur.chains[n]
		fmt.Fprintf(&b, "\tchain %s {\n", n)
		if ch.chain.Hooknum != nil {
			hook := "forward"
			if *ch.chain.Hooknum == *gnft.ChainHookInput {
				hook = "input"
			}
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority %d; policy accept;\n", hook, *ch.chain.Priority)
		}
		for _, r := range ch.rules {
			b.WriteString("\t\t" + ruleText(r) + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func sortedFakeElems(s *fakeSet) []gnft.SetElement {
	es := slices.Collect(maps.Values(s.elems))
	sort.Slice(es, func(i, j int) bool {
		if c := bytes.Compare(es[i].Key, es[j].Key); c != 0 {
			return c < 0
		}
		return es[i].IntervalEnd && !es[j].IntervalEnd
	})
	return es
}

// ruleText decompiles the expressions NPM writes into nft's syntax.
func ruleText(r *gnft.Rule) string {
	var out []string
	es := r.Exprs
	field := func(p *expr.Payload) string {
		fam, dir := "ip", "daddr"
		if p.Len == 16 {
			fam = "ip6"
		}
		if p.Offset == 12 || p.Offset == 8 {
			dir = "saddr"
		}
		return fam + " " + dir
	}
	for i := 0; i < len(es); i++ {
		next := func(k int) expr.Any {
			if i+k < len(es) {
				return es[i+k]
			}
			return nil
		}
		switch v := es[i].(type) {
		case *expr.Meta:
			c, _ := next(1).(*expr.Cmp)
			switch {
			case v.Key == expr.MetaKeyNFPROTO && c != nil:
				out = append(out, map[byte]string{unix.NFPROTO_IPV4: "meta nfproto ipv4", unix.NFPROTO_IPV6: "meta nfproto ipv6"}[c.Data[0]])
				i++
			case v.Key == expr.MetaKeyL4PROTO && c != nil:
				proto := protoName(c.Data[0])
				i++
				if p, ok := next(1).(*expr.Payload); ok && p.Base == expr.PayloadBaseTransportHeader && p.Offset == 0 {
					c1, _ := next(2).(*expr.Cmp)
					c2, _ := next(3).(*expr.Cmp)
					out = append(out, fmt.Sprintf("icmpv6 type %d-%d", c1.Data[0], c2.Data[0]))
					i += 3
					continue
				}
				if p, ok := next(1).(*expr.Payload); ok && p.Base == expr.PayloadBaseTransportHeader {
					c1, _ := next(2).(*expr.Cmp)
					c2, _ := next(3).(*expr.Cmp)
					if c2 != nil && c1.Op == expr.CmpOpGte {
						out = append(out, fmt.Sprintf("%s dport %d-%d", proto, binary.BigEndian.Uint16(c1.Data), binary.BigEndian.Uint16(c2.Data)))
						i += 3
					} else {
						out = append(out, fmt.Sprintf("%s dport %d", proto, binary.BigEndian.Uint16(c1.Data)))
						i += 2
					}
					continue
				}
				out = append(out, "meta l4proto "+proto)
			default:
				out = append(out, fmt.Sprintf("meta %v", v.Key))
			}
		case *expr.Ct:
			if v.Key == expr.CtKeySTATUS {
				out = append(out, "ct status & dnat == 0")
			} else {
				out = append(out, "ct state established,related")
			}
			i += 2 // bitwise, cmp
		case *expr.Payload:
			if l, ok := next(1).(*expr.Lookup); ok {
				if l.IsDestRegSet {
					out = append(out, field(v)+" vmap @"+l.SetName)
				} else {
					out = append(out, field(v)+" @"+l.SetName)
				}
				i++
				continue
			}
			if l, ok := next(3).(*expr.Lookup); ok {
				out = append(out, field(v)+" . meta l4proto . th dport @"+l.SetName)
				i += 3
				continue
			}
			out = append(out, fmt.Sprintf("payload %+v", *v))
		case *expr.Objref:
			kind := "limit"
			if v.Type == unix.NFT_OBJECT_COUNTER {
				kind = "counter"
			}
			out = append(out, fmt.Sprintf("%s name %q", kind, v.Name))
		case *expr.Log:
			out = append(out, fmt.Sprintf("log prefix %q group %d", v.Data, v.Group))
		case *expr.Verdict:
			switch v.Kind {
			case expr.VerdictAccept:
				out = append(out, "accept")
			case expr.VerdictDrop:
				out = append(out, "drop")
			case expr.VerdictJump:
				out = append(out, "jump "+v.Chain)
			case expr.VerdictGoto:
				out = append(out, "goto "+v.Chain)
			case expr.VerdictReturn:
				out = append(out, "return")
			}
		default:
			out = append(out, fmt.Sprintf("%T", v))
		}
	}
	if cm, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
		out = append(out, fmt.Sprintf("comment %q", cm))
	}
	return strings.Join(out, " ")
}

// ---- tracer: the expressions evaluated on a packet ----

// regOff is the byte offset of a register: 1-4 are the 16-byte
// registers, 8-23 the 32-bit ones over the same space.
func regOff(r uint32) int {
	if r <= 4 {
		return int(r) * 16
	}
	return (int(r) - 8 + 4) * 4
}

type packet struct {
	nfproto byte
	l4      byte
	net     []byte // network header
	th      []byte // transport header
}

func newPacket(p policy.Packet) packet {
	pk := packet{l4: p.Protocol.Number(), th: make([]byte, 8)}
	binary.BigEndian.PutUint16(pk.th[2:], p.Port)
	if p.Src.Is4() {
		pk.nfproto, pk.net = unix.NFPROTO_IPV4, make([]byte, 20)
		copy(pk.net[12:], p.Src.AsSlice())
		copy(pk.net[16:], p.Dst.AsSlice())
	} else {
		pk.nfproto, pk.net = unix.NFPROTO_IPV6, make([]byte, 40)
		copy(pk.net[8:], p.Src.AsSlice())
		copy(pk.net[24:], p.Dst.AsSlice())
	}
	return pk
}

// inSet looks a key up: exact elements, or the interval containing it.
func inSet(s *fakeSet, regs []byte, src int) (gnft.SetElement, bool) {
	es := sortedFakeElems(s)
	if s.set.Interval {
		var hit *gnft.SetElement
		for i := range es {
			k := es[i].Key
			if bytes.Compare(k, regs[src:src+len(k)]) <= 0 {
				hit = &es[i]
			}
		}
		return gnft.SetElement{}, hit != nil && !hit.IntervalEnd
	}
	for _, e := range es {
		if bytes.Equal(e.Key, regs[src:src+len(e.Key)]) {
			return e, true
		}
	}
	return gnft.SetElement{}, false
}

// evalRule runs a rule's expressions; it returns the verdict (nil: no
// match or no verdict).
func (t *fakeTable) evalRule(f *fakeNft, r *gnft.Rule, pk packet) *expr.Verdict {
	regs := make([]byte, 96)
	load := func(reg uint32, b []byte) {
		o := regOff(reg)
		n := (len(b) + 3) / 4 * 4
		clear(regs[o : o+n])
		copy(regs[o:], b)
	}
	for _, e := range r.Exprs {
		switch v := e.(type) {
		case *expr.Meta:
			switch v.Key {
			case expr.MetaKeyNFPROTO:
				load(v.Register, []byte{pk.nfproto})
			case expr.MetaKeyL4PROTO:
				load(v.Register, []byte{pk.l4})
			default:
				panic(fmt.Sprintf("tracer: meta %v", v.Key))
			}
		case *expr.Payload:
			h := pk.net
			if v.Base == expr.PayloadBaseTransportHeader {
				h = pk.th
			}
			load(v.DestRegister, h[v.Offset:v.Offset+v.Len])
		case *expr.Ct:
			load(v.Register, binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW)) // the first packet of a connection
		case *expr.Bitwise:
			s, d := regOff(v.SourceRegister), regOff(v.DestRegister)
			for i := 0; i < int(v.Len); i++ {
				regs[d+i] = regs[s+i]&v.Mask[i] ^ v.Xor[i]
			}
		case *expr.Cmp:
			c := bytes.Compare(regs[regOff(v.Register):regOff(v.Register)+len(v.Data)], v.Data)
			ok := map[expr.CmpOp]bool{expr.CmpOpEq: c == 0, expr.CmpOpNeq: c != 0, expr.CmpOpLt: c < 0, expr.CmpOpLte: c <= 0, expr.CmpOpGt: c > 0, expr.CmpOpGte: c >= 0}[v.Op]
			if !ok {
				return nil
			}
		case *expr.Lookup:
			el, ok := inSet(t.sets[v.SetName], regs, regOff(v.SourceRegister))
			if ok == v.Invert {
				return nil
			}
			if v.IsDestRegSet {
				return &expr.Verdict{Kind: expr.VerdictGoto, Chain: el.VerdictData.Chain}
			}
		case *expr.Objref:
			switch {
			case v.Type == unix.NFT_OBJECT_LIMIT && !f.overLimit:
				return nil // within the limit (rate over): no match
			case v.Type == unix.NFT_OBJECT_COUNTER:
				f.dropped++
			}
		case *expr.Log:
			f.logged = append(f.logged, string(v.Data))
		case *expr.Verdict:
			return v
		default:
			panic(fmt.Sprintf("tracer: %T", e))
		}
	}
	return nil
}

// allowed runs the first packet of a connection through the base chains
// in priority order: a drop anywhere is final, an accept ends only its
// base chain.
func (f *fakeNft) allowed(p policy.Packet) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logged = nil
	t := f.cur
	if t == nil {
		return true
	}
	var bases []*fakeChain
	for _, ch := range t.chains {
		if ch.chain.Hooknum != nil && *ch.chain.Hooknum == *gnft.ChainHookForward {
			bases = append(bases, ch)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return *bases[i].chain.Priority < *bases[j].chain.Priority })
	pk := newPacket(p)
	for _, base := range bases {
		type frame struct {
			chain *fakeChain
			pos   int
		}
		stack := []frame{{base, 0}}
	chain:
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.pos >= len(top.chain.rules) {
				stack = stack[:len(stack)-1] // end of a chain: return (base: policy accept)
				continue
			}
			v := t.evalRule(f, top.chain.rules[top.pos], pk)
			top.pos++
			if v == nil {
				continue
			}
			switch v.Kind {
			case expr.VerdictAccept:
				break chain
			case expr.VerdictDrop:
				return false
			case expr.VerdictReturn:
				stack = stack[:len(stack)-1]
			case expr.VerdictJump:
				stack = append(stack, frame{t.chains[v.Chain], 0})
			case expr.VerdictGoto:
				stack[len(stack)-1] = frame{t.chains[v.Chain], 0}
			}
		}
	}
	return true
}

// trace is allowed plus the log prefixes the packet was logged with.
func (f *fakeNft) trace(p policy.Packet) (bool, []string) {
	ok := f.allowed(p)
	f.mu.Lock()
	defer f.mu.Unlock()
	return ok, f.logged
}

var _ = netip.Addr{}
