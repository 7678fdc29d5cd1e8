package dataplane

import "github.com/open-acn/acn/npm/policy"

// DiffKeys returns the keys of want missing from have (add) and the keys
// of have missing from want (del). hints, when non-nil, lists every key
// that may differ, so only those are compared: O(changes) instead of
// O(size).
func DiffKeys[K comparable](want, have, hints map[K]struct{}) (add, del []K) {
	if hints != nil {
		for k := range hints {
			_, w := want[k]
			_, h := have[k]
			if w && !h {
				add = append(add, k)
			} else if h && !w {
				del = append(del, k)
			}
		}
		return add, del
	}
	for k := range want {
		if _, ok := have[k]; !ok {
			add = append(add, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			del = append(del, k)
		}
	}
	return add, del
}

// RuleSetIDs appends to ids the model sets the rules reference (peer sets
// and named-port sets), in rule order, repeats included.
func RuleSetIDs(ids []string, rules []policy.Rule) []string {
	for _, r := range rules {
		for _, pe := range r.Peers {
			ids = append(ids, pe.SetID)
		}
		for _, pt := range r.Ports {
			if pt.SetID != "" {
				ids = append(ids, pt.SetID)
			}
		}
	}
	return ids
}
