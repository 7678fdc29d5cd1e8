package flowlog

import (
	"sync"

	"github.com/open-acn/acn/npm/policy"
)

// Attribution is what an ID resolves to.
type Attribution struct {
	// Policy is the deciding policy (namespace/name) of an allow; for a
	// default deny, the isolating policies joined by ",".
	Policy string
	// Policies isolating the pod (a deny), or the allowing policy.
	Policies []string
	// Rule is the allow rule's index (-1 for a default deny).
	Rule int
	// Description is the rule in words, as `azure-npm explain` prints it.
	Description string
	// Namespace of the policies (the pod's namespace for NetworkPolicies).
	Namespace string
}

// Index resolves IDs against desired states. It remembers the previous
// state's objects too, so a log message that was in flight when a policy
// changed still resolves. A state is indexed only when an ID is resolved
// against it: a node that logs nothing pays nothing per transaction. Safe
// for concurrent use.
type Index struct {
	mu              sync.Mutex
	curSt, prevSt   *policy.State
	curIdx, prevIdx map[string]Attribution // nil: not indexed yet
}

// Update makes st (which must not change afterwards) the current state.
func (x *Index) Update(st *policy.State) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.prevSt, x.prevIdx = x.curSt, x.curIdx
	x.curSt, x.curIdx = st, nil
}

func index(st *policy.State) map[string]Attribution {
	m := map[string]Attribution{}
	for k, p := range st.Policies {
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			if !p.Isolates(d) {
				continue
			}
			for i, r := range p.Rules(d) {
				allow, _ := Logged(p, r.Action)
				desc := r.Describe()
				if p.Tier.Cluster() {
					desc = p.Tier.String() + " " + r.Action.String() + ": " + desc
				}
				m[PolicyRuleID(p, d, i, allow)] = Attribution{Policy: k, Policies: []string{k}, Rule: i, Description: desc, Namespace: p.Namespace}
			}
		}
	}
	for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		for _, g := range st.Groups(d) {
			a := Attribution{Policies: g.Policies, Rule: -1, Description: policy.DescribeDeny(g.Policies)}
			for i, k := range g.Policies {
				if i > 0 {
					a.Policy += ","
				}
				a.Policy += k
				if p := st.Policies[k]; p != nil && a.Namespace == "" {
					a.Namespace = p.Namespace
				}
			}
			m[DenyID(g)] = a
		}
	}
	return m
}

// Resolve returns what id names; false if neither the current nor the
// previous state has it.
func (x *Index) Resolve(id string) (Attribution, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.curIdx == nil && x.curSt != nil {
		x.curIdx = index(x.curSt)
	}
	if a, ok := x.curIdx[id]; ok {
		return a, true
	}
	if x.prevIdx == nil && x.prevSt != nil {
		x.prevIdx = index(x.prevSt)
	}
	a, ok := x.prevIdx[id]
	return a, ok
}
