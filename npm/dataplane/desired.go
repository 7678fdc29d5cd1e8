package dataplane

import (
	"fmt"
	"maps"
	"slices"

	"github.com/open-acn/acn/npm/policy"
)

// The incremental core shared by the Linux dataplanes: from a policy.State
// and the policy.Changes of a batch to the desired kernel objects — the
// kernel sets of the model sets (patched member by member when only members
// changed), each policy's rendered rules, the dispatch groups, and the
// kernel names with collision detection. A backend supplies only the
// rendering (a Renderer) and the kernel I/O; it reads Desired's maps and
// the Delta of each Update.

// KernelSet is one kernel set rendered from a model set.
type KernelSet[S any] struct {
	Name   string
	Family policy.Family
	Set    S
}

// Renderer turns model objects into a backend's kernel objects.
type Renderer[S, P any] interface {
	// RenderSet renders a model set into its kernel sets (one per family
	// it exists in).
	RenderSet(s *policy.Set) []KernelSet[S]
	// PatchMember adds (or removes) one member of a kernel set made by
	// RenderSet, in place.
	PatchMember(ks KernelSet[S], m policy.Member, add bool)
	// RenderPolicy renders a policy's rules (sets holds the model sets they
	// reference) and returns the kernel names the rendering owns.
	RenderPolicy(p *policy.Policy, sets map[string]*policy.Set) (P, []string)
	// GroupNames are the kernel names a dispatch group owns.
	GroupNames(g *policy.Group) []string
}

// Desired is a backend's desired kernel state, maintained incrementally.
// The maps are read-only for the backend.
type Desired[S, P any] struct {
	// Last is a copy of the model as of the last Update.
	Last *policy.State
	// Sets are the kernel sets of the model sets, by kernel name.
	Sets map[string]S
	// Policies are the rendered rules of each policy, by policy key.
	Policies map[string]P
	// Groups are the dispatch groups (policy.State.Groups) of Last.
	Groups map[policy.Direction][]*policy.Group
	// Names owns every kernel name in use.
	Names Names

	r        Renderer[S, P]
	setObjs  map[string][]KernelSet[S]      // model set ID -> its kernel sets
	polNames map[string][]string            // policy key -> names its rendering owns
	grpNames []string                       // names the groups own
	users    map[string]map[string]struct{} // model set ID -> keys of the policies whose rules reference it
}

// Delta is what one Update changed.
type Delta struct {
	// Full: everything was recomputed (changes == nil).
	Full bool
	// Sets are the kernel sets created, deleted, rebuilt or patched.
	Sets map[string]struct{}
	// Rendered are the model sets rendered anew (rather than patched);
	// Users the model sets whose set of referencing policies changed.
	Rendered, Users map[string]struct{}
	// Policies are the policy keys rendered anew or deleted.
	Policies map[string]struct{}
	// Groups: the endpoints changed, Groups was recomputed.
	Groups bool
}

// NewDesired returns an empty desired state rendered by r.
func NewDesired[S, P any](r Renderer[S, P]) *Desired[S, P] {
	d := &Desired[S, P]{r: r}
	d.Reset()
	return d
}

// Reset forgets everything (the next Update should be a full one).
func (d *Desired[S, P]) Reset() {
	d.Last = policy.NewState()
	d.Sets, d.Policies = map[string]S{}, map[string]P{}
	d.Groups = map[policy.Direction][]*policy.Group{}
	d.Names = Names{}
	d.setObjs, d.polNames, d.grpNames = map[string][]KernelSet[S]{}, map[string][]string{}, nil
	d.users = map[string]map[string]struct{}{}
}

// Users returns the sorted keys of the policies whose rules reference a
// model set.
func (d *Desired[S, P]) Users(id string) []string { return slices.Sorted(maps.Keys(d.users[id])) }

// KernelSets returns the kernel sets of a model set.
func (d *Desired[S, P]) KernelSets(id string) []KernelSet[S] { return d.setObjs[id] }

// Update moves the desired state to desired. changes names what changed
// since the previous Update (nil: anything may have; everything is
// recomputed). On error (a name collision) the caller must treat its
// state as unknown and do a full Update next.
func (d *Desired[S, P]) Update(desired *policy.State, changes *policy.Changes) (*Delta, error) {
	dl := &Delta{Full: changes == nil, Sets: map[string]struct{}{}, Rendered: map[string]struct{}{}, Users: map[string]struct{}{}, Policies: map[string]struct{}{}}
	if dl.Full {
		changes = policy.NewChanges()
		for _, m := range []map[string]*policy.Set{desired.Sets, d.Last.Sets} {
			for id := range m {
				changes.Sets[id] = struct{}{}
			}
		}
		for _, m := range []map[string]*policy.Policy{desired.Policies, d.Last.Policies} {
			for k := range m {
				changes.Policies[k] = struct{}{}
			}
		}
	}
	for id := range changes.Sets {
		if err := d.updateSet(id, desired.Sets[id], changes.Members[id], dl); err != nil {
			return dl, err
		}
	}
	for k := range changes.Policies {
		d.dropPolicy(k, dl)
		if p := desired.Policies[k]; p != nil {
			p = p.Clone()
			d.Last.Policies[k] = p
			for _, id := range RuleSetIDs(RuleSetIDs(nil, p.IngressRules), p.EgressRules) {
				if d.users[id] == nil {
					d.users[id] = map[string]struct{}{}
				}
				d.users[id][k] = struct{}{}
				dl.Users[id] = struct{}{}
			}
		}
	}
	for k := range changes.Policies {
		p := d.Last.Policies[k]
		if p == nil {
			continue
		}
		rendered, names := d.r.RenderPolicy(p, d.Last.Sets)
		if err := d.Names.claimAll(names, "policy "+k); err != nil {
			return dl, err
		}
		d.Policies[k], d.polNames[k] = rendered, names
	}
	if dl.Full || len(changes.Endpoints) > 0 {
		dl.Groups = true
		if dl.Full {
			d.Last.Endpoints = make(map[string]*policy.Endpoint, len(desired.Endpoints))
			for k, e := range desired.Endpoints {
				d.Last.Endpoints[k] = e.Clone()
			}
		} else {
			for k := range changes.Endpoints {
				delete(d.Last.Endpoints, k)
				if e := desired.Endpoints[k]; e != nil {
					d.Last.Endpoints[k] = e.Clone()
				}
			}
		}
		d.Names.releaseAll(d.grpNames)
		d.grpNames = nil
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			d.Groups[dir] = d.Last.Groups(dir)
			for _, g := range d.Groups[dir] {
				names := d.r.GroupNames(g)
				if err := d.Names.claimAll(names, policy.GroupKey(dir, g.Policies)); err != nil {
					return dl, err
				}
				d.grpNames = append(d.grpNames, names...)
			}
		}
	}
	return dl, nil
}

// dropPolicy forgets a policy, its rendering, names and set references.
func (d *Desired[S, P]) dropPolicy(k string, dl *Delta) {
	dl.Policies[k] = struct{}{}
	if old := d.Last.Policies[k]; old != nil {
		for _, id := range RuleSetIDs(RuleSetIDs(nil, old.IngressRules), old.EgressRules) {
			delete(d.users[id], k)
			if len(d.users[id]) == 0 {
				delete(d.users, id)
			}
			dl.Users[id] = struct{}{}
		}
	}
	delete(d.Last.Policies, k)
	delete(d.Policies, k)
	d.Names.releaseAll(d.polNames[k])
	delete(d.polNames, k)
}

// updateSet patches a model set's kernel sets when only its members
// changed, else renders them anew.
func (d *Desired[S, P]) updateSet(id string, s *policy.Set, hints map[policy.Member]struct{}, dl *Delta) error {
	if old := d.Last.Sets[id]; old != nil && s != nil && d.patchSet(old, s, hints, dl) {
		return nil
	}
	for _, ks := range d.setObjs[id] {
		delete(d.Sets, ks.Name)
		d.Names.release(ks.Name)
		dl.Sets[ks.Name] = struct{}{}
	}
	delete(d.setObjs, id)
	delete(d.Last.Sets, id)
	if s == nil {
		return nil
	}
	d.Last.Sets[id] = s.Clone()
	kss := d.r.RenderSet(s)
	for _, ks := range kss {
		if err := d.Names.Claim(ks.Name, "set "+s.Key); err != nil {
			return err
		}
		d.Sets[ks.Name] = ks.Set
		dl.Sets[ks.Name] = struct{}{}
	}
	d.setObjs[id] = kss
	dl.Rendered[id] = struct{}{}
	return nil
}

// patchSet applies a member-only change of a pod or named-port set in
// place: O(hints) with hints (policy.Changes.Members), else one pass over
// the members. A hint set that does not account for the new size falls
// back to the full comparison. false: the set must be rendered anew.
func (d *Desired[S, P]) patchSet(old, s *policy.Set, hints map[policy.Member]struct{}, dl *Delta) bool {
	if old.Kind != s.Kind || s.Kind == policy.SetNet || old.Key != s.Key || len(d.setObjs[s.ID]) == 0 {
		return false
	}
	byFam := map[policy.Family]KernelSet[S]{}
	for _, ks := range d.setObjs[s.ID] {
		byFam[ks.Family] = ks
	}
	apply := func(add, del []policy.Member) {
		for i, ms := range [][]policy.Member{add, del} {
			for _, m := range ms {
				if i == 0 {
					old.Members[m] = struct{}{}
				} else {
					delete(old.Members, m)
				}
				if ks, ok := byFam[m.Family()]; ok {
					d.r.PatchMember(ks, m, i == 0)
					dl.Sets[ks.Name] = struct{}{}
				}
			}
		}
	}
	apply(DiffKeys(s.Members, old.Members, hints))
	if hints != nil && len(old.Members) != len(s.Members) {
		apply(DiffKeys(s.Members, old.Members, nil))
	}
	old.Comment = s.Comment
	return true
}

// Names maps every kernel name in use to the key of the object it was made
// from. Names are stable hashes, so two objects claiming one name is a
// collision, refused (the batch fails; the policy model fails closed on
// its own collisions). A name is released when its object goes, so the
// map holds exactly the names in use however much the cluster churns.
type Names map[string]string

// Claim records that name belongs to origin; another origin is a collision.
func (n Names) Claim(name, origin string) error {
	if o, ok := n[name]; ok && o != origin {
		return fmt.Errorf("kernel name collision: %s for %q and %q", name, o, origin)
	}
	n[name] = origin
	return nil
}

func (n Names) claimAll(names []string, origin string) error {
	for _, name := range names {
		if err := n.Claim(name, origin); err != nil {
			return err
		}
	}
	return nil
}

func (n Names) release(name string) { delete(n, name) }

func (n Names) releaseAll(names []string) {
	for _, name := range names {
		delete(n, name)
	}
}
