// Package flowlog is azure-npm's per-connection flow log: the namespace
// annotation and config default that opt namespaces in, the compact rule
// IDs the dataplanes put in the kernel's NFLOG prefix, and (on Linux) the
// daemon's reader that turns NFLOG messages into one JSON line per
// connection attempt, attributed to the policy and rule that decided it.
package flowlog

import (
	"fmt"
	"strings"

	"github.com/open-acn/acn/npm/policy"
)

// Annotation opts a namespace or a ClusterNetworkPolicy in or out: "deny",
// "allow", "allow,deny" (= "all") or "none". An object without it gets
// flowLog.default.
const Annotation = "npm.open-acn.io/flow-log"

// ParseDefault parses the config default: none, deny or all.
func ParseDefault(s string) (policy.FlowLog, error) {
	switch s {
	case "none":
		return policy.FlowLogNone, nil
	case "deny":
		return policy.FlowLogDeny, nil
	case "all":
		return policy.FlowLogAll, nil
	}
	return 0, fmt.Errorf("%q: want none, deny or all", s)
}

// ParseAnnotation parses the namespace annotation: a comma-separated list
// of allow and deny, or one of none and all (case and spaces ignored).
func ParseAnnotation(s string) (policy.FlowLog, error) {
	var f policy.FlowLog
	parts := strings.Split(s, ",")
	for _, p := range parts {
		switch strings.ToLower(strings.TrimSpace(p)) {
		case "allow":
			f |= policy.FlowLogAllow
		case "deny":
			f |= policy.FlowLogDeny
		case "all":
			f |= policy.FlowLogAll
		case "none":
			if len(parts) > 1 {
				return 0, fmt.Errorf("annotation %s=%q: none cannot be combined", Annotation, s)
			}
		default:
			return 0, fmt.Errorf("annotation %s=%q: want deny, allow, \"allow,deny\", all or none", Annotation, s)
		}
	}
	return f, nil
}

// Mode is the mode of a namespace or ClusterNetworkPolicy with these
// annotations: the annotation's, or def when it is absent or malformed
// (err says why).
func Mode(annotations map[string]string, def policy.FlowLog) (policy.FlowLog, error) {
	v, ok := annotations[Annotation]
	if !ok {
		return def, nil
	}
	f, err := ParseAnnotation(v)
	if err != nil {
		return def, err
	}
	return f, nil
}
