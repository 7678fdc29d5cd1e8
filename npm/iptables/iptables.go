package iptables

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/ipset"
	"github.com/open-acn/acn/npm/policy"
)

// Mode is the iptables backend.
type Mode string

const (
	ModeAuto   Mode = ""
	ModeNFT    Mode = "nft"
	ModeLegacy Mode = "legacy"
)

// Options configure the dataplane.
type Options struct {
	// Runner executes ipset / iptables-restore / iptables-save; default
	// dataplane.Exec{} (the current network namespace).
	Runner dataplane.Runner
	Logger *zap.Logger
	// Mode forces a backend; ModeAuto detects it like kube-proxy's
	// iptables-wrapper (the backend holding kube's rules, else nft).
	Mode Mode
	// Families to program; default IPv4 and IPv6.
	Families []policy.Family
}

// Dataplane programs a policy.State with iptables-restore and ipset.
type Dataplane struct {
	run      dataplane.Runner
	log      *zap.Logger
	mode     Mode
	families []policy.Family
	sets     *ipset.Manager

	loaded bool
	// programmed chains per family: chain -> rule lines ("-A CHAIN ...")
	chains map[policy.Family]map[string][]string
	// jumpFix per family: nil when NPM's FORWARD jump is in place, else
	// the restore lines that put it there (from the last read-back).
	jumpFix map[policy.Family][]string

	// desired-state caches, updated incrementally from policy.Changes
	last     *policy.State
	wantSets map[string]*ipset.Set                                      // kernel set name -> content
	setNames map[string][]string                                        // model set ID -> kernel names
	polRules map[string]map[policy.Family]map[policy.Direction][]string // policy key -> family -> direction -> rule bodies
	fgroups  map[policy.Family]map[policy.Direction][]*policy.Group
	trie     map[policy.Family]map[policy.Direction][]trieNode
	// kernel names of the group and trie sets
	dispatchSets map[string]struct{}
	names        map[string]string              // chain/set name -> key (collision detection)
	setUsers     map[string]map[string]struct{} // model set ID -> policy keys using it
	kHints       map[string]map[string]struct{} // this batch: kernel set -> changed members (nil: compare in full)
	retiring     map[string]bool                // IDs of groups kept one batch after they disappeared
}

var _ dataplane.Dataplane = (*Dataplane)(nil)

// New detects the backend (unless forced) and returns the dataplane. It
// does not touch the kernel; the first Apply reads the kernel state and
// replaces a previous run's rules in one transaction.
func New(ctx context.Context, o Options) (*Dataplane, error) {
	if o.Runner == nil {
		o.Runner = dataplane.Exec{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if len(o.Families) == 0 {
		o.Families = policy.Families
	}
	d := &Dataplane{run: o.Runner, log: o.Logger, mode: o.Mode, families: o.Families, sets: ipset.New(o.Runner, o.Logger, SetPrefix)}
	d.reset()
	if d.mode == ModeAuto {
		d.mode = Detect(ctx, o.Runner)
	}
	d.log.Info("iptables dataplane", zap.String("backend", string(d.mode)))
	return d, nil
}

// reset forgets the programmed and desired state: the next Apply reads the
// kernel back and diffs in full.
func (d *Dataplane) reset() {
	d.loaded = false
	d.chains, d.jumpFix = map[policy.Family]map[string][]string{}, map[policy.Family][]string{}
	d.last, d.wantSets, d.setNames = policy.NewState(), map[string]*ipset.Set{}, map[string][]string{}
	d.polRules = map[string]map[policy.Family]map[policy.Direction][]string{}
	d.fgroups, d.trie = map[policy.Family]map[policy.Direction][]*policy.Group{}, map[policy.Family]map[policy.Direction][]trieNode{}
	d.dispatchSets, d.names = map[string]struct{}{}, map[string]string{}
	d.setUsers = map[string]map[string]struct{}{}
	d.kHints, d.retiring = nil, nil
}

// Mode returns the backend in use.
func (d *Dataplane) Mode() Mode { return d.mode }

func tool(m Mode, f policy.Family, what string) string {
	base := "iptables"
	if f == policy.IPv6 {
		base = "ip6tables"
	}
	return base + "-" + string(m) + "-" + what
}

// Detect picks the backend like kube-proxy's iptables-wrapper: the one
// where kubelet/kube-proxy left their hint chains, else the one with more
// rules, else nft.
func Detect(ctx context.Context, run dataplane.Runner) Mode {
	count := map[Mode]int{}
	for _, m := range []Mode{ModeLegacy, ModeNFT} {
		for _, f := range policy.Families {
			out, err := run.Run(ctx, nil, tool(m, f, "save"))
			if err != nil {
				continue
			}
			s := string(out)
			if strings.Contains(s, ":KUBE-IPTABLES-HINT") || strings.Contains(s, ":KUBE-KUBELET-CANARY") {
				count[m] += 1 << 20
			}
			for _, l := range strings.Split(s, "\n") {
				if strings.HasPrefix(l, "-") {
					count[m]++
				}
			}
		}
	}
	if count[ModeLegacy] > count[ModeNFT] {
		return ModeLegacy
	}
	return ModeNFT
}

// ---- kernel read-back ----

// savedChains parses iptables-save output: NPM chains and FORWARD rules.
func parseSave(out []byte) (chains map[string][]string, forward []string) {
	chains = map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	inFilter := false
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "*"):
			inFilter = l == "*filter"
		case !inFilter:
		case strings.HasPrefix(l, ":"+ChainPrefix):
			name := strings.Fields(l[1:])[0]
			if _, ok := chains[name]; !ok {
				chains[name] = nil
			}
		case strings.HasPrefix(l, "-A "):
			f := strings.SplitN(l, " ", 3)
			if len(f) < 2 {
				continue
			}
			if strings.HasPrefix(f[1], ChainPrefix) {
				chains[f[1]] = append(chains[f[1]], l)
			} else if f[1] == "FORWARD" {
				forward = append(forward, l)
			}
		}
	}
	return chains, forward
}

func (d *Dataplane) save(ctx context.Context, m Mode, f policy.Family) ([]byte, error) {
	return d.run.Run(ctx, nil, tool(m, f, "save"), "-t", "filter")
}

func (d *Dataplane) restore(ctx context.Context, m Mode, f policy.Family, script []byte) error {
	_, err := d.run.Run(ctx, script, tool(m, f, "restore"), "-w", "5", "--noflush")
	return err
}

// jumpRule is NPM's rule in FORWARD as iptables-save prints it.
func jumpRule() string {
	return fmt.Sprintf("-A FORWARD -m comment --comment %q -j %s", JumpComment, ChainMain)
}

// jumpPlaced: exactly one NPM jump, before any kube-proxy KUBE-FORWARD jump.
func jumpPlaced(forward []string) bool {
	pos, n, kube := -1, 0, -1
	for i, l := range forward {
		if strings.HasSuffix(l, "-j "+ChainMain) {
			n++
			pos = i
		}
		if kube < 0 && strings.Contains(l, "-j KUBE-") {
			kube = i
		}
	}
	return n == 1 && (kube < 0 || pos < kube)
}

// load reads the kernel state (both tools) into the "programmed" maps.
func (d *Dataplane) load(ctx context.Context) error {
	if err := d.sets.Load(ctx); err != nil {
		return err
	}
	for _, f := range d.families {
		out, err := d.save(ctx, d.mode, f)
		if err != nil {
			return err
		}
		chains, fwd := parseSave(out)
		d.chains[f] = chains
		d.jumpFix[f] = nil
		if !jumpPlaced(fwd) {
			// Remove any misplaced copies, then insert first in FORWARD.
			d.jumpFix[f] = append(deleteJumps(fwd), "-I FORWARD 1"+strings.TrimPrefix(jumpRule(), "-A FORWARD"))
		}
	}
	return nil
}

// deleteJumps returns the restore lines deleting NPM's jumps among the
// FORWARD rules.
func deleteJumps(forward []string) []string {
	var out []string
	for _, l := range forward {
		if strings.HasSuffix(l, "-j "+ChainMain) {
			out = append(out, "-D"+strings.TrimPrefix(l, "-A"))
		}
	}
	return out
}

// ---- Apply ----

// Apply implements dataplane.Dataplane.
func (d *Dataplane) Apply(ctx context.Context, desired *policy.State, changes *policy.Changes) error {
	if !d.loaded {
		if err := d.load(ctx); err != nil {
			return fmt.Errorf("read kernel state: %w", err)
		}
		d.cleanupOther(ctx)
		d.loaded = true
		changes = nil
	}
	d.kHints = map[string]map[string]struct{}{}
	dirtySets, err := d.updateDesired(desired, changes)
	if err != nil {
		d.loaded = false
		return err
	}
	// A nil hint (a rebuilt set) makes ipset compare that set in full.
	_, err = d.program(ctx, dirtySets, d.kHints)
	if err != nil {
		// The kernel may differ from d.last: re-read it and diff in full
		// at the next Apply.
		d.loaded = false
	}
	return err
}

// updateDesired refreshes the caches from desired and returns the kernel
// set names whose content may have changed (nil: all).
func (d *Dataplane) updateDesired(desired *policy.State, changes *policy.Changes) (map[string]struct{}, error) {
	full := changes == nil
	if full {
		changes = policy.Diff(d.last, desired)
		// also everything, to rebuild caches
		for id := range desired.Sets {
			changes.Sets[id] = struct{}{}
		}
		for k := range desired.Policies {
			changes.Policies[k] = struct{}{}
		}
	}
	dirty := map[string]struct{}{}
	// model sets
	for id := range changes.Sets {
		if d.patchSet(id, desired.Sets[id], dirty, changes.Members[id]) {
			continue
		}
		for _, n := range d.setNames[id] {
			delete(d.wantSets, n)
			dirty[n] = struct{}{}
			d.kHints[n] = nil
		}
		delete(d.setNames, id)
		delete(d.last.Sets, id)
		s := desired.Sets[id]
		if s == nil {
			continue
		}
		d.last.Sets[id] = s.Clone()
		for _, f := range d.families {
			if s.Kind == policy.SetNet && !hasFamily(s, f) {
				continue
			}
			n := SetName(f, id)
			if k, ok := d.names[n]; ok && k != s.Key {
				return nil, fmt.Errorf("ipset name collision: %s for %q and %q", n, k, s.Key)
			}
			d.names[n] = s.Key
			ks := &ipset.Set{Name: n, Type: setType(s.Kind), Family: famName(f), Comment: s.Comment, Members: map[string]struct{}{}}
			for m := range s.Members {
				if m.Family() == f {
					ks.Members[m.String()] = struct{}{}
				}
			}
			d.wantSets[n] = ks
			d.setNames[id] = append(d.setNames[id], n)
			dirty[n] = struct{}{}
			d.kHints[n] = nil
		}
		d.annotate(id)
	}
	// policies
	for k := range changes.Policies {
		delete(d.polRules, k)
		if old := d.last.Policies[k]; old != nil {
			for _, id := range policySetIDs(old) {
				delete(d.setUsers[id], k)
				d.annotate(id)
			}
		}
		delete(d.last.Policies, k)
		if p := desired.Policies[k]; p != nil {
			d.last.Policies[k] = p.Clone()
			for _, id := range policySetIDs(p) {
				if d.setUsers[id] == nil {
					d.setUsers[id] = map[string]struct{}{}
				}
				d.setUsers[id][k] = struct{}{}
				d.annotate(id)
			}
		}
	}
	for k := range changes.Policies {
		if p := d.last.Policies[k]; p != nil {
			d.polRules[k] = d.renderPolicy(p)
		}
	}
	// endpoints and groups
	if full || len(changes.Endpoints) > 0 || d.hasRetiring() {
		for k := range changes.Endpoints {
			delete(d.last.Endpoints, k)
			if e := desired.Endpoints[k]; e != nil {
				d.last.Endpoints[k] = e.Clone()
			}
		}
		if full {
			d.last.Endpoints = map[string]*policy.Endpoint{}
			for k, e := range desired.Endpoints {
				d.last.Endpoints[k] = e.Clone()
			}
		}
		for n := range d.dispatchSets {
			delete(d.wantSets, n)
			dirty[n] = struct{}{}
			d.kHints[n] = nil
		}
		d.dispatchSets = map[string]struct{}{}
		newRetiring := map[string]bool{}
		defer func() { d.retiring = newRetiring }()
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			groups := d.last.Groups(dir)
			for _, f := range d.families {
				// A family only gets the groups with addresses in it, so a
				// single-stack pod never touches the other family's table.
				var fg []*policy.Group
				now := map[string]bool{}
				for _, g := range groups {
					for _, a := range g.IPs {
						if policy.FamilyOf(a) == f {
							fg = append(fg, g)
							now[g.ID] = true
							break
						}
					}
				}
				// Groups that just disappeared stay one more batch,
				// "retiring": chain unchanged, set emptied only after the
				// new chains are in (see program), so a pod moving to a new
				// group is never dispatched nowhere. Dropped next batch.
				// Taken from the programmed chains, so this also covers
				// the first Apply after a restart.
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
						g.Policies = k.Policies
					}
					newRetiring[id] = true
					fg = append(fg, g)
				}
				if d.fgroups[f] == nil {
					d.fgroups[f] = map[policy.Direction][]*policy.Group{}
					d.trie[f] = map[policy.Direction][]trieNode{}
				}
				d.fgroups[f][dir] = fg
				d.trie[f][dir] = buildTrie(fg)
				ts := map[string]*ipset.Set{}
				trieSets(ts, f, dir, d.trie[f][dir])
				for n, s := range ts {
					d.wantSets[n] = s
					d.dispatchSets[n] = struct{}{}
					dirty[n] = struct{}{}
					d.kHints[n] = nil
				}
			}
			for _, f := range d.families {
				for _, g := range d.fgroups[f][dir] {
					n := GroupSetName(f, g)
					key := policy.GroupKey(dir, g.Policies)
					if d.retiring[g.ID] || newRetiring[g.ID] {
						key = d.names[n] // policies unknown after a restart
					}
					if k, ok := d.names[n]; ok && k != key {
						return nil, fmt.Errorf("ipset name collision: %s for %q and %q", n, k, key)
					}
					d.names[n] = key
					ks := &ipset.Set{Name: n, Type: ipset.HashIP, Family: famName(f), Comment: "local pods isolated by " + strings.Join(g.Policies, ","), Members: map[string]struct{}{}, Rank: groupRank}
					for _, a := range g.IPs {
						if policy.FamilyOf(a) == f {
							ks.Members[a.String()] = struct{}{}
						}
					}
					d.wantSets[n] = ks
					d.dispatchSets[n] = struct{}{}
					dirty[n] = struct{}{}
					d.kHints[n] = nil
				}
			}
		}
	}
	if full {
		return nil, nil
	}
	return dirty, nil
}

// groupRank is the ipset.Set.Rank of group sets: filled before, emptied
// after the trie's union sets (whose rank is their depth).
const groupRank = 1000

func (d *Dataplane) hasRetiring() bool { return len(d.retiring) > 0 }

// patchSet applies a member-only change of a pod set to the caches
// without rebuilding it (cost: one pass over the members, allocation only
// for the changes). It reports false when the set must be rebuilt.
func (d *Dataplane) patchSet(id string, s *policy.Set, dirty map[string]struct{}, hints map[policy.Member]struct{}) bool {
	old := d.last.Sets[id]
	if s == nil || old == nil || s.Kind == policy.SetNet || old.Kind != s.Kind || old.Key != s.Key || len(d.setNames[id]) != len(d.families) {
		return false
	}
	// With hints, O(changes): only the members the engine says may have changed.
	add, del := dataplane.DiffKeys(s.Members, old.Members, hints)
	for _, m := range add {
		old.Members[m] = struct{}{}
		if ks := d.wantSets[SetName(m.Family(), id)]; ks != nil {
			ms := m.String()
			ks.Members[ms] = struct{}{}
			dirty[ks.Name] = struct{}{}
			d.kernelHint(ks.Name, ms)
		}
	}
	for _, m := range del {
		delete(old.Members, m)
		if ks := d.wantSets[SetName(m.Family(), id)]; ks != nil {
			ms := m.String()
			delete(ks.Members, ms)
			dirty[ks.Name] = struct{}{}
			d.kernelHint(ks.Name, ms)
		}
	}
	return true
}

// kernelHint records a member of a kernel set that changed in this batch
// (nil entry in kHints: the set must be compared in full).
func (d *Dataplane) kernelHint(name, member string) {
	h, ok := d.kHints[name]
	if ok && h == nil {
		return
	}
	if h == nil {
		h = map[string]struct{}{}
		d.kHints[name] = h
	}
	h[member] = struct{}{}
}

func policySetIDs(p *policy.Policy) []string {
	return dataplane.RuleSetIDs(dataplane.RuleSetIDs(nil, p.IngressRules), p.EgressRules)
}

// annotate sets the log comment of a model set's kernel sets: its selector
// and the policies using it.
func (d *Dataplane) annotate(id string) {
	s := d.last.Sets[id]
	if s == nil {
		return
	}
	users := slices.Sorted(maps.Keys(d.setUsers[id]))
	if len(users) > 5 {
		users = append(users[:5], fmt.Sprintf("+%d more", len(users)-5))
	}
	c := s.Comment + " (policies " + strings.Join(users, ", ") + ")"
	for _, n := range d.setNames[id] {
		if ks := d.wantSets[n]; ks != nil {
			ks.Comment = c
		}
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
			"-A " + ChainMain + " -j " + ChainIngress,
		},
	}
	for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
		trieChains(out, f, dir, d.trie[f][dir])
		for _, g := range d.fgroups[f][dir] {
			// The group's policies' allow rules, inlined: the first that
			// matches RETURNs (back to ACN-NPM, as the trie is entered
			// with goto); no match: default deny. No packet marks.
			gc := GroupChain(g)
			if d.retiring[g.ID] {
				if old, ok := d.chains[f][gc]; ok {
					out[gc] = old
				}
				continue
			}
			var gl []string
			for _, k := range g.Policies {
				for _, body := range d.polRules[k][f][dir] {
					gl = append(gl, "-A "+gc+body)
				}
			}
			gl = append(gl, fmt.Sprintf("-A %s -m comment --comment %s -j DROP", gc, comment("default deny "+dir.String()+" for pods selected by "+strings.Join(g.Policies, ","))))
			out[gc] = gl
		}
	}
	return out
}

// renderPolicy renders the bodies (after "-A CHAIN") of a policy's allow
// rules, per family and direction; group chains inline them.
func (d *Dataplane) renderPolicy(p *policy.Policy) map[policy.Family]map[policy.Direction][]string {
	out := map[policy.Family]map[policy.Direction][]string{}
	for _, f := range d.families {
		out[f] = map[policy.Direction][]string{}
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			if p.Isolates(dir) {
				out[f][dir] = d.renderRules(f, p, dir)
			}
		}
	}
	return out
}

func (d *Dataplane) renderRules(f policy.Family, p *policy.Policy, dir policy.Direction) []string {
	var lines []string
	peerDir := "src"
	if dir == policy.Egress {
		peerDir = "dst"
	}
	for i, r := range p.Rules(dir) {
		var peers []string
		for _, pe := range r.Peers {
			s := d.last.Sets[pe.SetID]
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
		for _, pe := range peers {
			for _, po := range ports {
				var b strings.Builder
				for _, part := range []string{po.proto, po.match, pe} {
					if part != "" {
						b.WriteString(" " + part)
					}
				}
				fmt.Fprintf(&b, " -m comment --comment %s -j RETURN", cm)
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

// program writes the difference between the desired caches and the
// programmed state: one ipset restore (creations, members, swaps), one
// iptables-restore per family (chains rewritten atomically), then destroys
// the sets no rule references any more. It returns the number of objects
// (sets, chains, jumps) it changed.
func (d *Dataplane) program(ctx context.Context, dirtySets map[string]struct{}, hints map[string]map[string]struct{}) (int, error) {
	// Phase 1: ordinary (peer) sets, and creation of new dispatch sets,
	// empty. Dispatch sets (group and trie sets) are only filled once the
	// chains that use them are in: a pod is never sent into a part of the
	// trie whose chains do not exist yet.
	createOnly := map[string]bool{}
	fresh := true // nothing of NPM's in the kernel yet: nothing to protect
	for _, f := range d.families {
		if len(d.chains[f]) > 0 {
			fresh = false
		}
	}
	for n := range d.dispatchSets {
		createOnly[n] = !fresh
	}
	res, err := d.sets.SyncOpts(ctx, d.wantSets, ipset.SyncOptions{Dirty: dirtySets, Hints: hints, CreateOnly: createOnly})
	if err != nil {
		return 0, err
	}
	changed := res.Changed
	// The families are independent tables: restore them concurrently.
	ns := make([]int, len(d.families))
	errs := make([]error, len(d.families))
	var wg sync.WaitGroup
	var mu sync.Mutex // guards d.chains / d.jumpFix / d.loaded
	for i, f := range d.families {
		wg.Add(1)
		go func(i int, f policy.Family) {
			defer wg.Done()
			ns[i], errs[i] = d.programChains(ctx, f, &mu)
		}(i, f)
	}
	wg.Wait()
	for i := range d.families {
		changed += ns[i]
		if errs[i] != nil {
			return changed, errs[i]
		}
	}
	// Phase 3: dispatch set members, leaves first for additions and root
	// first for deletions (ipset.Set.Rank).
	var dispDirty map[string]struct{}
	if dirtySets != nil {
		dispDirty = map[string]struct{}{}
		for n := range dirtySets {
			if createOnly[n] {
				dispDirty[n] = struct{}{}
			}
		}
	}
	disp := map[string]*ipset.Set{}
	for n := range createOnly {
		disp[n] = d.wantSets[n]
	}
	if !fresh && (dirtySets == nil || len(dispDirty) > 0) {
		res3, err := d.sets.SyncOpts(ctx, disp, ipset.SyncOptions{Dirty: dispDirty, Hints: hints})
		if err != nil {
			return changed, err
		}
		changed += res3.Changed
	}
	if len(res.Unreferenced) == 0 {
		return changed, nil
	}
	// Sets no rule references any more (retiring chains may still use some
	// peer sets: those go next batch).
	inUse := map[string]bool{}
	for _, f := range d.families {
		for _, lines := range d.chains[f] {
			for _, l := range lines {
				if i := strings.Index(l, "--match-set "); i >= 0 {
					inUse[strings.Fields(l[i+len("--match-set "):])[0]] = true
				}
			}
		}
	}
	var destroy []string
	for _, n := range res.Unreferenced {
		if !inUse[n] {
			destroy = append(destroy, n)
		}
	}
	if len(destroy) > 0 {
		n, err := d.sets.Destroy(ctx, destroy)
		changed += n
		if err != nil {
			d.log.Warn("ipset destroy failed; retried at next apply", zap.Error(err))
		}
	}
	return changed, nil
}

func (d *Dataplane) programChains(ctx context.Context, f policy.Family, mu *sync.Mutex) (int, error) {
	mu.Lock()
	want := d.desiredChains(f)
	have := d.chains[f]
	jump := d.jumpFix[f]
	mu.Unlock()
	if have == nil {
		have = map[string][]string{}
	}
	names := slices.Sorted(maps.Keys(want))
	var decl, rules, dels []string
	n := 0
	for _, c := range names {
		h, exists := have[c]
		if exists && linesEqual(h, want[c]) {
			continue
		}
		n++
		decl = append(decl, ":"+c+" - [0:0]")
		rules = append(rules, want[c]...)
		if !exists {
			d.log.Info("iptables chain created", zap.String("chain", c), zap.String("family", famName(f)))
		}
		d.logRuleDiff(f, c, h, want[c])
	}
	var stale []string
	for c := range have {
		if _, ok := want[c]; !ok {
			stale = append(stale, c)
		}
	}
	sort.Strings(stale)
	for _, c := range stale {
		n++
		decl = append(decl, ":"+c+" - [0:0]")
		dels = append(dels, "-X "+c)
		d.logRuleDiff(f, c, have[c], nil)
		d.log.Info("iptables chain deleted", zap.String("chain", c), zap.String("family", famName(f)))
	}
	if jump != nil {
		n++
		d.log.Info("iptables rule added", zap.String("family", famName(f)), zap.String("rule", jumpRule()))
	}
	if n == 0 {
		return 0, nil
	}
	var b bytes.Buffer
	b.WriteString("*filter\n")
	for _, l := range decl {
		b.WriteString(l + "\n")
	}
	for _, l := range rules {
		b.WriteString(l + "\n")
	}
	for _, l := range jump {
		b.WriteString(l + "\n")
	}
	for _, l := range dels {
		b.WriteString(l + "\n")
	}
	b.WriteString("COMMIT\n")
	if err := d.restore(ctx, d.mode, f, b.Bytes()); err != nil {
		// The transaction is atomic: nothing changed. Re-read next time.
		mu.Lock()
		d.loaded = false
		mu.Unlock()
		return 0, err
	}
	mu.Lock()
	d.chains[f] = want
	d.jumpFix[f] = nil
	mu.Unlock()
	return n, nil
}

func linesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && norm(a[i]) != norm(b[i]) {
			return false
		}
	}
	return true
}

// norm makes rule text comparable across iptables-save versions (quoting).
func norm(s string) string { return strings.ReplaceAll(s, `"`, "") }

func (d *Dataplane) logRuleDiff(f policy.Family, chain string, old, cur []string) {
	seen := map[string]int{}
	for _, l := range old {
		seen[norm(l)]++
	}
	for _, l := range cur {
		if seen[norm(l)] > 0 {
			seen[norm(l)]--
			continue
		}
		d.log.Info("iptables rule added", zap.String("family", famName(f)), zap.String("chain", chain), zap.String("rule", l))
	}
	for _, l := range old {
		if seen[norm(l)] > 0 {
			seen[norm(l)]--
			d.log.Info("iptables rule removed", zap.String("family", famName(f)), zap.String("chain", chain), zap.String("rule", l))
		}
	}
}

// ---- Reconcile, Cleanup, Objects ----

// Reconcile implements dataplane.Dataplane: it re-reads iptables-save and
// ipset save and rewrites whatever differs from the last applied state.
func (d *Dataplane) Reconcile(ctx context.Context) (int, error) {
	if d.loaded && d.hasRetiring() {
		// Retire the groups the last Apply kept for one batch (not drift).
		if err := d.Apply(ctx, d.last, policy.NewChanges()); err != nil {
			return 0, err
		}
	}
	if err := d.load(ctx); err != nil {
		return 0, err
	}
	d.loaded = true
	n, err := d.program(ctx, nil, nil)
	if n > 0 {
		d.log.Warn("drift repaired", zap.Int("objects", n))
	}
	return n, err
}

// Cleanup implements dataplane.Dataplane: it removes NPM's jump, chains
// and sets from both backends.
func (d *Dataplane) Cleanup(ctx context.Context) error {
	var errs []string
	for _, m := range []Mode{ModeNFT, ModeLegacy} {
		for _, f := range d.families {
			if err := d.removeChains(ctx, m, f); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if err := d.sets.Load(ctx); err != nil {
		errs = append(errs, err.Error())
	} else if _, err := d.sets.Destroy(ctx, d.sets.Names()); err != nil {
		errs = append(errs, err.Error())
	}
	d.reset()
	if len(errs) > 0 {
		return fmt.Errorf("cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}

// cleanupOther removes NPM's leftovers from the backend not in use.
func (d *Dataplane) cleanupOther(ctx context.Context) {
	other := ModeLegacy
	if d.mode == ModeLegacy {
		other = ModeNFT
	}
	for _, f := range d.families {
		if err := d.removeChains(ctx, other, f); err != nil {
			d.log.Warn("cannot clean the other iptables backend", zap.String("backend", string(other)), zap.Error(err))
		}
	}
}

func (d *Dataplane) removeChains(ctx context.Context, m Mode, f policy.Family) error {
	out, err := d.save(ctx, m, f)
	if err != nil {
		return nil // backend not usable here: nothing of ours in it
	}
	chains, fwd := parseSave(out)
	var b bytes.Buffer
	b.WriteString("*filter\n")
	dels := deleteJumps(fwd)
	n := len(dels)
	for _, l := range dels {
		b.WriteString(l + "\n")
	}
	names := slices.Sorted(maps.Keys(chains))
	for _, c := range names {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, c := range names {
		b.WriteString("-X " + c + "\n")
		n++
	}
	b.WriteString("COMMIT\n")
	if n == 0 {
		return nil
	}
	d.log.Info("removing NPM chains", zap.String("backend", string(m)), zap.String("family", famName(f)), zap.Int("chains", len(names)))
	return d.restore(ctx, m, f, b.Bytes())
}

// Objects implements dataplane.Dataplane.
func (d *Dataplane) Objects(key string) []dataplane.Object {
	p := d.last.Policies[key]
	if p == nil {
		return nil
	}
	var out []dataplane.Object
	for _, f := range d.families {
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			if !p.Isolates(dir) {
				continue
			}
			for _, g := range d.fgroups[f][dir] {
				for _, k := range g.Policies {
					if k == key {
						out = append(out,
							dataplane.Object{Kind: "chain", Name: GroupChain(g), Family: f, Comment: fmt.Sprintf("%s rules of %s (dispatch group of %s)", dir, key, strings.Join(g.Policies, ","))},
							dataplane.Object{Kind: "set", Name: GroupSetName(f, g), Family: f, Comment: "local pods isolated by " + strings.Join(g.Policies, ",")})
					}
				}
			}
			seen := map[string]bool{}
			for _, id := range dataplane.RuleSetIDs(nil, p.Rules(dir)) {
				if seen[id] {
					continue
				}
				seen[id] = true
				if s := d.last.Sets[id]; s != nil && (s.Kind != policy.SetNet || hasFamily(s, f)) {
					out = append(out, dataplane.Object{Kind: "set", Name: SetName(f, id), Family: f, Comment: s.Comment})
				}
			}
		}
	}
	return out
}
