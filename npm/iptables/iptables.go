package iptables

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/ipset"
	"github.com/open-acn/acn/npm/policy"
)

// The dataplane's files, by job: names.go (kernel names), save.go (reading
// iptables-save back), render.go (model -> ipsets and rule lines, through
// the shared dataplane.Desired core), trie.go (the dispatch trie),
// kernel.go (programming: the four phases of a batch, Reconcile),
// cleanup.go (removing everything, the other backend's leftovers).

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
	// FlowLog programs flow logs (flowlog.go); the zero value disables them.
	FlowLog dataplane.FlowLog
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

	// desired state: model sets and policy rules from the shared core,
	// dispatch groups, trie and sets here
	r        *renderer
	want     *dataplane.Desired[*ipset.Set, policyRules]
	wantSets map[string]*ipset.Set // kernel set name -> content (model and dispatch sets)
	fgroups  map[policy.Family]map[policy.Direction][]*policy.Group
	trie     map[policy.Family]map[policy.Direction][]trieNode
	// kernel names of the group and trie sets
	dispatchSets map[string]struct{}
	retiring     map[string]bool // IDs of groups kept one batch after they disappeared
	// chainsDirty: the desired chains may differ from the programmed ones
	// (a policy, group or retiring group changed, or the kernel was read
	// back); false, program renders no chain.
	chainsDirty bool
	// legacyCleaned: this process removed an earlier version's chains
	// from the filter table (once, after its first transaction).
	legacyCleaned bool
	// commits watch each family's restores of the nft backend for their
	// commit (commit_linux.go); nil for a Runner that is not the kernel
	commits map[policy.Family]*commitWatch
	// lastRuleDeletion: when a transaction last deleted rules (destroying
	// sets waits for their destruction; see programOpts)
	lastRuleDeletion time.Time
}

var (
	_ dataplane.Dataplane    = (*Dataplane)(nil)
	_ dataplane.KernelReader = (*Dataplane)(nil)
)

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
	if ex, ok := o.Runner.(dataplane.Exec); ok {
		// One per family: the families' restores run concurrently.
		d.commits = map[policy.Family]*commitWatch{}
		for i, f := range o.Families {
			d.commits[f] = newCommitWatch(ex.Netns, i, o.Logger)
		}
	}
	d.r = &renderer{families: o.Families, flowLog: o.FlowLog}
	d.want = dataplane.NewDesired[*ipset.Set, policyRules](d.r)
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
	d.want.Reset()
	d.wantSets = map[string]*ipset.Set{}
	d.fgroups, d.trie = map[policy.Family]map[policy.Direction][]*policy.Group{}, map[policy.Family]map[policy.Direction][]trieNode{}
	d.dispatchSets, d.retiring = map[string]struct{}{}, nil
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

// Apply implements dataplane.Dataplane.
func (d *Dataplane) Apply(ctx context.Context, desired *policy.State, changes *policy.Changes) error {
	first := false
	if !d.loaded {
		if err := d.load(ctx); err != nil {
			return fmt.Errorf("read kernel state: %w", err)
		}
		d.cleanupOther(ctx)
		d.loaded = true
		changes = nil
		first = !d.legacyCleaned
	}
	d.r.hints = map[string]map[string]struct{}{}
	dirtySets, err := d.update(desired, changes)
	if err != nil {
		d.loaded = false
		return err
	}
	// A set without hints (a rebuilt set) is compared in full.
	_, err = d.program(ctx, dirtySets, d.r.hints)
	if err != nil {
		// The kernel may differ from the desired state: re-read it and
		// diff in full at the next Apply.
		d.loaded = false
		return err
	}
	if first {
		d.cleanupLegacyTable(ctx)
		d.legacyCleaned = true
	}
	return nil
}

// RuleCount is the number of rules NPM has programmed (its chains' rules
// and the jumps from the built-in chains), both families: the npm_rules gauge.
func (d *Dataplane) RuleCount() int {
	n := 0
	for _, f := range d.families {
		for _, lines := range d.chains[f] {
			n += len(lines)
		}
		if d.loaded && d.jumpFix[f] == nil {
			n += len(hooks)
		}
	}
	return n
}

// Objects implements dataplane.Dataplane.
func (d *Dataplane) Objects(key string) []dataplane.Object {
	p := d.want.Last.Policies[key]
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
						if _, ok := d.chains[f][NextTierChain(g)]; ok {
							out = append(out, dataplane.Object{Kind: "chain", Name: NextTierChain(g), Family: f, Comment: "NetworkPolicy and Baseline tiers of the dispatch group (target of its Admin Pass rules)"})
						}
					}
				}
			}
			seen := map[string]bool{}
			for _, id := range dataplane.RuleSetIDs(nil, p.Rules(dir)) {
				if seen[id] {
					continue
				}
				seen[id] = true
				if s := d.want.Last.Sets[id]; s != nil && (s.Kind != policy.SetNet || hasFamily(s, f)) {
					out = append(out, dataplane.Object{Kind: "set", Name: SetName(f, id), Family: f, Comment: s.Comment})
				}
			}
		}
	}
	return out
}
