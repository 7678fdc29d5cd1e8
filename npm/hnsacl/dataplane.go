package hnsacl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
	setPols  map[string][]string  // SetPolicy ID -> policies referencing it
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
	d.setPols = map[string][]string{}
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

// refreshEndpoints lists endpoints again (new pods), keeping the
// programmed ACLs of known ones as HNS reports them.
func (d *Dataplane) refreshEndpoints(ctx context.Context) error {
	eps, err := d.hns.ListEndpoints(ctx)
	if err != nil {
		return fmt.Errorf("hns list endpoints: %w", err)
	}
	d.setEndpoints(eps)
	return nil
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
		if e := desired.Endpoints[k]; e != nil {
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
	d.setPols = map[string][]string{}
	for id, ps := range pols {
		for p := range ps {
			d.setPols[id] = append(d.setPols[id], p)
		}
		sort.Strings(d.setPols[id])
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
				if err := d.refreshEndpoints(ctx); err != nil {
					return nil, err
				}
				refreshed = true
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
	if refreshed && !listed {
		// endpoints that appeared since: pods not dirty now but
		// unresolved before get their ACLs too
		for k, r := range d.renders {
			if d.assigned[k] == "" {
				if id := d.resolve(r); id != "" {
					d.assigned[k] = id
				}
			}
		}
	}
	if all || refreshed {
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
func (d *Dataplane) program(ctx context.Context, hnsDirty map[string]struct{}) (int, error) {
	changed := 0
	// The order keeps every endpoint's decision, after each call of a
	// step that changes one thing (a pod, a namespace, a policy), within
	// the old or the new decision, never denying what both allow:
	// 1. new SetPolicies (IPSETs before the NESTEDIPSETs containing them);
	// 2. new ACLs on every endpoint; 3. SetPolicies gaining members get
	// old ∪ new members; 4. SetPolicies losing members get the new ones
	// (so a pod moving between sets is never in neither); 5. stale ACLs
	// out; 6. SetPolicies no longer referenced out (NESTEDIPSETs first).
	n, err := d.syncSets(ctx, OpAdd)
	changed += n
	if err != nil {
		return changed, err
	}
	// 2. ACLs: the new ones in on every endpoint before the old ones go
	// out anywhere, so a pod whose isolation moves from one side of a
	// connection to the other is never open in between.
	ids := make([]string, 0, len(hnsDirty))
	for id := range hnsDirty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	owners := d.owners()
	type epDiff struct {
		ep       *hnsEp
		owner    string
		want     map[string]*aclInfo
		add, del []*aclInfo
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
		// allows go in before a new Block (a newly isolated endpoint is
		// never denied what it is allowed), and a Block goes out before
		// the allows (it only goes when the direction becomes open).
		sort.SliceStable(x.add, func(i, j int) bool { return x.add[i].Action == Allow && x.add[j].Action != Allow })
		sort.SliceStable(x.del, func(i, j int) bool { return x.del[i].Action == Block && x.del[j].Action != Block })
		if x.owner == "" {
			x.owner = "(no selected pod)"
		}
		diffs = append(diffs, x)
	}
	for _, op := range []Op{OpAdd, OpUpdate, OpRemove} {
		if op == OpUpdate {
			n, err := d.syncSets(ctx, opGrow)
			changed += n
			if err != nil {
				return changed, err
			}
			n, err = d.syncSets(ctx, OpUpdate)
			changed += n
			if err != nil {
				return changed, err
			}
			continue
		}
		for _, x := range diffs {
			if d.eps[x.ep.id] == nil {
				continue // gone
			}
			l := x.add
			if op == OpRemove {
				l = x.del
			}
			n, err := d.modifyACLs(ctx, x.ep, x.owner, op, l)
			changed += n
			if errors.Is(err, ErrNotFound) {
				d.log.Info("hns endpoint gone", zap.String("endpoint", x.ep.id), zap.String("pod", x.owner))
				d.dropEndpoint(x.ep.id)
				continue
			}
			if err != nil {
				return changed, err
			}
			if op == OpRemove {
				// attribution follows the latest render
				for aid, a := range x.want {
					x.ep.acls[aid] = a
				}
			}
		}
	}
	// 3. SetPolicies no longer referenced: NESTEDIPSETs first. A set some
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
		n, err := d.modifySets(ctx, OpRemove, del)
		changed += n
		if err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// opGrow is syncSets' first update pass: members are only added.
const opGrow Op = "grow"

// syncSets adds the missing desired SetPolicies (OpAdd), adds the new
// members of altered ones keeping the old (opGrow), or writes the desired
// members of altered ones (OpUpdate); IPSETs first.
func (d *Dataplane) syncSets(ctx context.Context, op Op) (int, error) {
	changed := 0
	for _, typ := range []SetPolicyType{IPSet, NestedIPSet} {
		var l []SetPolicy
		for _, id := range sortedKeys(d.want) {
			e := d.want[id]
			if e.sp.Type != typ {
				continue
			}
			cur, ok := d.sets[id]
			switch {
			case op == OpAdd && !ok:
				l = append(l, e.sp)
			case op == opGrow && ok && cur.Values != e.sp.Values:
				added, removed := listDiff(cur.Values, e.sp.Values)
				if len(added) > 0 && len(removed) > 0 {
					g := e.sp
					g.Values = unionValues(cur.Values, e.sp.Values)
					l = append(l, g)
				} else if len(added) > 0 {
					l = append(l, e.sp)
				}
			case op == OpUpdate && ok && cur.Values != e.sp.Values:
				l = append(l, e.sp)
			}
		}
		mop := op
		if op == opGrow {
			mop = OpUpdate
		}
		n, err := d.modifySets(ctx, mop, l)
		changed += n
		if err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// unionValues merges two sorted-by-meaning comma lists (the result is in
// address order for IPSETs, string order for NESTEDIPSETs).
func unionValues(a, b string) string {
	seen := map[string]bool{}
	var out []string
	for _, l := range []string{a, b} {
		for _, x := range strings.Split(l, ",") {
			if x != "" && !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		pi, ei := parseAddr(out[i])
		pj, ej := parseAddr(out[j])
		if ei != nil || ej != nil {
			return out[i] < out[j]
		}
		return policy.LessMember(policy.Member{Prefix: pi}, policy.Member{Prefix: pj})
	})
	return strings.Join(out, ",")
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

func (d *Dataplane) modifySets(ctx context.Context, op Op, sets []SetPolicy) (int, error) {
	done := 0
	for len(sets) > 0 {
		n := min(len(sets), d.max)
		batch := sets[:n]
		sets = sets[n:]
		if err := d.hns.ModifySetPolicies(ctx, op, batch); err != nil {
			return done, fmt.Errorf("hns %s %d set policies: %w", strings.ToLower(string(op)), len(batch), err)
		}
		for _, s := range batch {
			old := d.sets[s.ID]
			if op == OpRemove {
				delete(d.sets, s.ID)
			} else {
				d.sets[s.ID] = s
			}
			d.logSet(op, s, old)
			done++
		}
	}
	return done, nil
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

func (d *Dataplane) logSet(op Op, s, old SetPolicy) {
	comment := ""
	if e := d.want[s.ID]; e != nil {
		comment = e.comment
	}
	fields := []zap.Field{zap.String("set", s.ID), zap.String("type", string(s.Type)), zap.String("selector", comment), zap.Strings("policies", d.setPols[s.ID])}
	switch op {
	case OpAdd:
		fields = append(fields, zap.Strings("members", trunc(strings.Split(s.Values, ","))))
	case OpUpdate:
		add, rem := listDiff(old.Values, s.Values)
		fields = append(fields, zap.Strings("added", trunc(add)), zap.Strings("removed", trunc(rem)))
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
			if !contains(a.Policies, key) {
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
