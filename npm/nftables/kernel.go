//go:build linux

package nftables

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var table = &gnft.Table{Name: TableName, Family: gnft.TableFamilyINet}

// sockBuf is the send and receive buffer of the netlink socket: a batch
// is one sendmsg (the kernel refuses one larger than the send buffer) and
// the kernel queues one acknowledgement per message before we read any.
const sockBuf = 64 << 20

func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], sockBuf); e != nil {
				// without CAP_NET_ADMIN: as much as the sysctl maximum allows
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], sockBuf); e != nil {
					serr = e
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// conn is the part of a netlink connection (*gnft.Conn) the dataplane
// uses: tests give it a fake kernel.
type conn interface {
	ListTablesOfFamily(gnft.TableFamily) ([]*gnft.Table, error)
	ListChainsOfTableFamily(gnft.TableFamily) ([]*gnft.Chain, error)
	GetRules(*gnft.Table, *gnft.Chain) ([]*gnft.Rule, error)
	GetSets(*gnft.Table) ([]*gnft.Set, error)
	GetSetElements(*gnft.Set) ([]gnft.SetElement, error)
	AddTable(*gnft.Table) *gnft.Table
	DelTable(*gnft.Table)
	AddSet(*gnft.Set, []gnft.SetElement) error
	DelSet(*gnft.Set)
	FlushSet(*gnft.Set)
	SetAddElements(*gnft.Set, []gnft.SetElement) error
	SetDeleteElements(*gnft.Set, []gnft.SetElement) error
	AddChain(*gnft.Chain) *gnft.Chain
	DelChain(*gnft.Chain)
	FlushChain(*gnft.Chain)
	AddRule(*gnft.Rule) *gnft.Rule
	AddObj(gnft.Obj) gnft.Obj
	GetObject(gnft.Obj) (gnft.Obj, error)
	Flush() error
}

// open returns a netlink connection to the dataplane's namespace.
func (d *Dataplane) open() (conn, func(), error) {
	if d.dial != nil {
		return d.dial()
	}
	opts := []gnft.ConnOption{gnft.AsLasting(), gnft.WithSockOptions(bigBuffers)}
	var f *os.File
	if d.nsPath != "" {
		var err error
		if f, err = os.Open(d.nsPath); err != nil {
			return nil, nil, err
		}
		opts = append(opts, gnft.WithNetNSFd(int(f.Fd())))
	}
	c, err := gnft.New(opts...)
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, nil, err
	}
	return c, func() {
		_ = c.CloseLasting()
		if f != nil {
			f.Close()
		}
	}, nil
}

func isUnsupported(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT)
}

func tableExists(c conn) (bool, error) {
	ts, err := c.ListTablesOfFamily(gnft.TableFamilyINet)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

// readKernel reads the whole table back.
func readKernel(c conn) (*objects, error) {
	o := newObjects()
	exists, err := tableExists(c)
	if err != nil || !exists {
		return o, err
	}
	o.table = true
	chains, err := c.ListChainsOfTableFamily(gnft.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != TableName {
			continue
		}
		kc := &kchain{name: ch.Name, base: ch.Hooknum != nil}
		if ch.Priority != nil {
			kc.prio = int32(*ch.Priority)
		}
		if kc.base {
			kc.input = *ch.Hooknum == *gnft.ChainHookInput
			if (!kc.input && *ch.Hooknum != *gnft.ChainHookForward) || ch.Type != gnft.ChainTypeFilter {
				kc.prio = -1 << 30 // a hook we never create: differs
			}
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			cm, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			kc.rules = append(kc.rules, krule{exprs: r.Exprs, comment: cm, text: cm, fp: fingerprint(r.Exprs) + "|" + cm})
		}
		o.chains[kc.name] = kc
	}
	sets, err := c.GetSets(table)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		ks := &kset{name: s.Name, keyType: s.KeyType, interval: s.Interval, concat: s.Concatenation, isMap: s.IsMap, elems: map[string]kelem{}}
		es, err := c.GetSetElements(s)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			ke := kelem{key: e.Key, end: e.IntervalEnd}
			if s.IsMap {
				ke.chain = verdictChain(e)
			}
			ks.elems[elemID(e.Key, e.IntervalEnd)] = ke
		}
		o.sets[ks.name] = ks
	}
	return o, nil
}

// verdictChain decodes the jump/goto target of a verdict map element
// (google/nftables hands back the raw NFTA_DATA_VERDICT attributes).
func verdictChain(e gnft.SetElement) string {
	if e.VerdictData != nil {
		return e.VerdictData.Chain
	}
	ad, err := netlink.NewAttributeDecoder(e.Val)
	if err != nil {
		return ""
	}
	ad.ByteOrder = binary.BigEndian
	code, chain := int32(0), ""
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	if code != int32(expr.VerdictGoto) {
		return "?" + chain // not a goto: differs from anything we write
	}
	return chain
}

func formatKey(k []byte, end bool) string {
	s := ""
	if a, ok := netip.AddrFromSlice(k); ok {
		s = a.String()
	} else if len(k) == 12 || len(k) == 24 {
		a, _ := netip.AddrFromSlice(k[:len(k)-8])
		s = fmt.Sprintf("%s . %s . %d", a, protoName(k[len(k)-8]), binary.BigEndian.Uint16(k[len(k)-4:]))
	} else {
		s = "0x" + hex.EncodeToString(k)
	}
	if end {
		s += " (interval end)"
	}
	return s
}

func protoName(p byte) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	}
	return fmt.Sprint(p)
}

// ---- diff ----

type setDiff struct {
	name        string
	create, del bool
	flush       bool // rewrite all elements (interval sets, repairs of them)
	add, rm     []kelem
	want, have  *kset
}

type chainDiff struct {
	name        string
	create, del bool
	want, have  *kchain
}

type objDiff struct {
	table    bool // the table itself is missing
	recreate bool // something can only be fixed by replacing the table
	sets     []*setDiff
	chains   []*chainDiff
}

func (o *objDiff) count() int {
	n := len(o.sets) + len(o.chains)
	if o.table {
		n++
	}
	return n
}

func (o *objDiff) setNames() map[string]struct{} {
	m := map[string]struct{}{}
	for _, s := range o.sets {
		m[s.name] = struct{}{}
	}
	return m
}

func (o *objDiff) chainNames() map[string]struct{} {
	m := map[string]struct{}{}
	for _, c := range o.chains {
		m[c.name] = struct{}{}
	}
	return m
}

// unionKeys is the set of the keys of a and b.
func unionKeys[T any](a, b map[string]T) map[string]struct{} {
	m := make(map[string]struct{}, len(a)+len(b))
	for n := range a {
		m[n] = struct{}{}
	}
	for n := range b {
		m[n] = struct{}{}
	}
	return m
}

// diffObjects compares have and want, over the named sets and chains only
// (nil: every object of either).
func diffObjects(have, want *objects, setNames, chainNames map[string]struct{}, pending map[string]*delta) *objDiff {
	d := &objDiff{table: want.table && !have.table}
	if setNames == nil {
		setNames = unionKeys(have.sets, want.sets)
	}
	if chainNames == nil {
		chainNames = unionKeys(have.chains, want.chains)
	}
	for _, n := range slices.Sorted(maps.Keys(setNames)) {
		h, w := have.sets[n], want.sets[n]
		if h == w {
			// shared object patched in place: its pending changes
			if p := pending[n]; p != nil && len(p.add)+len(p.rm) > 0 {
				sd := &setDiff{name: n, want: w, have: h}
				for _, e := range p.rm {
					sd.rm = append(sd.rm, e)
				}
				for _, e := range p.add {
					sd.add = append(sd.add, e)
				}
				d.sets = append(d.sets, sd)
			}
			continue
		}
		switch {
		case h == nil:
			sd := &setDiff{name: n, create: true, want: w, add: sortedElems(w)}
			d.sets = append(d.sets, sd)
		case w == nil:
			d.sets = append(d.sets, &setDiff{name: n, del: true, have: h})
		default:
			if !w.sameType(h) {
				d.recreate = true
				d.sets = append(d.sets, &setDiff{name: n, want: w, have: h})
				continue
			}
			sd := &setDiff{name: n, want: w, have: h}
			for id, we := range w.elems {
				he, ok := h.elems[id]
				if !ok {
					sd.add = append(sd.add, we)
				} else if he.chain != we.chain {
					sd.rm = append(sd.rm, he)
					sd.add = append(sd.add, we)
				}
			}
			for id, he := range h.elems {
				if _, ok := w.elems[id]; !ok {
					sd.rm = append(sd.rm, he)
				}
			}
			if len(sd.add) == 0 && len(sd.rm) == 0 {
				continue
			}
			if w.interval {
				sd.flush = true
			}
			d.sets = append(d.sets, sd)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(chainNames)) {
		h, w := have.chains[n], want.chains[n]
		if h == w {
			continue
		}
		switch {
		case h == nil:
			d.chains = append(d.chains, &chainDiff{name: n, create: true, want: w})
		case w == nil:
			d.chains = append(d.chains, &chainDiff{name: n, del: true, have: h})
		default:
			if h.base != w.base || h.input != w.input || h.prio != w.prio {
				d.recreate = true
				d.chains = append(d.chains, &chainDiff{name: n, want: w, have: h})
				continue
			}
			if rulesEqual(h.rules, w.rules) {
				continue
			}
			d.chains = append(d.chains, &chainDiff{name: n, want: w, have: h})
		}
	}
	return d
}

func rulesEqual(a, b []krule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].fp != b[i].fp {
			return false
		}
	}
	return true
}

func (s *kset) sameType(o *kset) bool {
	if s.isMap || o.isMap {
		// google/nftables reads a verdict map's key type back as
		// "verdict"; the name says which family it is.
		return s.isMap == o.isMap && s.interval == o.interval
	}
	return s.keyType.Name == o.keyType.Name && s.keyType.Bytes == o.keyType.Bytes && s.interval == o.interval
}

// ---- transactions ----

// tx is one netlink transaction being built.
type tx struct {
	c    conn
	objs []gnft.Obj // stateful objects rules may reference (flowlog.go)
}

func newTx(c conn, objs []gnft.Obj) *tx { return &tx{c: c, objs: objs} }

func (t *tx) flush() error { return t.c.Flush() }

func (t *tx) deleteTable() {
	t.c.AddTable(table) // so that the delete never fails on a missing table
	t.c.DelTable(table)
}

func gset(s *kset) *gnft.Set {
	return &gnft.Set{Table: table, Name: s.name, KeyType: s.keyType, Interval: s.interval, Concatenation: s.concat,
		IsMap: s.isMap, DataType: dataType(s), Comment: s.comment}
}

func dataType(s *kset) gnft.SetDatatype {
	if s.isMap {
		return gnft.TypeVerdict
	}
	return gnft.SetDatatype{}
}

func gchain(c *kchain) *gnft.Chain {
	ch := &gnft.Chain{Name: c.name, Table: table}
	if c.base {
		accept := gnft.ChainPolicyAccept
		ch.Type, ch.Hooknum, ch.Priority, ch.Policy = gnft.ChainTypeFilter, gnft.ChainHookForward, gnft.ChainPriorityRef(gnft.ChainPriority(c.prio)), &accept
		if c.input {
			ch.Hooknum = gnft.ChainHookInput
		}
	}
	return ch
}

// replaceTable: add table; delete table; add the table and all of want.
// Within one transaction this is an atomic swap.
func (t *tx) replaceTable(want *objects) {
	t.deleteTable()
	t.c.AddTable(table)
	d := diffObjects(newObjects(), want, nil, nil, nil)
	t.apply(d)
}

// apply emits a diff in an order where every reference is valid when its
// message is processed: sets and chains first, then elements and rules,
// then removals (references before the objects they reference).
func (t *tx) apply(d *objDiff) {
	t.c.AddTable(table)
	for _, o := range t.objs {
		t.c.AddObj(o) // no-op when it exists
	}
	gs := map[string]*gnft.Set{}
	for _, sd := range d.sets {
		s := sd.want
		if s == nil {
			s = sd.have
		}
		gs[sd.name] = gset(s)
		if sd.create {
			_ = t.c.AddSet(gs[sd.name], nil)
		}
	}
	for _, cd := range d.chains {
		if cd.create {
			t.c.AddChain(gchain(cd.want))
		}
	}
	elems := func(maps bool) {
		for _, sd := range d.sets {
			if sd.del || (sd.want != nil && sd.want.isMap != maps) {
				continue
			}
			s := gs[sd.name]
			if sd.flush {
				t.c.FlushSet(s)
				addElems(t.c, s, sortedElems(sd.want), false)
				continue
			}
			addElems(t.c, s, sd.rm, true)
			addElems(t.c, s, sd.add, false)
		}
	}
	elems(false)
	for _, cd := range d.chains {
		if cd.del {
			continue
		}
		ch := gchain(cd.want)
		if !cd.create {
			t.c.FlushChain(ch)
		}
		for _, r := range cd.want.rules {
			gr := &gnft.Rule{Table: table, Chain: ch, Exprs: r.exprs}
			if r.comment != "" {
				gr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.comment)
			}
			t.c.AddRule(gr)
		}
	}
	elems(true)
	for _, cd := range d.chains {
		if cd.del {
			t.c.FlushChain(gchain(cd.have))
		}
	}
	for _, cd := range d.chains {
		if cd.del {
			t.c.DelChain(gchain(cd.have))
		}
	}
	for _, sd := range d.sets {
		if sd.del {
			t.c.DelSet(gs[sd.name])
		}
	}
}

// sortedElems orders elements by key, an interval end before a start at
// the same key (the order nft sends adjacent intervals in).
func sortedElems(s *kset) []kelem {
	out := make([]kelem, 0, len(s.elems))
	for _, e := range s.elems {
		out = append(out, e)
	}
	if !s.interval && len(out) > 64 {
		return out // order only matters for intervals (and readable logs of small sets)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := bytes.Compare(out[i].key, out[j].key); c != 0 {
			return c < 0
		}
		return out[i].end && !out[j].end
	})
	return out
}

// addElems adds (or deletes) elements in messages below the 64 KiB limit
// of a netlink attribute.
func addElems(c conn, s *gnft.Set, es []kelem, del bool) {
	const budget = 40000
	var batch []gnft.SetElement
	size := 0
	emit := func() {
		if len(batch) == 0 {
			return
		}
		if del {
			_ = c.SetDeleteElements(s, batch)
		} else {
			_ = c.SetAddElements(s, batch)
		}
		batch, size = nil, 0
	}
	for _, e := range es {
		ge := gnft.SetElement{Key: e.key, IntervalEnd: e.end}
		sz := 32 + len(e.key)
		if e.chain != "" {
			ge.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}
			sz += 40 + len(e.chain)
		}
		if size+sz > budget {
			emit()
		}
		batch = append(batch, ge)
		size += sz
	}
	emit()
}
