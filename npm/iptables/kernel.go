package iptables

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/ipset"
	"github.com/open-acn/acn/npm/policy"
)

func (d *Dataplane) restore(ctx context.Context, m Mode, f policy.Family, script []byte) error {
	args := []string{"-w", "5", "--noflush"}
	if w := d.commits[f]; w != nil && m == ModeNFT {
		// the real kernel: done when committed, not when the process has
		// closed its socket (commit_linux.go)
		return w.run(ctx, script, tool(m, f, "restore"), args...)
	}
	_, err := d.run.Run(ctx, script, tool(m, f, "restore"), args...)
	return err
}

// program writes the difference between the desired caches and the
// programmed state: one ipset restore (creations, members, swaps), one
// iptables-restore per family (chains rewritten atomically), then destroys
// the sets no rule references any more. It returns the number of objects
// (sets, chains, jumps) it changed.
func (d *Dataplane) program(ctx context.Context, dirtySets map[string]struct{}, hints map[string]map[string]struct{}) (int, error) {
	return d.programOpts(ctx, dirtySets, hints, false)
}

// destroyAfter is how long after a transaction that deleted rules the
// sets they referenced are left in place (see programOpts).
const destroyAfter = 100 * time.Millisecond

// programOpts is program; tidy (Reconcile) destroys the unreferenced sets
// whenever rules were deleted.
func (d *Dataplane) programOpts(ctx context.Context, dirtySets map[string]struct{}, hints map[string]map[string]struct{}, tidy bool) (int, error) {
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
	deleted := make([]bool, len(d.families))
	var wg sync.WaitGroup
	var mu sync.Mutex // guards d.chains / d.jumpFix / d.loaded
	for i, f := range d.families {
		if !d.chainsDirty && d.jumpFix[f] == nil {
			continue
		}
		wg.Add(1)
		go func(i int, f policy.Family) {
			defer wg.Done()
			ns[i], deleted[i], errs[i] = d.programChains(ctx, f, &mu)
		}(i, f)
	}
	wg.Wait()
	for i := range d.families {
		changed += ns[i]
		if errs[i] != nil {
			return changed, errs[i]
		}
		if deleted[i] {
			d.lastRuleDeletion = time.Now()
		}
	}
	d.chainsDirty = false
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
	// Destroying a set waits for the kernel's RCU callbacks (ipset's
	// destroy runs rcu_barrier), among them the deferred destruction of
	// rules nf_tables just deleted: ~10-15 ms right after a transaction
	// that removed the rules referencing the set, which the event that
	// caused it would wait for. Such sets (harmless: nothing refers to
	// them) are destroyed by a later batch once that has passed, or by
	// Reconcile. The fake kernels of the tests have no such wait.
	if d.commits != nil && !tidy && time.Since(d.lastRuleDeletion) < destroyAfter {
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
		if !tidy {
			// A reconcile destroying sets a batch left for later
			// repairs no drift.
			changed += n
		}
		if err != nil {
			d.log.Warn("ipset destroy failed; retried at next apply", zap.Error(err))
		}
	}
	return changed, nil
}

// programChains writes one family's changed chains in one restore; deleted
// says whether it removed rules (a chain rewritten or removed).
func (d *Dataplane) programChains(ctx context.Context, f policy.Family, mu *sync.Mutex) (int, bool, error) {
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
	deleted := false
	for _, c := range names {
		h, exists := have[c]
		if exists && linesEqual(h, want[c]) {
			continue
		}
		n++
		deleted = deleted || len(h) > 0
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
		deleted = true
		decl = append(decl, ":"+c+" - [0:0]")
		dels = append(dels, "-X "+c)
		d.logRuleDiff(f, c, have[c], nil)
		d.log.Info("iptables chain deleted", zap.String("chain", c), zap.String("family", famName(f)))
	}
	for _, l := range jump {
		if strings.HasPrefix(l, "-I ") {
			n++
			d.log.Info("iptables rule added", zap.String("family", famName(f)), zap.String("table", Table), zap.String("rule", l))
		}
	}
	if n == 0 {
		return 0, false, nil
	}
	var b bytes.Buffer
	b.WriteString("*" + Table + "\n")
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
	start := time.Now()
	err := d.restore(ctx, d.mode, f, b.Bytes())
	if ce := d.log.Check(zapcore.DebugLevel, "iptables-restore"); ce != nil {
		ce.Write(zap.String("family", famName(f)), zap.Int("chains", n), zap.Int("bytes", b.Len()), zap.Duration("took", time.Since(start)), zap.Error(err))
	}
	if err != nil {
		// The transaction is atomic: nothing changed. Re-read next time.
		mu.Lock()
		d.loaded = false
		mu.Unlock()
		return 0, false, err
	}
	mu.Lock()
	d.chains[f] = want
	d.jumpFix[f] = nil
	mu.Unlock()
	return n, deleted, nil
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

// Reconcile implements dataplane.Dataplane: it re-reads iptables-save and
// ipset save and rewrites whatever differs from the last applied state.
func (d *Dataplane) Reconcile(ctx context.Context) (int, error) { return d.reconcile(ctx, nil) }

// ReadKernel implements dataplane.KernelReader: iptables-save and ipset
// save, read without touching the dataplane's state.
func (d *Dataplane) ReadKernel(ctx context.Context) (dataplane.KernelReading, error) {
	return d.read(ctx)
}

// ReconcileRead implements dataplane.KernelReader.
func (d *Dataplane) ReconcileRead(ctx context.Context, r dataplane.KernelReading) (int, error) {
	rd, ok := r.(*reading)
	if !ok {
		return 0, fmt.Errorf("iptables: reconcile from a reading of type %T", r)
	}
	return d.reconcile(ctx, rd)
}

// reconcile is Reconcile from a reading (nil: read the kernel now).
func (d *Dataplane) reconcile(ctx context.Context, rd *reading) (int, error) {
	if d.trie[d.families[0]] == nil {
		// Nothing applied yet (or since Cleanup): there is no desired
		// state to repair towards; the first Apply replaces the kernel's.
		return 0, nil
	}
	if d.loaded && d.hasRetiring() {
		// Retire the groups the last Apply kept for one batch (not drift).
		if err := d.Apply(ctx, d.want.Last, policy.NewChanges()); err != nil {
			return 0, err
		}
		rd = nil // the reading predates that transaction
	}
	if rd == nil {
		var err error
		if rd, err = d.read(ctx); err != nil {
			return 0, err
		}
	}
	d.install(rd)
	d.loaded = true
	n, err := d.programOpts(ctx, nil, nil, true)
	if n > 0 {
		d.log.Warn("drift repaired", zap.Int("objects", n))
	}
	return n, err
}
