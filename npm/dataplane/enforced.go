package dataplane

import "github.com/open-acn/acn/npm/policy"

// Enforced narrows a node's desired state to what its kernel must hold:
// the policies that apply to at least one of its endpoints and the sets
// their rules reference. The translator keeps every policy of the cluster
// (a selector can name any pod; it computes the members of the narrowed
// sets only), but a policy that selects none of this node's pods has
// nothing to enforce here. Programming it anyway made the kernel grow with the
// cluster, and every remote pod event that changed one of its sets cost a
// kernel transaction that changed no verdict on this node.
//
// Project narrows a state and the changes since the last Commit; the
// changes name, besides the narrowed ones, every policy and set that
// entered or left the narrowed state (a set that enters it is listed
// without member hints: the dataplane has none of it yet). Commit records
// the last projection as programmed: call it after a successful
// transaction, so a failed one is projected again with what follows.
type Enforced struct {
	applied, next projection
	// ahead: the last Project named changes no Commit has recorded yet.
	ahead bool
}

type projection struct {
	policies, sets map[string]struct{}
}

// Project returns the part of st the node enforces (st itself is not
// changed; the result shares its objects) and ch narrowed to it (nil when
// ch is nil: anything may have changed).
func (e *Enforced) Project(st *policy.State, ch *policy.Changes) (*policy.State, *policy.Changes) {
	out, pols, sets := narrow(st)
	e.next = projection{policies: pols, sets: sets}
	if ch == nil {
		return out, nil
	}
	return out, e.changes(ch, pols, sets)
}

// Narrow is the part of st a node enforces (what Project returns).
func Narrow(st *policy.State) *policy.State {
	out, _, _ := narrow(st)
	return out
}

func narrow(st *policy.State) (*policy.State, map[string]struct{}, map[string]struct{}) {
	pols := map[string]struct{}{}
	for _, ep := range st.Endpoints {
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			for _, k := range ep.Policies(d) {
				pols[k] = struct{}{}
			}
		}
	}
	out := *st // keeps whatever else the state holds
	out.Policies = make(map[string]*policy.Policy, len(pols))
	out.Sets = map[string]*policy.Set{}
	var ids []string
	for k := range pols {
		p := st.Policies[k]
		if p == nil {
			delete(pols, k)
			continue
		}
		out.Policies[k] = p
		ids = RuleSetIDs(RuleSetIDs(ids[:0], p.IngressRules), p.EgressRules)
		for _, id := range ids {
			if s := st.Sets[id]; s != nil {
				out.Sets[id] = s
			}
		}
	}
	sets := make(map[string]struct{}, len(out.Sets))
	for id := range out.Sets {
		sets[id] = struct{}{}
	}
	return &out, pols, sets
}

// changes narrows ch to the projection (pols, sets), adding what entered
// or left it since the last Commit.
func (e *Enforced) changes(ch *policy.Changes, pols, sets map[string]struct{}) *policy.Changes {
	nc := policy.NewChanges()
	for k := range ch.Endpoints {
		nc.Endpoints[k] = struct{}{}
	}
	for k := range ch.Policies {
		if e.inPolicies(k) {
			nc.Policies[k] = struct{}{}
		}
	}
	for id := range ch.Sets {
		if _, now := sets[id]; now || e.inApplied(id) {
			nc.Sets[id] = struct{}{}
			if hints, ok := ch.Members[id]; ok {
				nc.Members[id] = hints
			}
		}
	}
	flip := func(now, before map[string]struct{}, into map[string]struct{}, members map[string]map[policy.Member]struct{}) {
		for k := range now {
			if _, ok := before[k]; !ok {
				into[k] = struct{}{}
				if members != nil {
					delete(members, k) // new to the dataplane: render it whole
				}
			}
		}
		for k := range before {
			if _, ok := now[k]; !ok {
				into[k] = struct{}{}
				if members != nil {
					delete(members, k)
				}
			}
		}
	}
	flip(pols, e.applied.policies, nc.Policies, nil)
	flip(sets, e.applied.sets, nc.Sets, nc.Members)
	e.ahead = !nc.Empty()
	return nc
}

// Unchanged reports, in O(changed sets), that Project would narrow ch to
// nothing: no endpoint or policy changed, every changed set is one the
// kernel does not hold, and nothing projected earlier awaits a Commit. The
// common case of a remote pod event then costs no projection.
func (e *Enforced) Unchanged(ch *policy.Changes) bool {
	if ch == nil || e.ahead || e.applied.sets == nil || len(ch.Endpoints) > 0 || len(ch.Policies) > 0 {
		return false
	}
	for id := range ch.Sets {
		if _, ok := e.applied.sets[id]; ok {
			return false
		}
	}
	return true
}

func (e *Enforced) inPolicies(k string) bool {
	_, now := e.next.policies[k]
	_, before := e.applied.policies[k]
	return now || before
}

func (e *Enforced) inApplied(id string) bool {
	_, ok := e.applied.sets[id]
	return ok
}

// Commit records the last Project's result as programmed.
func (e *Enforced) Commit() { e.applied, e.ahead = e.next, false }

// Sizes are the entries of its maps (for /status sizes).
func (e *Enforced) Sizes() map[string]int {
	return map[string]int{"enforced.policies": len(e.applied.policies), "enforced.sets": len(e.applied.sets)}
}
