//go:build linux

package iptables

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/open-acn/acn/npm/ipset"
	"github.com/open-acn/acn/npm/policy"
)

// fakeKernel is a dataplane.Runner standing in for ipset and the nft
// backend of iptables (the legacy tools are "not installed"). It keeps
// NPM's table (mangle) of both families and the ipsets (the filter table
// is empty), applies restore
// scripts with the kernel's checks (a rule may only name existing chains
// and sets; a set in use cannot be destroyed; iptables-restore is all or
// nothing), records every call, and traces packets through what it holds.
type fakeKernel struct {
	mu     sync.Mutex
	chains map[policy.Family]map[string][]string // chain -> rule lines ("-A CHAIN ..."), the built-in chains included
	sets   map[string]*ipset.Set
	calls  []string // "ipset restore", "iptables-restore", "ip6tables-restore", "ipset destroy"...
	// after, when set, runs after every call that changed something.
	after func(call string)
	// overLimit: every hashlimit bucket is empty (flow-log rate limit
	// exceeded); logged collects the NFLOG prefixes of the last trace.
	overLimit bool
	logged    []string
}

var fakeBuiltins = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

func newFakeKernel() *fakeKernel {
	k := &fakeKernel{chains: map[policy.Family]map[string][]string{}, sets: map[string]*ipset.Set{}}
	for _, f := range policy.Families {
		k.chains[f] = map[string][]string{}
		for _, c := range fakeBuiltins {
			k.chains[f][c] = nil
		}
	}
	return k
}

func (k *fakeKernel) Run(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	k.mu.Lock()
	call := strings.TrimSpace(name + " " + strings.Join(args, " "))
	var err error
	var out []byte
	changed := false
	switch {
	case name == "ipset" && len(args) > 0 && args[0] == "save":
		out = []byte(k.ipsetSave())
	case name == "ipset" && len(args) > 0 && args[0] == "restore":
		call, changed = "ipset restore", true
		if !strings.Contains("\n"+string(stdin), "\ncreate ") && !strings.Contains("\n"+string(stdin), "\nadd ") && !strings.Contains("\n"+string(stdin), "\ndel ") {
			call = "ipset destroy"
		}
		err = k.ipsetRestore(string(stdin))
	case name == "ipset" && len(args) == 2 && args[0] == "destroy":
		call, changed = "ipset destroy", true
		err = k.ipsetRestore("destroy " + args[1] + "\n")
	case strings.Contains(name, "-legacy-"):
		err = fmt.Errorf("%s: not installed", name)
	case strings.HasSuffix(name, "-nft-save") && slices.Contains(args, LegacyTable):
		out = []byte("*" + LegacyTable + "\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
	case strings.HasSuffix(name, "-nft-save"):
		out = []byte(k.save(famOfTool(name)))
	case strings.HasSuffix(name, "-nft-restore"):
		call, changed = strings.Replace(name, "-nft", "", 1), true
		err = k.restore(famOfTool(name), string(stdin))
	default:
		err = fmt.Errorf("fake kernel: unexpected %s", call)
	}
	if changed {
		k.calls = append(k.calls, call)
	}
	after := k.after
	k.mu.Unlock()
	if changed && err == nil && after != nil {
		after(call)
	}
	return out, err
}

// WriteIPSet models ipset's netlink interface (ipset.Writer): each op is
// one kernel request, applied (and checked) as the same line of `ipset
// restore` would be, and the after hook runs after each, so the gap tests
// see every intermediate state. A batch is one recorded call, "ipset
// netlink" ("ipset destroy" when it only destroys).
func (k *fakeKernel) WriteIPSet(_ context.Context, ops []ipset.Op) error {
	call := "ipset destroy"
	for _, o := range ops {
		if o.Cmd != ipset.OpDestroy {
			call = "ipset netlink"
		}
	}
	k.mu.Lock()
	k.calls = append(k.calls, call)
	k.mu.Unlock()
	for _, o := range ops {
		k.mu.Lock()
		err := k.ipsetRestore(o.Line())
		after := k.after
		k.mu.Unlock()
		if err != nil {
			return err
		}
		if after != nil {
			after(call)
		}
	}
	return nil
}

func famOfTool(name string) policy.Family {
	if strings.HasPrefix(name, "ip6") {
		return policy.IPv6
	}
	return policy.IPv4
}

func (k *fakeKernel) ipsetSave() string {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(k.sets)) {
		s := k.sets[n]
		fmt.Fprintf(&b, "create %s %s family %s hashsize 1024 maxelem %d\n", n, s.Type, s.Family, ipset.MaxElem)
		for _, m := range slices.Sorted(maps.Keys(s.Members)) {
			fmt.Fprintf(&b, "add %s %s\n", n, m)
		}
	}
	return b.String()
}

// inUse reports whether a rule of either family references set.
func (k *fakeKernel) inUse(set string) bool {
	for _, chains := range k.chains {
		for _, lines := range chains {
			for _, l := range lines {
				if slices.Contains(strings.Fields(l), set) {
					return true
				}
			}
		}
	}
	return false
}

// ipsetRestore applies a script line by line, as ipset does (stopping at
// the first error).
func (k *fakeKernel) ipsetRestore(script string) error {
	for i, l := range strings.Split(strings.TrimSpace(script), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		s := k.sets[f[1]]
		fail := func(why string) error { return fmt.Errorf("ipset restore line %d %q: %s", i+1, l, why) }
		switch f[0] {
		case "create":
			if s == nil {
				fam := "inet"
				if j := slices.Index(f, "family"); j > 0 && j+1 < len(f) {
					fam = f[j+1]
				}
				k.sets[f[1]] = &ipset.Set{Name: f[1], Type: f[2], Family: fam, Members: map[string]struct{}{}}
			}
		case "add", "del":
			if s == nil {
				return fail("no such set")
			}
			if f[0] == "add" {
				s.Members[f[2]] = struct{}{}
			} else {
				delete(s.Members, f[2])
			}
		case "flush":
			if s == nil {
				return fail("no such set")
			}
			s.Members = map[string]struct{}{}
		case "swap":
			o := k.sets[f[2]]
			if s == nil || o == nil {
				return fail("no such set")
			}
			s.Members, o.Members = o.Members, s.Members
		case "destroy":
			if s == nil {
				return fail("does not exist")
			}
			if k.inUse(f[1]) {
				return fail("in use by a kernel component")
			}
			delete(k.sets, f[1])
		default:
			return fail("unknown command")
		}
	}
	return nil
}

func (k *fakeKernel) save(f policy.Family) string {
	var b strings.Builder
	b.WriteString("*" + Table + "\n")
	for _, c := range fakeBuiltins {
		b.WriteString(":" + c + " ACCEPT [0:0]\n")
	}
	names := slices.Sorted(maps.Keys(k.chains[f]))
	for _, c := range names {
		if !slices.Contains(fakeBuiltins, c) {
			b.WriteString(":" + c + " - [0:0]\n")
		}
	}
	for _, c := range names {
		for _, l := range k.chains[f][c] {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

var builtinTargets = map[string]bool{"RETURN": true, "DROP": true, "ACCEPT": true, "NFLOG": true}

// restore applies an iptables-restore --noflush script to a copy of the
// table and keeps it only if every line is valid at COMMIT.
func (k *fakeKernel) restore(f policy.Family, script string) error {
	t := map[string][]string{}
	for c, ls := range k.chains[f] {
		t[c] = slices.Clone(ls)
	}
	for i, l := range strings.Split(strings.TrimSpace(script), "\n") {
		fail := func(why string) error { return fmt.Errorf("iptables-restore line %d %q: %s", i+1, l, why) }
		fs := strings.Fields(l)
		switch {
		case l == "*"+Table || l == "COMMIT":
		case strings.HasPrefix(l, ":"):
			t[fs[0][1:]] = nil // declared: created, or flushed
		case len(fs) >= 2 && (fs[0] == "-A" || fs[0] == "-D" || fs[0] == "-I" || fs[0] == "-X"):
			c := fs[1]
			if _, ok := t[c]; !ok {
				return fail("no chain " + c)
			}
			rest := fs[2:]
			switch fs[0] {
			case "-X":
				if len(t[c]) > 0 {
					return fail("chain not empty")
				}
				delete(t, c)
				continue
			case "-I":
				rest = rest[1:] // position: always 1 here
			}
			line := "-A " + c + " " + strings.Join(rest, " ")
			switch fs[0] {
			case "-A":
				t[c] = append(t[c], l)
			case "-I":
				t[c] = append([]string{line}, t[c]...)
			case "-D":
				j := slices.IndexFunc(t[c], func(x string) bool { return norm(x) == norm(line) })
				if j < 0 {
					return fail("no such rule")
				}
				t[c] = slices.Delete(t[c], j, j+1)
			}
		default:
			return fail("unsupported")
		}
	}
	// references: targets and sets exist; a deleted chain is not referenced
	for c, ls := range t {
		for _, l := range ls {
			r := parseRule(l)
			if r.target != "" && !builtinTargets[r.target] && !hasKey(t, r.target) {
				return fmt.Errorf("iptables-restore: %s: target %s does not exist", c, r.target)
			}
			for _, m := range r.sets {
				if k.sets[m.name] == nil {
					return fmt.Errorf("iptables-restore: %s: set %s does not exist", c, m.name)
				}
			}
		}
	}
	k.chains[f] = t
	return nil
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

// ---- tracer ----

type setMatch struct {
	name string
	dirs []string // src / dst per dimension
}

// rule is a parsed rule line (the subset NPM writes).
type rule struct {
	proto   string
	dport   [2]int // 0,0: any
	sets    []setMatch
	ctstate bool // -m conntrack --ctstate RELATED,ESTABLISHED: never matches a new connection
	target  string
	goTo    bool
	limited bool   // -m hashlimit --hashlimit-above: matches only over the limit
	prefix  string // NFLOG --nflog-prefix
}

// fields splits a rule line, keeping a quoted comment as one field.
func fields(l string) []string {
	var out []string
	for len(l) > 0 {
		l = strings.TrimLeft(l, " ")
		if l == "" {
			break
		}
		if l[0] == '"' {
			j := strings.IndexByte(l[1:], '"')
			out = append(out, l[1:j+1])
			l = l[j+2:]
			continue
		}
		j := strings.IndexByte(l, ' ')
		if j < 0 {
			j = len(l)
		}
		out = append(out, l[:j])
		l = l[j:]
	}
	return out
}

func parseRule(l string) rule {
	var r rule
	fs := fields(l)
	for i := 2; i < len(fs); i++ {
		arg := func() string { i++; return fs[i] }
		switch fs[i] {
		case "-p":
			r.proto = arg()
		case "--dport":
			lo, hi, _ := strings.Cut(arg(), ":")
			r.dport[0], _ = strconv.Atoi(lo)
			r.dport[1] = r.dport[0]
			if hi != "" {
				r.dport[1], _ = strconv.Atoi(hi)
			}
		case "--match-set":
			n := arg()
			r.sets = append(r.sets, setMatch{n, strings.Split(arg(), ",")})
		case "--ctstate":
			// ESTABLISHED/RELATED never match a new connection; "!
			// DNAT" matches every traced packet (none is DNATed).
			if v := arg(); v == "DNAT" && fs[i-2] == "!" {
				continue
			}
			r.ctstate = true
		case "-j", "-g":
			r.goTo = fs[i] == "-g"
			r.target = arg()
		case "--hashlimit-above":
			arg()
			r.limited = true
		case "--hashlimit-burst", "--hashlimit-name", "--nflog-group":
			arg()
		case "--nflog-prefix":
			r.prefix = arg()
		case "-m", "--comment":
			arg()
		}
	}
	return r
}

func (k *fakeKernel) inSet(m setMatch, p policy.Packet) bool {
	s := k.sets[m.name]
	if s == nil {
		return false
	}
	addr := p.Src
	if m.dirs[0] == "dst" {
		addr = p.Dst
	}
	for mem := range s.Members {
		a, port, hasPort := strings.Cut(mem, ",")
		pf, err := netip.ParsePrefix(a)
		if err != nil {
			ad, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			pf = netip.PrefixFrom(ad, ad.BitLen())
		}
		if !pf.Contains(addr) {
			continue
		}
		if !hasPort {
			return true
		}
		if len(m.dirs) == 2 && port == fmt.Sprintf("%s:%d", p.Protocol.Lower(), p.Port) {
			return true
		}
	}
	return false
}

func (k *fakeKernel) matches(r rule, p policy.Packet) bool {
	if r.ctstate || (r.proto != "" && r.proto != p.Protocol.Lower()) || (r.limited && !k.overLimit) {
		return false
	}
	if r.dport[1] != 0 && (int(p.Port) < r.dport[0] || int(p.Port) > r.dport[1]) {
		return false
	}
	for _, m := range r.sets {
		if !k.inSet(m, p) {
			return false
		}
	}
	return true
}

// allowed runs the first packet of a connection through FORWARD.
func (k *fakeKernel) allowed(p policy.Packet) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.logged = nil
	t := k.chains[policy.FamilyOf(p.Dst)]
	type frame struct {
		chain string
		pos   int
	}
	stack := []frame{{"FORWARD", 0}}
	for steps := 0; len(stack) > 0; steps++ {
		if steps > 10000 {
			panic("rule loop")
		}
		top := &stack[len(stack)-1]
		lines := t[top.chain]
		if top.pos >= len(lines) {
			if top.chain == "FORWARD" {
				return true // policy ACCEPT
			}
			stack = stack[:len(stack)-1]
			continue
		}
		r := parseRule(lines[top.pos])
		top.pos++
		if !k.matches(r, p) {
			continue
		}
		switch r.target {
		case "", "ACCEPT":
			if r.target == "ACCEPT" {
				return true
			}
		case "DROP":
			return false
		case "NFLOG":
			k.logged = append(k.logged, r.prefix) // not a verdict: go on
		case "RETURN":
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return true
			}
		default:
			if r.goTo {
				stack[len(stack)-1] = frame{r.target, 0}
			} else {
				stack = append(stack, frame{r.target, 0})
			}
		}
	}
	return true
}

// trace is allowed plus the NFLOG prefixes the packet was logged with.
func (k *fakeKernel) trace(p policy.Packet) (bool, []string) {
	ok := k.allowed(p)
	k.mu.Lock()
	defer k.mu.Unlock()
	return ok, k.logged
}

// dump prints both families' tables and the sets as iptables-save and
// ipset save would.
func (k *fakeKernel) dump() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return "# iptables-save\n" + k.save(policy.IPv4) + "# ip6tables-save\n" + k.save(policy.IPv6) + "# ipset save\n" + k.ipsetSave()
}
