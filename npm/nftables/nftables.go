//go:build linux

package nftables

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
)

// Options configure the dataplane.
type Options struct {
	// Logger receives one line per added or removed set, member, chain and
	// rule. nil means zap.NewNop().
	Logger *zap.Logger
	// NetNSPath (e.g. /run/netns/NAME) programs the nftables of that
	// network namespace over a netlink socket opened there, without
	// switching the calling thread; empty means the current namespace (the
	// daemon runs inside the node's namespace).
	NetNSPath string
	// FlowLog programs flow logs (flowlog.go); the zero value disables them.
	FlowLog dataplane.FlowLog
}

// Dataplane programs a policy.State into the table `inet azure-npm`.
type Dataplane struct {
	mu      sync.Mutex
	log     *zap.Logger
	nsPath  string
	flowLog dataplane.FlowLog
	dial    func() (conn, func(), error) // tests: a fake kernel instead of netlink
	// txc is the connection the transactions use, kept open between them
	// (txConn); txClose closes it.
	txc     conn
	txClose func()

	// started: the first Apply replaced the previous run's table.
	started bool
	// have is what the kernel holds as far as we know (nil: unknown, read
	// it back before the next change).
	have *objects
	// want is the desired kernel state, maintained incrementally.
	want *objects
	// dirty names objects of want that may differ from have.
	dirtySets   map[string]struct{}
	dirtyChains map[string]struct{}
	// pending are element changes of sets that have and want share.
	pending map[string]*delta

	// model: the model sets' kernel sets, the policies' chains, the
	// dispatch groups (the shared incremental core)
	model   *dataplane.Desired[*kset, []*kchain]
	grpObjs []*kchain
	// grpPols: group chain -> its policies, for log lines; grpGone: the
	// same for the groups that went away in the last recompute (their
	// dispatch elements' removal is logged after it). Both follow the
	// live groups, never the cluster's history.
	grpPols, grpGone map[string]string
	// grpShape: groupShape of the groups grpObjs were rendered for
	grpShape string
}

// delta is the element changes of one set not yet in the kernel.
type delta struct {
	add, rm map[string]kelem
}

// objects is one picture of the table's content.
type objects struct {
	table  bool
	sets   map[string]*kset
	chains map[string]*kchain
}

func newObjects() *objects {
	return &objects{sets: map[string]*kset{}, chains: map[string]*kchain{}}
}

var (
	_ dataplane.Dataplane    = (*Dataplane)(nil)
	_ dataplane.KernelReader = (*Dataplane)(nil)
)

// New returns the dataplane. It does not touch the kernel: the first Apply
// replaces whatever a previous run left in the table, in one transaction.
func New(o Options) (*Dataplane, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	d := &Dataplane{log: o.Logger, nsPath: o.NetNSPath, flowLog: o.FlowLog}
	d.model = dataplane.NewDesired[*kset, []*kchain](renderer{d})
	d.reset()
	return d, nil
}

func (d *Dataplane) reset() {
	d.dropTxConn()
	d.started = false
	d.have = nil
	d.want = newObjects()
	d.dirtySets, d.dirtyChains = map[string]struct{}{}, map[string]struct{}{}
	d.pending = map[string]*delta{}
	d.model.Reset()
	d.grpObjs = nil
	d.grpPols, d.grpGone = map[string]string{}, map[string]string{}
	d.grpShape = ""
}

// ---- Apply ----

// Apply implements dataplane.Dataplane.
func (d *Dataplane) Apply(ctx context.Context, desired *policy.State, changes *policy.Changes) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if !d.started {
		changes = nil
	}
	if err := d.updateWant(desired, changes); err != nil {
		return err
	}
	if !d.started {
		return d.replace(ctx)
	}
	_, err := d.sync(ctx, false)
	if err != nil && ctx.Err() == nil {
		// The transaction changed nothing (e.g. it removed an element
		// someone had already deleted). Read the table back and write the
		// full difference once, instead of failing the batch.
		d.log.Warn("nftables transaction failed; reading the table back and retrying", zap.Error(err))
		_, err = d.sync(ctx, true)
	}
	return err
}

// updateWant refreshes want from desired, marking what changed dirty.
// changes == nil rebuilds everything.
func (d *Dataplane) updateWant(desired *policy.State, changes *policy.Changes) error {
	dl, err := d.model.Update(desired, changes)
	for n := range dl.Sets {
		if ks := d.model.Sets[n]; ks != nil {
			d.want.sets[n] = ks
		} else {
			delete(d.want.sets, n)
		}
		d.dirtySets[n] = struct{}{}
	}
	for k := range dl.Policies {
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			delete(d.want.chains, PolicyChain(dir, k))
			d.dirtyChains[PolicyChain(dir, k)] = struct{}{}
		}
		if p := d.model.Last.Policies[k]; p != nil && p.Tier == policy.TierAdmin {
			continue // inlined into the group chains (tiers.go)
		}
		for _, kc := range d.model.Policies[k] {
			d.want.chains[kc.name] = kc
			d.dirtyChains[kc.name] = struct{}{}
		}
	}
	if err != nil {
		return err
	}
	// groups -> group chains (which jump to the policies' chains), dispatch maps
	if dl.Groups || len(dl.Policies) > 0 {
		// The group chains follow the policies and the list of groups
		// (IDs and policies), not their members: a pod joining or leaving
		// an existing group only changes the dispatch maps.
		shape := groupShape(d.model.Groups)
		withChains := dl.Full || len(dl.Policies) > 0 || shape != d.grpShape
		d.grpShape = shape
		if withChains {
			d.renderGroupChains()
		}
		_, maps := renderGroups(d.model.Groups, nil, nil, nil, false)
		for _, m := range maps {
			d.patchMap(m)
		}
		for _, m := range remoteSets(d.model.Last) {
			d.patchMap(m)
		}
	}
	if _, ok := d.want.chains[ChainEgress]; !ok {
		for _, kc := range baseChains() {
			d.want.chains[kc.name] = kc
			d.dirtyChains[kc.name] = struct{}{}
		}
		if d.want.sets[MapIngress4] == nil {
			_, maps := renderGroups(nil, nil, nil, nil, false)
			for _, m := range append(maps, remoteSets(policy.NewState())...) {
				d.patchMap(m)
			}
		}
	}
	d.want.table = true
	return nil
}

// renderer renders model objects for the shared core (dataplane.Renderer).
type renderer struct{ d *Dataplane }

func (r renderer) RenderSet(s *policy.Set) []dataplane.KernelSet[*kset] {
	var out []dataplane.KernelSet[*kset]
	for _, ks := range renderSet(s) {
		out = append(out, dataplane.KernelSet[*kset]{Name: ks.name, Family: ks.family(), Set: ks})
	}
	return out
}

// PatchMember changes one element of a pod or named-port set in place
// (recorded in pending when the kernel shares the object).
func (r renderer) PatchMember(ks dataplane.KernelSet[*kset], m policy.Member, add bool) {
	e := kelem{key: addrKey(m.Prefix.Addr())}
	if ks.Set.concat {
		e = kelem{key: ipPortKey(m)}
	}
	r.d.patch(ks.Set, e, add)
}

func (r renderer) RenderPolicy(p *policy.Policy, sets map[string]*policy.Set) ([]*kchain, []string) {
	var flow flowFunc
	if r.d.flowLogging() {
		flow = r.d.flowRules
	}
	kcs := renderPolicy(p, sets, flow)
	names := make([]string, len(kcs))
	for i, kc := range kcs {
		names[i] = kc.name
	}
	return kcs, names
}

func (r renderer) GroupNames(g *policy.Group) []string {
	return []string{GroupChain(g), NextTierChain(g)}
}

// patchMap makes the dispatch map of want equal to m, in place.
func (d *Dataplane) patchMap(m *kset) {
	cur := d.want.sets[m.name]
	if cur == nil {
		d.want.sets[m.name] = m
		d.dirtySets[m.name] = struct{}{}
		return
	}
	for id, e := range m.elems {
		if c, ok := cur.elems[id]; !ok || c.chain != e.chain {
			d.patch(cur, e, true)
		}
	}
	for id, e := range cur.elems {
		if _, ok := m.elems[id]; !ok {
			d.patch(cur, e, false)
		}
	}
}

// patch adds (or removes) one element of a want set in place. When the
// kernel is known to hold that very object (have shares it), the change
// is also recorded in pending so the next transaction carries only it;
// otherwise the next sync compares the whole set.
func (d *Dataplane) patch(ks *kset, e kelem, add bool) {
	id := elemID(e.key, e.end)
	old, had := ks.elems[id]
	if add {
		ks.elems[id] = e
	} else {
		delete(ks.elems, id)
	}
	d.dirtySets[ks.name] = struct{}{}
	if d.have == nil || d.have.sets[ks.name] != ks {
		return
	}
	p := d.pending[ks.name]
	if p == nil {
		p = &delta{add: map[string]kelem{}, rm: map[string]kelem{}}
		d.pending[ks.name] = p
	}
	// invariant: want = kernel + p.add - p.rm; p.add is not in the kernel,
	// p.rm is.
	if add {
		if had {
			if _, pendingAdd := p.add[id]; !pendingAdd {
				p.rm[id] = old // the kernel holds the old value
			}
		} else if _, inKernel := p.rm[id]; inKernel && p.rm[id].chain == e.chain {
			delete(p.rm, id)
			return
		}
		p.add[id] = e
		return
	}
	if _, pendingAdd := p.add[id]; pendingAdd {
		delete(p.add, id)
		return
	}
	if had {
		p.rm[id] = old
	}
}

// replace is the first Apply of a process: the previous run's table is
// read (for the log and the count) and replaced by the desired one in one
// transaction (add table; delete table; add table and everything in it),
// so rules stay in force until the new ones are.
func (d *Dataplane) replace(ctx context.Context) error {
	c, err := d.txConn()
	if err != nil {
		return err
	}
	old, err := readKernel(c)
	blind := err != nil
	if blind {
		d.log.Warn("cannot read the previous nftables table; replacing it blind", zap.Error(err))
		old = newObjects()
	}
	diff := diffObjects(old, d.want, nil, nil, nil)
	d.logDiff(diff)
	tx := newTx(c, d.flowObjs())
	if old.table || blind {
		tx.replaceTable(d.want)
	} else {
		tx.apply(diff) // nothing to replace: the diff from empty is the whole table
	}
	if err := tx.flush(); err != nil {
		d.dropTxConn()
		return fmt.Errorf("nftables: program table %s: %w", TableName, err)
	}
	if old.table {
		d.log.Info("nftables table replaced", zap.String("table", "inet "+TableName), zap.Int("changed", diff.count()), zap.Int("sets", len(d.want.sets)), zap.Int("chains", len(d.want.chains)))
	} else {
		d.log.Info("nftables table created", zap.String("table", "inet "+TableName), zap.Int("sets", len(d.want.sets)), zap.Int("chains", len(d.want.chains)))
	}
	d.committed(nil, nil)
	d.started = true
	return nil
}

// txConn returns the connection the transactions use, opened at the first
// and kept open (callers hold mu). Closing an nf_tables netlink socket
// waits for the deferred destruction of the objects the last transaction
// removed (an RCU grace period: 5-15 ms on a busy node), which every
// batch paid while each transaction had a connection of its own. After an
// error the connection is dropped (dropTxConn): unread acknowledgements
// must not answer the next transaction.
func (d *Dataplane) txConn() (conn, error) {
	if d.txc == nil {
		c, closeConn, err := d.open()
		if err != nil {
			return nil, err
		}
		d.txc, d.txClose = c, closeConn
	}
	return d.txc, nil
}

// dropTxConn closes the kept connection; the next transaction opens one.
func (d *Dataplane) dropTxConn() {
	if d.txClose != nil {
		d.txClose()
	}
	d.txc, d.txClose = nil, nil
}

// committed records that the kernel now holds want for the named objects
// (nil: all).
func (d *Dataplane) committed(sets, chains map[string]struct{}) {
	if d.have == nil || sets == nil {
		d.have = newObjects()
		for n, s := range d.want.sets {
			d.have.sets[n] = s
		}
		for n, c := range d.want.chains {
			d.have.chains[n] = c
		}
	} else {
		for n := range sets {
			if s := d.want.sets[n]; s != nil {
				d.have.sets[n] = s
			} else {
				delete(d.have.sets, n)
			}
		}
		for n := range chains {
			if c := d.want.chains[n]; c != nil {
				d.have.chains[n] = c
			} else {
				delete(d.have.chains, n)
			}
		}
	}
	d.have.table = true
	d.dirtySets, d.dirtyChains = map[string]struct{}{}, map[string]struct{}{}
	d.pending = map[string]*delta{}
}

// sync writes the difference between have and want: the dirty objects, or
// everything after a read-back (readBack). It returns the number of objects
// it changed.
func (d *Dataplane) sync(ctx context.Context, readBack bool) (int, error) {
	return d.syncFrom(ctx, readBack, nil)
}

// syncFrom is sync, with the read-back (when one is due) taken from
// reading unless it is nil.
func (d *Dataplane) syncFrom(ctx context.Context, readBack bool, reading *objects) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c, err := d.txConn()
	if err != nil {
		return 0, err
	}
	all := readBack || d.have == nil
	if all {
		h := reading
		if h == nil {
			if h, err = readKernel(c); err != nil {
				d.dropTxConn()
				return 0, fmt.Errorf("nftables: read table %s: %w", TableName, err)
			}
		}
		d.have = h
	}
	var diff *objDiff
	if all {
		diff = diffObjects(d.have, d.want, nil, nil, nil)
	} else {
		diff = diffObjects(d.have, d.want, d.dirtySets, d.dirtyChains, d.pending)
	}
	n := diff.count()
	if n == 0 {
		if all {
			d.committed(nil, nil) // share want's objects again: later changes are deltas
		}
		d.dirtySets, d.dirtyChains = map[string]struct{}{}, map[string]struct{}{}
		d.pending = map[string]*delta{}
		return 0, nil
	}
	d.logDiff(diff)
	tx := newTx(c, d.flowObjs())
	if diff.recreate {
		// An object of ours has a shape we cannot change in place (a set's
		// type, a base chain's hook): replace the whole table atomically.
		tx.replaceTable(d.want)
	} else {
		tx.apply(diff)
	}
	if err := tx.flush(); err != nil {
		// Atomic: nothing changed, unless only the acknowledgements were
		// lost. Either way, read the kernel back before the next change.
		d.have = nil
		d.pending = map[string]*delta{}
		d.dropTxConn()
		return 0, fmt.Errorf("nftables: transaction (%d objects): %w", n, err)
	}
	if all || diff.recreate {
		d.committed(nil, nil)
	} else {
		d.committed(diff.setNames(), diff.chainNames())
	}
	return n, nil
}

// ---- Reconcile, Cleanup, Objects ----

// Reconcile implements dataplane.Dataplane: it reads the table back and
// repairs every difference from the last applied state in one transaction.
func (d *Dataplane) Reconcile(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started {
		return 0, nil // nothing applied yet: the first Apply replaces the table
	}
	n, err := d.sync(ctx, true)
	if n > 0 && err == nil {
		d.log.Warn("nftables drift repaired", zap.Int("objects", n))
	}
	return n, err
}

// ReadKernel implements dataplane.KernelReader: the whole table, read
// over a connection of its own without touching the dataplane's state.
func (d *Dataplane) ReadKernel(ctx context.Context) (dataplane.KernelReading, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, done, err := d.open()
	if err != nil {
		return nil, err
	}
	defer done()
	o, err := readKernel(c)
	if err != nil {
		return nil, fmt.Errorf("nftables: read table %s: %w", TableName, err)
	}
	return o, nil
}

// ReconcileRead implements dataplane.KernelReader.
func (d *Dataplane) ReconcileRead(ctx context.Context, r dataplane.KernelReading) (int, error) {
	o, ok := r.(*objects)
	if !ok {
		return 0, fmt.Errorf("nftables: reconcile from a reading of type %T", r)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started {
		return 0, nil
	}
	n, err := d.syncFrom(ctx, true, o)
	if n > 0 && err == nil {
		d.log.Warn("nftables drift repaired", zap.Int("objects", n))
	}
	return n, err
}

// Cleanup implements dataplane.Dataplane: it deletes the table `inet
// azure-npm` (and with it every chain, set and rule NPM created) and
// touches nothing else. A kernel without nftables has nothing to clean.
func (d *Dataplane) Cleanup(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.reset() // closes the connection too
	c, err := d.txConn()
	if err != nil {
		return err
	}
	exists, err := tableExists(c)
	if err != nil {
		if isUnsupported(err) {
			return nil
		}
		return fmt.Errorf("nftables: list tables: %w", err)
	}
	if !exists {
		return nil
	}
	tx := newTx(c, d.flowObjs())
	tx.deleteTable()
	if err := tx.flush(); err != nil {
		return fmt.Errorf("nftables: delete table %s: %w", TableName, err)
	}
	d.log.Info("nftables table deleted", zap.String("table", "inet "+TableName))
	return nil
}

// RuleCount implements dataplane.Dataplane: the rules of the table as
// last written or read back.
func (d *Dataplane) RuleCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	if d.have != nil {
		for _, c := range d.have.chains {
			n += len(c.rules)
		}
	}
	return n
}

// Objects implements dataplane.Dataplane.
func (d *Dataplane) Objects(key string) []dataplane.Object {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.model.Last.Policies[key]
	if p == nil {
		return nil
	}
	var out []dataplane.Object
	seen := map[string]bool{}
	add := func(o dataplane.Object) {
		if !seen[o.Kind+o.Name] {
			seen[o.Kind+o.Name] = true
			out = append(out, o)
		}
	}
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		if !p.Isolates(dir) {
			continue
		}
		if p.Tier != policy.TierAdmin { // Admin rules live in the group chains (tiers.go)
			add(dataplane.Object{Kind: "chain", Name: PolicyChain(dir, key), Comment: fmt.Sprintf("%s rules of %s (table inet %s)", dir, key, TableName)})
		}
		for _, g := range d.model.Groups[dir] {
			for _, k := range g.Policies {
				if k != key {
					continue
				}
				add(dataplane.Object{Kind: "chain", Name: GroupChain(g), Comment: "dispatch group " + strings.Join(g.Policies, ",")})
				for _, f := range policy.Families {
					add(dataplane.Object{Kind: "map", Name: DispatchMap(dir, f), Family: f, Comment: "local pods isolated for " + dir.String()})
				}
			}
		}
		ids := dataplane.RuleSetIDs(nil, p.Rules(dir))
		sort.Strings(ids)
		for _, id := range ids {
			s := d.model.Last.Sets[id]
			if s == nil {
				continue
			}
			for _, f := range setFamilies(s) {
				add(dataplane.Object{Kind: "set", Name: SetName(f, id), Family: f, Comment: s.Comment})
			}
		}
	}
	return out
}

// ---- logging ----

// isolatedBy names the policies behind a dispatch map element.
func (d *Dataplane) isolatedBy(e kelem) zap.Field {
	if e.chain == "" {
		return zap.Skip()
	}
	if pols, ok := d.grpPols[e.chain]; ok {
		return zap.String("policies", pols)
	}
	return zap.String("policies", d.grpGone[e.chain])
}

func (d *Dataplane) logDiff(diff *objDiff) {
	if !d.log.Core().Enabled(zap.InfoLevel) {
		return
	}
	for _, sd := range diff.sets {
		s := sd.want
		if s == nil {
			s = sd.have
		}
		kind := "set"
		if s.isMap {
			kind = "map"
		}
		if sd.create {
			d.log.Info("nftables "+kind+" created", zap.String(kind, s.name), zap.String("selector", s.comment))
		}
		for _, e := range sd.rm {
			if e.end {
				continue // the end of an interval: the start's line names the prefix
			}
			d.log.Info("nftables "+kind+" member removed", zap.String(kind, s.name), zap.Stringer("member", e), zap.String("selector", s.comment), d.isolatedBy(e))
		}
		for _, e := range sd.add {
			if e.end {
				continue
			}
			d.log.Info("nftables "+kind+" member added", zap.String(kind, s.name), zap.Stringer("member", e), zap.String("selector", s.comment), d.isolatedBy(e))
		}
		if sd.del {
			d.log.Info("nftables "+kind+" deleted", zap.String(kind, s.name), zap.String("selector", s.comment))
		}
	}
	for _, cd := range diff.chains {
		c := cd.want
		if c == nil {
			c = cd.have
		}
		if cd.create {
			d.log.Info("nftables chain created", zap.String("chain", c.name), zap.String("policy", c.policy))
		}
		var old, cur []krule
		if cd.have != nil {
			old = cd.have.rules
		}
		if cd.want != nil {
			cur = cd.want.rules
		}
		seen := map[string]int{}
		for _, r := range old {
			seen[r.fp]++
		}
		for _, r := range cur {
			if seen[r.fp] > 0 {
				seen[r.fp]--
				continue
			}
			d.log.Info("nftables rule added", zap.String("chain", c.name), zap.String("policy", c.policy), zap.String("rule", r.text), zap.String("comment", r.comment))
		}
		for _, r := range old {
			if seen[r.fp] > 0 {
				seen[r.fp]--
				d.log.Info("nftables rule removed", zap.String("chain", c.name), zap.String("policy", c.policy), zap.String("rule", r.text), zap.String("comment", r.comment))
			}
		}
		if cd.del {
			d.log.Info("nftables chain deleted", zap.String("chain", c.name), zap.String("policy", c.policy))
		}
	}
}

// renderGroupChains renders every group chain anew (the policies or the
// list of groups changed) and marks them dirty.
func (d *Dataplane) renderGroupChains() {
	for _, kc := range d.grpObjs {
		delete(d.want.chains, kc.name)
		d.dirtyChains[kc.name] = struct{}{}
	}
	prev := d.grpPols
	d.grpPols = map[string]string{}
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		for _, g := range d.model.Groups[dir] {
			d.grpPols[GroupChain(g)] = strings.Join(g.Policies, ",")
		}
	}
	d.grpGone = map[string]string{}
	for c, pols := range prev {
		if _, ok := d.grpPols[c]; !ok {
			d.grpGone[c] = pols
		}
	}
	chains, _ := renderGroups(d.model.Groups, d.model.Last.Policies, d.model.Policies, d.logDeny(), true)
	d.grpObjs = chains
	for _, kc := range chains {
		d.want.chains[kc.name] = kc
		d.dirtyChains[kc.name] = struct{}{}
	}
}

// groupShape is what the group chains are rendered from besides the
// policies: per direction, each group's ID and policies.
func groupShape(groups map[policy.Direction][]*policy.Group) string {
	var b strings.Builder
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		fmt.Fprintf(&b, "%d:", dir)
		for _, g := range groups[dir] {
			b.WriteString(g.ID + "=" + strings.Join(g.Policies, ",") + ";")
		}
	}
	return b.String()
}
