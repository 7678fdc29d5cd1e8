package hnsacl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
)

// Options configure the dataplane.
type Options struct {
	HNS    HNS
	Logger *zap.Logger
	// MaxACLsPerCall bounds the ACLs (and SetPolicies) of one HNS call;
	// default 100 (config.MaxHNSACLsPerCall).
	MaxACLsPerCall int
	// HostIPs are the node's own addresses: ingress from them (kubelet
	// health probes) is allowed on every ingress-isolated endpoint. Empty:
	// no such exception.
	HostIPs []netip.Addr
	// SCTP: this HNS enforces protocol 132 with ports. When false (the
	// default: Windows does not support SCTP), ports of protocol SCTP are
	// not allowed (fail closed, logged at error).
	SCTP bool
}

// hnsEp is an HNS endpoint as the dataplane believes it is programmed.
type hnsEp struct {
	id   string
	ips  []netip.Addr
	acls map[string]*aclInfo // our ACLs on it, by ID
}

// Dataplane programs a policy.State as HNS SetPolicies and endpoint ACLs.
type Dataplane struct {
	hns  HNS
	log  *zap.Logger
	max  int
	opts Options

	loaded bool
	full   bool // the next Apply diffs everything (after an error)

	eps  map[string]*hnsEp     // HNS endpoint ID -> programmed
	byIP map[netip.Addr]string // endpoint IP -> HNS endpoint ID
	sets map[string]SetPolicy  // programmed SetPolicies

	r        *renderer
	renders  map[string]*epRender // model endpoint key -> desired ACLs
	assigned map[string]string    // model endpoint key -> HNS endpoint ID
	want     map[string]*setEntry // desired SetPolicies
	setMeta  map[string]setMeta   // SetPolicy ID -> what it is, for logs
}

var _ dataplane.Dataplane = (*Dataplane)(nil)

// New returns the dataplane. It does not call HNS; the first Apply reads
// the endpoints and SetPolicies a previous run left and replaces them by
// the desired state (diffed, not flushed).
func New(o Options) (*Dataplane, error) {
	if o.HNS == nil {
		return nil, errors.New("hnsacl: no HNS")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.MaxACLsPerCall <= 0 {
		o.MaxACLsPerCall = 100
	}
	d := &Dataplane{hns: o.HNS, log: o.Logger, max: o.MaxACLsPerCall, opts: o}
	d.reset()
	return d, nil
}

func (d *Dataplane) reset() {
	d.loaded = false
	d.eps = map[string]*hnsEp{}
	d.byIP = map[netip.Addr]string{}
	d.sets = map[string]SetPolicy{}
	d.r = &renderer{sctp: d.opts.SCTP, hostIPs: d.opts.HostIPs, cache: map[string]*setEntry{}}
	d.renders = map[string]*epRender{}
	d.assigned = map[string]string{}
	d.want = map[string]*setEntry{}
	d.setMeta = map[string]setMeta{}
}

// readBack replaces the programmed view by what HNS holds, keeping the
// attribution of ACLs it already knew.
func (d *Dataplane) readBack(ctx context.Context) error {
	eps, err := d.hns.ListEndpoints(ctx)
	if err != nil {
		return fmt.Errorf("hns list endpoints: %w", err)
	}
	sets, err := d.hns.SetPolicies(ctx)
	if err != nil {
		return fmt.Errorf("hns set policies: %w", err)
	}
	d.setEndpoints(eps)
	d.sets = map[string]SetPolicy{}
	for _, s := range sets {
		d.sets[s.ID] = s
	}
	return nil
}

func (d *Dataplane) setEndpoints(eps []Endpoint) {
	old := d.eps
	d.eps = map[string]*hnsEp{}
	d.byIP = map[netip.Addr]string{}
	for _, e := range eps {
		he := &hnsEp{id: e.ID, ips: e.IPs, acls: map[string]*aclInfo{}}
		for _, a := range e.ACLs {
			if !strings.HasPrefix(a.ID, Prefix) {
				continue
			}
			if o := old[e.ID]; o != nil && o.acls[a.ID] != nil && o.acls[a.ID].ACL == a {
				he.acls[a.ID] = o.acls[a.ID]
			} else {
				he.acls[a.ID] = &aclInfo{ACL: a, Comment: "found in HNS"}
			}
		}
		d.eps[e.ID] = he
		for _, ip := range e.IPs {
			d.byIP[ip.Unmap()] = e.ID
		}
	}
}

// refreshEndpoints lists endpoints again (new pods): known endpoints keep
// the programmed view (no full re-diff), new ones are taken as listed, gone
// ones are forgotten. It returns the new endpoint IDs.
func (d *Dataplane) refreshEndpoints(ctx context.Context) (map[string]bool, error) {
	eps, err := d.hns.ListEndpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("hns list endpoints: %w", err)
	}
	old := d.eps
	d.setEndpoints(eps)
	fresh := map[string]bool{}
	for id, e := range d.eps {
		if o := old[id]; o != nil {
			o.ips = e.ips
			d.eps[id] = o
		} else {
			fresh[id] = true
		}
	}
	for k, h := range d.assigned {
		if d.eps[h] == nil {
			delete(d.assigned, k)
		}
	}
	return fresh, nil
}

// Apply implements dataplane.Dataplane.
func (d *Dataplane) Apply(ctx context.Context, desired *policy.State, changes *policy.Changes) error {
	listed := false
	if !d.loaded {
		if err := d.readBack(ctx); err != nil {
			return err
		}
		d.loaded, listed = true, true
		changes = nil
	}
	if d.full {
		changes = nil
	}
	d.r.st = desired
	defer func() { d.r.st = nil }()
	d.r.failures = map[failure]map[string]struct{}{}
	d.r.named = nil

	dirty := d.dirtyEndpoints(desired, changes)
	if changes == nil {
		d.r.cache = map[string]*setEntry{}
	} else if len(changes.Sets) > 0 {
		for id, e := range d.r.cache {
			for _, dep := range e.desc.deps() {
				if _, ok := changes.Sets[dep]; ok {
					delete(d.r.cache, id)
					break
				}
			}
		}
	}
	for k := range dirty {
		// Remote endpoints (pods of other nodes backing NodePort and
		// LoadBalancer services) have no HNS endpoint here: HNS ACLs sit
		// on the local endpoints only, so the receiving-node check of the
		// Linux dataplanes has no Windows counterpart.
		if e := desired.Endpoints[k]; e != nil && !e.Remote {
			d.renders[k] = d.r.render(e)
		} else {
			delete(d.renders, k)
		}
	}
	d.logFailures(desired)
	d.computeSets()

	hnsDirty, err := d.assign(ctx, dirty, changes == nil, listed)
	if err == nil {
		_, err = d.program(ctx, hnsDirty)
	}
	d.full = err != nil
	return err
}

// dirtyEndpoints are the model endpoints whose ACLs may have changed.
func (d *Dataplane) dirtyEndpoints(st *policy.State, changes *policy.Changes) map[string]struct{} {
	dirty := map[string]struct{}{}
	if changes == nil {
		for k := range st.Endpoints {
			dirty[k] = struct{}{}
		}
		for k := range d.renders {
			dirty[k] = struct{}{}
		}
		return dirty
	}
	for k := range changes.Endpoints {
		dirty[k] = struct{}{}
	}
	for k := range d.renders {
		if st.Endpoints[k] == nil { // gone, whatever changes says
			dirty[k] = struct{}{}
		}
	}
	polDirty := map[string]bool{}
	for k := range changes.Policies {
		polDirty[k] = true
	}
	if len(changes.Sets) > 0 {
		for k, p := range st.Policies {
			if !polDirty[k] && policyUses(p, changes.Sets) {
				polDirty[k] = true
			}
		}
	}
	if len(polDirty) == 0 {
		return dirty
	}
	for k, e := range st.Endpoints {
		for _, l := range [][]string{e.Ingress, e.Egress} {
			for _, p := range l {
				if polDirty[p] {
					dirty[k] = struct{}{}
				}
			}
		}
	}
	return dirty
}

func policyUses(p *policy.Policy, sets map[string]struct{}) bool {
	for _, rs := range [][]policy.Rule{p.IngressRules, p.EgressRules} {
		for _, r := range rs {
			for _, pe := range r.Peers {
				if _, ok := sets[pe.SetID]; ok {
					return true
				}
			}
			for _, pt := range r.Ports {
				if _, ok := sets[pt.SetID]; ok && pt.SetID != "" {
					return true
				}
			}
		}
	}
	return false
}

func (d *Dataplane) logFailures(st *policy.State) {
	var keys []failure
	for k := range d.r.failures {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].policy != keys[j].policy {
			return keys[i].policy < keys[j].policy
		}
		return keys[i].reason < keys[j].reason
	})
	for _, k := range keys {
		var eps []string
		for e := range d.r.failures[k] {
			eps = append(eps, e)
		}
		sort.Strings(eps)
		sel := ""
		if p := st.Policies[k.policy]; p != nil {
			sel = p.Selector
		}
		d.log.Error("hns cannot express a policy rule: failing closed for the selected pods",
			zap.String("policy", k.policy), zap.String("selector", sel), zap.String("reason", k.reason), zap.Strings("endpoints", eps))
	}
}

// computeSets derives the desired SetPolicies from every rendered endpoint.
func (d *Dataplane) computeSets() {
	want := map[string]*setEntry{}
	pols := map[string]map[string]struct{}{}
	for _, r := range d.renders {
		for id, sd := range r.sets {
			want[id] = d.r.set(sd)
		}
		for _, a := range r.acls {
			for _, tok := range strings.Split(a.RemoteAddresses, ",") {
				if _, ok := r.sets[tok]; !ok {
					continue
				}
				ids := []string{tok}
				if e := want[tok]; e != nil {
					for _, c := range e.children {
						ids = append(ids, c.id())
					}
				}
				for _, id := range ids {
					if pols[id] == nil {
						pols[id] = map[string]struct{}{}
					}
					for _, p := range a.Policies {
						pols[id][p] = struct{}{}
					}
				}
			}
		}
	}
	for id, e := range want {
		if e.sp.Values == "" {
			delete(want, id)
		}
	}
	d.want = want
	// what each set is for, for log lines; a set leaving the desired state
	// keeps its last description until it is removed from HNS
	for id := range d.setMeta {
		if want[id] == nil && d.sets[id].ID == "" {
			delete(d.setMeta, id)
		}
	}
	for id, e := range want {
		m := setMeta{comment: e.comment}
		for p := range pols[id] {
			m.policies = append(m.policies, p)
		}
		sort.Strings(m.policies)
		d.setMeta[id] = m
	}
	// keep the cache to what is referenced
	for id := range d.r.cache {
		if want[id] == nil {
			delete(d.r.cache, id)
		}
	}
}

func (d *Dataplane) resolve(r *epRender) string {
	for _, ip := range r.ips {
		if id, ok := d.byIP[ip.Unmap()]; ok {
			return id
		}
	}
	return ""
}

// assign maps the dirty model endpoints to HNS endpoints (listing the
// endpoints again when one is unknown) and returns the HNS endpoints to diff.
// listed says the endpoint list was just read (no need to list again).
func (d *Dataplane) assign(ctx context.Context, dirty map[string]struct{}, all, listed bool) (map[string]struct{}, error) {
	if all {
		for k := range d.renders {
			dirty[k] = struct{}{}
		}
	}
	refreshed := listed
	var fresh map[string]bool
	out := map[string]struct{}{}
	keys := make([]string, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r := d.renders[k]
		id := ""
		if r != nil {
			id = d.resolve(r)
			if id == "" && !refreshed {
				f, err := d.refreshEndpoints(ctx)
				if err != nil {
					return nil, err
				}
				refreshed, fresh = true, f
				id = d.resolve(r)
			}
			if id == "" {
				d.log.Warn("hns endpoint not found for pod yet; retried on the next apply or reconcile", zap.String("pod", k), zap.Any("ips", r.ips))
			}
		}
		if old := d.assigned[k]; old != "" {
			out[old] = struct{}{}
		}
		if id != "" {
			d.assigned[k] = id
			out[id] = struct{}{}
		} else {
			delete(d.assigned, k)
		}
	}
	if fresh != nil {
		// endpoints that appeared since: pods not dirty now but
		// unresolved before get their ACLs too
		for k, r := range d.renders {
			if d.assigned[k] == "" {
				if id := d.resolve(r); id != "" {
					d.assigned[k] = id
					out[id] = struct{}{}
				}
			}
		}
		for id := range fresh {
			out[id] = struct{}{}
		}
	}
	if all {
		for id := range d.eps {
			out[id] = struct{}{}
		}
	}
	return out, nil
}

// owners maps HNS endpoint IDs to the model endpoints resolved to them.
func (d *Dataplane) owners() map[string][]string {
	out := map[string][]string{}
	for k, h := range d.assigned {
		if d.renders[k] != nil {
			out[h] = append(out[h], k)
		}
	}
	return out
}

// desiredACLs returns what HNS endpoint id must hold.
func (d *Dataplane) desiredACLs(id string, owners []string) (map[string]*aclInfo, string) {
	if len(owners) == 0 {
		return nil, ""
	}
	sort.Strings(owners)
	if len(owners) > 1 {
		d.log.Warn("several pods resolve to one hns endpoint; programming the first", zap.String("endpoint", id), zap.Strings("pods", owners))
	}
	return d.renders[owners[0]].acls, owners[0]
}

// program makes HNS equal to the desired state for the given endpoints
// and all SetPolicies; it returns the number of objects changed.
//
// HNS has no transaction, so the change is made in two monotone phases.
// Tighten: new SetPolicies in (nothing references them yet); stale Allow
// ACLs out of directions that stay isolated; SetPolicies losing members
// shrunk to the members they keep (one about to disappear but still inside
// a nested set is emptied); for directions becoming isolated, their Allow
// ACLs and then their Block. Loosen: Blocks of directions becoming open
// out; SetPolicies grown to their final members (nested ones rewritten);
// new Allow ACLs in; the Allows left in open directions out; SetPolicies
// no longer referenced out.
//
// During tighten every endpoint only loses allows (stays within the old
// state); at its end each endpoint allows no more than the old state nor
// the new one; during loosen it only gains allows up to the new state. So
// after every call, whatever the batch, a connection is allowed only if
// the old or the new state allows it, at each endpoint and end to end.
// The price: a new connection both states allow through different ACLs or
// sets (a port edited in a rule, a pod moving between selectors) may be
// refused for the duration of the update; established connections are not
// re-evaluated.
func (d *Dataplane) program(ctx context.Context, hnsDirty map[string]struct{}) (int, error) {
	changedSets := map[string]bool{}
	changed := 0

	// per endpoint ACL diffs
	ids := make([]string, 0, len(hnsDirty))
	for id := range hnsDirty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	owners := d.owners()
	type epDiff struct {
		ep             *hnsEp
		owner          string
		want           map[string]*aclInfo
		add, del       []*aclInfo
		isoOld, isoNew map[Direction]bool // a Block is programmed / wanted
	}
	var diffs []*epDiff
	for _, id := range ids {
		ep := d.eps[id]
		if ep == nil {
			continue
		}
		x := &epDiff{ep: ep}
		x.want, x.owner = d.desiredACLs(id, owners[id])
		for _, aid := range sortedKeys(x.want) {
			if ep.acls[aid] == nil {
				x.add = append(x.add, x.want[aid])
			}
		}
		for _, aid := range sortedKeys(ep.acls) {
			if x.want[aid] == nil {
				x.del = append(x.del, ep.acls[aid])
			}
		}
		if x.owner == "" {
			x.owner = "(no selected pod)"
		}
		// one call makes a direction isolated (its Allows, then its Block)
		// or open (its Block, then its Allows); split by the batch limit,
		// the order keeps each intermediate state safe
		sort.SliceStable(x.add, func(i, j int) bool { return x.add[i].Action == Allow && x.add[j].Action != Allow })
		sort.SliceStable(x.del, func(i, j int) bool { return x.del[i].Action == Block && x.del[j].Action != Block })
		x.isoOld, x.isoNew = map[Direction]bool{}, map[Direction]bool{}
		for _, a := range ep.acls {
			if a.Action == Block {
				x.isoOld[a.Direction] = true
			}
		}
		for _, a := range x.want {
			if a.Action == Block {
				x.isoNew[a.Direction] = true
			}
		}
		diffs = append(diffs, x)
	}
	// acls runs one ACL operation on every endpoint for the ACLs sel picks.
	acls := func(op Op, sel func(x *epDiff, a *aclInfo) bool) error {
		for _, x := range diffs {
			if d.eps[x.ep.id] == nil {
				continue // gone
			}
			src := x.add
			if op == OpRemove {
				src = x.del
			}
			var l []*aclInfo
			for _, c := range src {
				done := x.ep.acls[c.ID] != nil // already added
				if op == OpRemove {
					done = !done // already removed
				}
				if !done && sel(x, c) {
					l = append(l, c)
				}
			}
			n, err := d.modifyACLs(ctx, x.ep, x.owner, op, l)
			changed += n
			if errors.Is(err, ErrNotFound) {
				d.log.Info("hns endpoint gone", zap.String("endpoint", x.ep.id), zap.String("pod", x.owner))
				d.dropEndpoint(x.ep.id)
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	fail := func(err error) (int, error) { return changed + len(changedSets), err }
	setOps := func(op Op, phase string) error {
		for _, typ := range []SetPolicyType{IPSet, NestedIPSet} {
			var l []SetPolicy
			for _, id := range sortedKeys(d.want) {
				e := d.want[id]
				cur, ok := d.sets[id]
				if e.sp.Type == typ && ((op == OpAdd && !ok) || (op == OpUpdate && ok && cur.Values != e.sp.Values)) {
					l = append(l, e.sp)
				}
			}
			if err := d.modifySets(ctx, op, l, phase); err != nil {
				return err
			}
			for _, sp := range l {
				changedSets[sp.ID] = true
			}
		}
		return nil
	}
	stays := func(x *epDiff, a *aclInfo) bool { return x.isoOld[a.Direction] && x.isoNew[a.Direction] }
	becomesIsolated := func(x *epDiff, a *aclInfo) bool { return !x.isoOld[a.Direction] && x.isoNew[a.Direction] }
	becomesOpen := func(x *epDiff, a *aclInfo) bool { return x.isoOld[a.Direction] && !x.isoNew[a.Direction] }
	allow := func(f func(*epDiff, *aclInfo) bool) func(*epDiff, *aclInfo) bool {
		return func(x *epDiff, a *aclInfo) bool { return a.Action == Allow && f(x, a) }
	}
	anyACL := func(*epDiff, *aclInfo) bool { return true }

	// tighten
	if err := setOps(OpAdd, "tighten"); err != nil {
		return fail(err)
	}
	if err := acls(OpRemove, allow(stays)); err != nil {
		return fail(err)
	}
	if err := d.shrinkSets(ctx, changedSets); err != nil {
		return fail(err)
	}
	if err := acls(OpAdd, becomesIsolated); err != nil {
		return fail(err)
	}
	// loosen
	if err := acls(OpRemove, becomesOpen); err != nil {
		return fail(err)
	}
	if err := setOps(OpUpdate, "loosen"); err != nil {
		return fail(err)
	}
	if err := acls(OpAdd, allow(stays)); err != nil {
		return fail(err)
	}
	// anything left (Allows of directions that were open and stay open:
	// found in HNS, not ours to keep)
	if err := acls(OpRemove, anyACL); err != nil {
		return fail(err)
	}
	for _, x := range diffs {
		if d.eps[x.ep.id] != nil {
			for aid, a := range x.want { // attribution follows the latest render
				x.ep.acls[aid] = a
			}
		}
	}
	// SetPolicies no longer referenced: NESTEDIPSETs first. A set some
	// programmed ACL still references (an endpoint not diffed) stays.
	var inUse map[string]bool
	for _, typ := range []SetPolicyType{NestedIPSet, IPSet} {
		var del []SetPolicy
		for _, id := range sortedKeys(d.sets) {
			s := d.sets[id]
			if s.Type == typ && d.want[id] == nil {
				if inUse == nil {
					inUse = d.setsInUse()
				}
				if inUse[id] {
					continue
				}
				del = append(del, s)
			}
		}
		if err := d.modifySets(ctx, OpRemove, del, ""); err != nil {
			return fail(err)
		}
		for _, sp := range del {
			changedSets[sp.ID] = true
		}
	}
	return changed + len(changedSets), nil
}

// placeholder is the member of a SetPolicy that must match nothing while
// it cannot be empty: the unspecified address of its family, never the
// address of a connection's peer.
func placeholder(id string) string {
	if strings.HasSuffix(id, "-6") {
		return "::"
	}
	return "0.0.0.0"
}

// shrinkSets is the tighten step for SetPolicies: every programmed IPSET
// keeps only the members it keeps in the desired state; an IPSET leaving
// the desired state that a nested set still contains is emptied.
func (d *Dataplane) shrinkSets(ctx context.Context, changed map[string]bool) error {
	nestedChildren := map[string]bool{}
	for _, s := range d.sets {
		if s.Type == NestedIPSet {
			for _, c := range strings.Split(s.Values, ",") {
				nestedChildren[c] = true
			}
		}
	}
	var l []SetPolicy
	for _, id := range sortedKeys(d.sets) {
		cur := d.sets[id]
		if cur.Type != IPSet {
			continue
		}
		target := ""
		if e := d.want[id]; e != nil {
			keep := map[string]bool{}
			for _, v := range strings.Split(e.sp.Values, ",") {
				keep[v] = true
			}
			var vs []string
			for _, v := range strings.Split(cur.Values, ",") {
				if keep[v] {
					vs = append(vs, v)
				}
			}
			target = strings.Join(vs, ",")
		} else if !nestedChildren[id] {
			continue // removed at the end; no wanted ACL references it
		}
		if target == "" {
			target = placeholder(id)
		}
		if target != cur.Values {
			sp := cur
			sp.Values = target
			l = append(l, sp)
		}
	}
	if err := d.modifySets(ctx, OpUpdate, l, "tighten"); err != nil {
		return err
	}
	for _, sp := range l {
		changed[sp.ID] = true
	}
	return nil
}

// modifySets runs one set operation in batches.
func (d *Dataplane) modifySets(ctx context.Context, op Op, sets []SetPolicy, phase string) error {
	for len(sets) > 0 {
		n := min(len(sets), d.max)
		batch := sets[:n]
		sets = sets[n:]
		if err := d.hns.ModifySetPolicies(ctx, op, batch); err != nil {
			return fmt.Errorf("hns %s %d set policies: %w", strings.ToLower(string(op)), len(batch), err)
		}
		for _, s := range batch {
			old := d.sets[s.ID]
			if op == OpRemove {
				delete(d.sets, s.ID)
			} else {
				d.sets[s.ID] = s
			}
			d.logSet(op, s, old, phase)
		}
	}
	return nil
}

// setsInUse are the SetPolicies referenced by programmed ACLs or wanted nested sets.
func (d *Dataplane) setsInUse() map[string]bool {
	use := map[string]bool{}
	for _, ep := range d.eps {
		for _, a := range ep.acls {
			for _, f := range []string{a.RemoteAddresses, a.LocalAddresses} {
				for _, tok := range strings.Split(f, ",") {
					if _, ok := d.sets[tok]; ok {
						use[tok] = true
					}
				}
			}
		}
	}
	for id := range use {
		if s := d.sets[id]; s.Type == NestedIPSet {
			for _, c := range strings.Split(s.Values, ",") {
				use[c] = true
			}
		}
	}
	return use
}

func (d *Dataplane) dropEndpoint(id string) {
	if ep := d.eps[id]; ep != nil {
		for _, ip := range ep.ips {
			if d.byIP[ip.Unmap()] == id {
				delete(d.byIP, ip.Unmap())
			}
		}
	}
	delete(d.eps, id)
	for k, h := range d.assigned {
		if h == id {
			delete(d.assigned, k)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const maxLoggedMembers = 32

func listDiff(a, b string) (added, removed []string) {
	as, bs := map[string]bool{}, map[string]bool{}
	for _, x := range strings.Split(a, ",") {
		if x != "" {
			as[x] = true
		}
	}
	for _, x := range strings.Split(b, ",") {
		if x != "" {
			bs[x] = true
			if !as[x] {
				added = append(added, x)
			}
		}
	}
	for x := range as {
		if !bs[x] {
			removed = append(removed, x)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

func trunc(xs []string) []string {
	if len(xs) > maxLoggedMembers {
		return append(xs[:maxLoggedMembers:maxLoggedMembers], fmt.Sprintf("... %d more", len(xs)-maxLoggedMembers))
	}
	return xs
}

// setMeta describes a SetPolicy in log lines.
type setMeta struct {
	comment  string
	policies []string
}

func (d *Dataplane) logSet(op Op, s, old SetPolicy, phase string) {
	m := d.setMeta[s.ID]
	fields := []zap.Field{zap.String("set", s.ID), zap.String("type", string(s.Type)), zap.String("selector", m.comment), zap.Strings("policies", m.policies)}
	switch op {
	case OpAdd:
		fields = append(fields, zap.Strings("members", trunc(strings.Split(s.Values, ","))))
	case OpUpdate:
		add, rem := listDiff(old.Values, s.Values)
		fields = append(fields, zap.Strings("added", trunc(add)), zap.Strings("removed", trunc(rem)), zap.String("phase", phase))
	}
	d.log.Info("hns set policy "+strings.ToLower(string(op)), fields...)
}

func (d *Dataplane) modifyACLs(ctx context.Context, ep *hnsEp, owner string, op Op, acls []*aclInfo) (int, error) {
	done := 0
	for len(acls) > 0 {
		n := min(len(acls), d.max)
		batch := acls[:n]
		acls = acls[n:]
		raw := make([]ACL, len(batch))
		for i, a := range batch {
			raw[i] = a.ACL
		}
		if err := d.hns.ModifyACLs(ctx, ep.id, op, raw); err != nil {
			return done, fmt.Errorf("hns %s %d acls on endpoint %s (%s): %w", strings.ToLower(string(op)), len(batch), ep.id, owner, err)
		}
		for _, a := range batch {
			if op == OpRemove {
				delete(ep.acls, a.ID)
			} else {
				ep.acls[a.ID] = a
			}
			d.log.Info("hns acl "+strings.ToLower(string(op)), zap.String("endpoint", ep.id), zap.String("pod", owner),
				zap.Strings("policies", a.Policies), zap.String("selector", a.Selector), zap.String("rule", a.Comment), zap.String("acl", a.ACL.String()))
			done++
		}
	}
	return done, nil
}

// Reconcile implements dataplane.Dataplane: it reads HNS back and repairs
// every difference from the last applied state (missing or extra ACLs,
// deleted or altered SetPolicies, endpoints that appeared since).
func (d *Dataplane) Reconcile(ctx context.Context) (int, error) {
	if !d.loaded {
		return 0, nil
	}
	if err := d.readBack(ctx); err != nil {
		return 0, err
	}
	all := map[string]struct{}{}
	hnsDirty, err := d.assign(ctx, all, true, true)
	if err != nil {
		return 0, err
	}
	n, err := d.program(ctx, hnsDirty)
	d.full = err != nil
	if n > 0 {
		d.log.Info("hns reconcile repaired drift", zap.Int("repairs", n))
	}
	return n, err
}

// Cleanup implements dataplane.Dataplane: it removes every ACL and
// SetPolicy of this package (found by ID prefix) from HNS.
func (d *Dataplane) Cleanup(ctx context.Context) error {
	if err := d.readBack(ctx); err != nil {
		return err
	}
	d.renders = map[string]*epRender{}
	d.assigned = map[string]string{}
	d.want = map[string]*setEntry{}
	hnsDirty := map[string]struct{}{}
	for id := range d.eps {
		hnsDirty[id] = struct{}{}
	}
	_, err := d.program(ctx, hnsDirty)
	if err != nil {
		return err
	}
	d.reset()
	return nil
}

// RuleCount implements dataplane.Dataplane: NPM's ACLs on the HNS
// endpoints, as last programmed or read back.
func (d *Dataplane) RuleCount() int {
	n := 0
	for _, e := range d.eps {
		n += len(e.acls)
	}
	return n
}

// Objects implements dataplane.Dataplane: the ACLs (per endpoint) and
// SetPolicies implementing one policy, as last applied.
func (d *Dataplane) Objects(key string) []dataplane.Object {
	var out []dataplane.Object
	sets := map[string]bool{}
	for _, k := range sortedKeys(d.renders) {
		r := d.renders[k]
		where := k
		if id := d.assigned[k]; id != "" {
			where += " (endpoint " + id + ")"
		}
		for _, aid := range sortedKeys(r.acls) {
			a := r.acls[aid]
			if !slices.Contains(a.Policies, key) {
				continue
			}
			out = append(out, dataplane.Object{Kind: "acl", Name: a.ACL.String(), Comment: "on " + where + ": " + a.Comment})
			for _, tok := range strings.Split(a.RemoteAddresses, ",") {
				if _, ok := r.sets[tok]; ok {
					sets[tok] = true
				}
			}
		}
	}
	for _, id := range sortedKeys(sets) {
		e := d.want[id]
		if e == nil {
			continue
		}
		out = append(out, dataplane.Object{Kind: "setpolicy", Name: id, Family: e.desc.fam, Comment: string(e.sp.Type) + " " + e.comment})
		for _, c := range e.children {
			if ce := d.want[c.id()]; ce != nil {
				out = append(out, dataplane.Object{Kind: "setpolicy", Name: ce.sp.ID, Family: c.fam, Comment: string(ce.sp.Type) + " " + ce.comment})
			}
		}
	}
	return out
}
