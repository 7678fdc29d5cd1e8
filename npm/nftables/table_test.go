//go:build linux

package nftables

import (
	"context"
	"encoding/json"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane/dptest"
	"github.com/open-acn/acn/npm/policy"
)

// ---- hand-written models ----

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func ipSet(id, comment string, addrs ...string) *policy.Set {
	s := &policy.Set{ID: id, Kind: policy.SetIP, Key: "key " + id, Comment: comment, Members: map[policy.Member]struct{}{}}
	for _, a := range addrs {
		s.Members[policy.AddrMember(ip(a))] = struct{}{}
	}
	return s
}

func netSet(id, comment string, prefixes ...string) *policy.Set {
	s := &policy.Set{ID: id, Kind: policy.SetNet, Key: "key " + id, Comment: comment, Members: map[policy.Member]struct{}{}}
	for _, p := range prefixes {
		s.Members[policy.Member{Prefix: netip.MustParsePrefix(p)}] = struct{}{}
	}
	return s
}

func portSet(id, comment string, members ...policy.Member) *policy.Set {
	s := &policy.Set{ID: id, Kind: policy.SetIPPort, Key: "key " + id, Comment: comment, Members: map[policy.Member]struct{}{}}
	for _, m := range members {
		s.Members[m] = struct{}{}
	}
	return s
}

func state(sets []*policy.Set, pols []*policy.Policy, eps ...*policy.Endpoint) *policy.State {
	st := policy.NewState()
	for _, s := range sets {
		st.Sets[s.ID] = s
	}
	for _, p := range pols {
		st.Policies[p.Key()] = p
	}
	for _, e := range eps {
		st.Endpoints[e.Key()] = e
	}
	return st
}

func ep(ns, name string, ingress, egress []string, ips ...string) *policy.Endpoint {
	e := &policy.Endpoint{Namespace: ns, Name: name, Ingress: ingress, Egress: egress}
	for _, a := range ips {
		e.IPs = append(e.IPs, ip(a))
	}
	return e
}

func listTable(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	return ns.MustExec(t, "nft", "list", "table", "inet", TableName)
}

// squash normalises `nft list` output: one line per statement, single
// spaces, element lists joined.
func squash(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, ", ", ",")
}

type tableModel struct {
	name string
	st   *policy.State
}

// tableModels are hand-written models: pod sets with numeric ports,
// ranges and any port; ipBlocks with excepts as interval sets only in
// their families; a named port as a concatenation, an empty rule and a
// deny-all policy.
func tableModels() []tableModel {
	web := "a/web"
	return []tableModel{
		{
			name: "pod set, numeric port, range, any port",
			st: state([]*policy.Set{ipSet("iA", "pods in ns a with app=cli", "10.0.0.1", "10.0.0.2", "fd00::1")},
				[]*policy.Policy{{Namespace: "a", Name: "web", Ingress: true, IngressRules: []policy.Rule{{
					Peers:   []policy.Peer{{SetID: "iA"}},
					Ports:   []policy.Port{{Protocol: policy.TCP, Port: 80}, {Protocol: policy.UDP, Port: 50, EndPort: 60}, {Protocol: policy.SCTP}},
					Comment: "from cli"}}}},
				ep("a", "web-0", []string{web}, nil, "10.0.0.9", "fd00::9")),
		},
		{
			name: "ipBlock with except as interval sets, only in its families",
			st: state([]*policy.Set{
				netSet("nB", "ipBlock 10.0.0.0/16 except 10.0.1.0/24", "10.0.0.0/24", "10.0.2.0/23", "10.0.4.0/22", "10.0.8.0/21", "10.0.16.0/20", "10.0.32.0/19", "10.0.64.0/18", "10.0.128.0/17"),
				netSet("nC", "ipBlock ::/0", "::/1", "8000::/1"),
				netSet("nD", "ipBlock 0.0.0.0/0 except 128.0.0.0/1", "0.0.0.0/1"),
			},
				[]*policy.Policy{{Namespace: "a", Name: "web", Egress: true, EgressRules: []policy.Rule{{
					Peers: []policy.Peer{{SetID: "nB"}, {SetID: "nC"}, {SetID: "nD"}}, Comment: "to blocks"}}}},
				ep("a", "web-0", nil, []string{web}, "10.0.0.9")),
		},
		{
			name: "named port as a concatenation, empty rule, deny-all policy",
			st: state([]*policy.Set{portSet("pH", "named port http/TCP of pods in ns a",
				policy.Member{Prefix: netip.MustParsePrefix("10.0.0.9/32"), Protocol: policy.TCP, Port: 8080},
				policy.Member{Prefix: netip.MustParsePrefix("fd00::9/128"), Protocol: policy.TCP, Port: 8080})},
				[]*policy.Policy{
					{Namespace: "a", Name: "web", Ingress: true, IngressRules: []policy.Rule{
						{Ports: []policy.Port{{Protocol: policy.TCP, Name: "http", SetID: "pH"}}, Comment: "any peer"},
						{Comment: "everything"}}},
					{Namespace: "a", Name: "deny", Ingress: true, Egress: true},
				},
				ep("a", "web-0", []string{"a/deny", web}, []string{"a/deny"}, "10.0.0.9", "fd00::9")),
		},
	}
}

// TestTableFromModel: the table the dataplane sends for each model, every
// set with its type, flags, comment and elements, the dispatch maps, the
// group and policy chains with their exact rules (expressions decompiled),
// the base chains with their hooks and priorities, compared whole with
// testdata/table/<model>.txt (-update rewrites); a Reconcile reading the
// table back finds nothing to repair.
func TestTableFromModel(t *testing.T) {
	ctx := context.Background()
	for _, c := range tableModels() {
		t.Run(c.name, func(t *testing.T) {
			k := &fakeNft{}
			d, _ := New(Options{})
			d.dial = k.dial
			if err := d.Apply(ctx, c.st, nil); err != nil {
				t.Fatal(err)
			}
			if len(k.txs) != 1 {
				t.Errorf("%d transactions, want 1", len(k.txs))
			}
			dptest.Golden(t, "table/"+slug(c.name)+".txt", k.dump())
			if n, err := d.Reconcile(ctx); err != nil || n != 0 {
				t.Errorf("reconcile after apply: %d, %v", n, err)
			}
		})
	}
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return '-'
	}, s)
}

// TestTableFromModelKernel programs the same models into a kernel: the
// kernel accepts the transaction, only our table exists, and what it reads
// back equals what was written.
func TestTableFromModelKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	for _, c := range tableModels() {
		t.Run(c.name, func(t *testing.T) {
			ns := netnstest.New(t, "nft-table")
			d, _ := New(Options{NetNSPath: ns.Path})
			if err := d.Apply(ctx, c.st, nil); err != nil {
				t.Fatal(err)
			}
			if tabs := ns.MustExec(t, "nft", "list", "tables"); strings.TrimSpace(tabs) != "table inet "+TableName {
				t.Errorf("tables: %q", tabs)
			}
			if n, err := d.Reconcile(ctx); err != nil || n != 0 {
				t.Errorf("reconcile after apply: %d, %v", n, err)
			}
		})
	}
}

// TestRestartEqualsColdStart: a process that starts over a previous run's
// table (with policies it no longer has and members that changed) ends with
// exactly the table a cold start programs.
func TestRestartEqualsColdStart(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	mk := func(extra bool) *policy.State {
		sets := []*policy.Set{ipSet("iA", "pods a", "10.0.0.1"), netSet("nB", "block", "10.1.0.0/16")}
		pols := []*policy.Policy{{Namespace: "a", Name: "web", Ingress: true, IngressRules: []policy.Rule{{Peers: []policy.Peer{{SetID: "iA"}}}}}}
		eps := []*policy.Endpoint{ep("a", "web-0", []string{"a/web"}, nil, "10.0.0.9")}
		if extra {
			sets[0] = ipSet("iA", "pods a", "10.0.0.1", "10.0.0.3", "fd00::3")
			sets = append(sets, ipSet("iOld", "old pods", "10.0.0.7"))
			pols = append(pols, &policy.Policy{Namespace: "a", Name: "old", Ingress: true, Egress: true,
				IngressRules: []policy.Rule{{Peers: []policy.Peer{{SetID: "iOld"}, {SetID: "nB"}}}}})
			eps = []*policy.Endpoint{ep("a", "web-0", []string{"a/old", "a/web"}, []string{"a/old"}, "10.0.0.9"), ep("a", "x", []string{"a/old"}, nil, "10.0.0.10")}
		}
		return state(sets, pols, eps...)
	}
	restarted := netnstest.New(t, "nft-restart")
	d1, _ := New(Options{NetNSPath: restarted.Path})
	if err := d1.Apply(ctx, mk(true), nil); err != nil {
		t.Fatal(err)
	}
	d2, _ := New(Options{NetNSPath: restarted.Path})
	if err := d2.Apply(ctx, mk(false), nil); err != nil {
		t.Fatal(err)
	}
	cold := netnstest.New(t, "nft-cold")
	d3, _ := New(Options{NetNSPath: cold.Path})
	if err := d3.Apply(ctx, mk(false), nil); err != nil {
		t.Fatal(err)
	}
	norm := func(s string) string {
		ls := strings.Split(s, "\n")
		sort.Strings(ls)
		return strings.Join(ls, "\n")
	}
	if a, b := norm(listTable(t, restarted)), norm(listTable(t, cold)); a != b {
		t.Errorf("restarted table differs from a cold start:\n%s\n----\n%s", listTable(t, restarted), listTable(t, cold))
	}
	if strings.Contains(listTable(t, restarted), PolicyChain(policy.Ingress, "a/old")) {
		t.Error("stale chain survived")
	}
}

// TestLargeBatch: 30,000 pod IPs in one set and 10,000 endpoints in the
// dispatch maps go in one transaction (element lists split below the
// 64 KiB attribute limit, socket buffers large enough for the batch and
// its acknowledgements) and read back complete; a member change is then a
// small transaction and a reconcile finds nothing.
func TestLargeBatch(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	ns := netnstest.New(t, "nft-large")
	big := &policy.Set{ID: "iBig", Kind: policy.SetIP, Key: "big", Comment: "many pods", Members: map[policy.Member]struct{}{}}
	for i := 0; i < 30000; i++ {
		big.Members[policy.AddrMember(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))] = struct{}{}
	}
	var eps []*policy.Endpoint
	for i := 0; i < 10000; i++ {
		eps = append(eps, ep("a", "p"+strconv.Itoa(i), []string{"a/web"}, nil, netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}).String()))
	}
	st := state([]*policy.Set{big}, []*policy.Policy{{Namespace: "a", Name: "web", Ingress: true, IngressRules: []policy.Rule{{Peers: []policy.Peer{{SetID: "iBig"}}}}}}, eps...)
	d, _ := New(Options{NetNSPath: ns.Path})
	if err := d.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	count := func(set string) int {
		kind := "set"
		if strings.HasPrefix(set, "ingress") {
			kind = "map"
		}
		out := ns.MustExec(t, "nft", "-j", "list", kind, "inet", TableName, set)
		var doc struct {
			Nftables []map[string]struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"nftables"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, o := range doc.Nftables {
			for _, k := range []string{"set", "map"} {
				n += len(o[k].Elem)
			}
		}
		return n
	}
	if n := count(SetName(policy.IPv4, "iBig")); n != 30000 {
		t.Errorf("big set has %d elements, want 30000", n)
	}
	if n := count(MapIngress4); n != 10000 {
		t.Errorf("ingress4 has %d elements, want 10000", n)
	}
	st2 := st.Clone()
	delete(st2.Sets["iBig"].Members, policy.AddrMember(netip.MustParseAddr("10.0.0.5")))
	ch := policy.NewChanges()
	ch.Sets["iBig"] = struct{}{}
	if err := d.Apply(ctx, st2, ch); err != nil {
		t.Fatal(err)
	}
	if n := count(SetName(policy.IPv4, "iBig")); n != 29999 {
		t.Errorf("after one removal: %d elements", n)
	}
	if n, err := d.Reconcile(ctx); err != nil || n != 0 {
		t.Errorf("reconcile: %d, %v", n, err)
	}
}

// TestStartOverForeignTable: a previous table of the same name with other
// shapes (a set of another type under one of our names, an unknown chain
// and rule) is replaced in one transaction.
func TestStartOverForeignTable(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "nft-foreign")
	ns.MustExec(t, "nft", "add", "table", "inet", TableName)
	ns.MustExec(t, "nft", "add", "set", "inet", TableName, "s4-iA", "{ type ipv6_addr; }")
	ns.MustExec(t, "nft", "add", "chain", "inet", TableName, "junk", "{ type filter hook forward priority 0; policy drop; }")
	ns.MustExec(t, "nft", "add", "rule", "inet", TableName, "junk", "ip6", "saddr", "@s4-iA", "drop")
	d, _ := New(Options{NetNSPath: ns.Path})
	st := state([]*policy.Set{ipSet("iA", "pods a", "10.0.0.1")},
		[]*policy.Policy{{Namespace: "a", Name: "web", Ingress: true, IngressRules: []policy.Rule{{Peers: []policy.Peer{{SetID: "iA"}}}}}},
		ep("a", "w", []string{"a/web"}, nil, "10.0.0.9"))
	if err := d.Apply(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	got := listTable(t, ns)
	if strings.Contains(got, "junk") || !strings.Contains(squash(got), "set s4-iA { type ipv4_addr") {
		t.Errorf("foreign shapes survived:\n%s", got)
	}
	if n, err := d.Reconcile(context.Background()); err != nil || n != 0 {
		t.Errorf("reconcile: %d, %v", n, err)
	}
}
