package dataplane

import "github.com/open-acn/acn/npm/policy"

// Sizes are the lengths of the core's maps, by name: what a soak test
// watches for growth (every one must follow the live objects, never the
// history of the cluster).
func (d *Desired[S, P]) Sizes() map[string]int {
	users := 0
	for _, u := range d.users {
		users += len(u)
	}
	return map[string]int{
		"sets":         len(d.Sets),
		"policies":     len(d.Policies),
		"groups":       len(d.Groups[policy.Ingress]) + len(d.Groups[policy.Egress]),
		"names":        len(d.Names),
		"setKernelObj": len(d.setObjs),
		"policyNames":  len(d.polNames),
		"groupNames":   len(d.grpNames),
		"setUsers":     users,
	}
}
