package policy

import "strings"

// FlowLog says which verdicts on a policy's pods are logged, one line per
// connection attempt (flow logs): the dataplanes put a kernel log action
// (NFLOG) on the allow rules (FlowLogAllow) and on the default deny
// (FlowLogDeny) of the policies whose namespace opted in.
type FlowLog uint8

const (
	FlowLogAllow FlowLog = 1 << iota
	FlowLogDeny

	FlowLogNone FlowLog = 0
	FlowLogAll          = FlowLogAllow | FlowLogDeny
)

// Allow reports whether allowed connections are logged.
func (f FlowLog) Allow() bool { return f&FlowLogAllow != 0 }

// Deny reports whether denied connections are logged.
func (f FlowLog) Deny() bool { return f&FlowLogDeny != 0 }

func (f FlowLog) String() string {
	switch f {
	case FlowLogNone:
		return "none"
	case FlowLogAll:
		return "all"
	}
	var s []string
	if f.Allow() {
		s = append(s, "allow")
	}
	if f.Deny() {
		s = append(s, "deny")
	}
	return strings.Join(s, ",")
}
