// Package dataplane defines the interface every NPM dataplane (iptables +
// ipset on Linux, nftables, Windows HNS ACLs) implements. The daemon owns
// one Dataplane and feeds it the desired state computed by npm/translate.
package dataplane

import (
	"context"

	"github.com/open-acn/acn/npm/policy"
)

// Dataplane programs a policy.State into a kernel (or HNS).
//
// Calls are not concurrent: the daemon serialises Apply, Reconcile and
// Cleanup (one goroutine, or a mutex).
type Dataplane interface {
	// Apply makes the kernel equal to desired in one transaction per
	// kernel tool/family: new sets and rules go in before old ones are
	// removed, so no selected pod is ever open in between. changes, when
	// non-nil, names the objects that changed since the previous Apply
	// (policy.Changes from the incremental engine); nil means diff
	// everything. The first Apply of a process replaces whatever a previous
	// run left in the kernel, without flushing first. desired is read during
	// the call only; the dataplane keeps its own copy.
	Apply(ctx context.Context, desired *policy.State, changes *policy.Changes) error

	// Reconcile reads the kernel state back, repairs every difference from
	// the last applied state (deleted chains or sets, missing or extra rules
	// and members, a missing jump) and returns how many objects it repaired.
	Reconcile(ctx context.Context) (repairs int, err error)

	// Cleanup removes everything this dataplane created (rules, chains,
	// sets), for `azure-npm cleanup` or a dataplane switch.
	Cleanup(ctx context.Context) error

	// Objects names the kernel objects implementing one policy (key
	// "namespace/name") as last applied, for `azure-npm explain`.
	Objects(policyKey string) []Object

	// RuleCount is the number of rules (HNS: ACLs) the dataplane has
	// programmed, as far as it knows from its last transaction or
	// read-back: the npm_rules gauge.
	RuleCount() int
}

// Object is one kernel object (chain, set, rule) that implements a policy.
type Object struct {
	Kind    string // "chain", "set", "rule"
	Name    string // kernel name (chain or set name, or the rule text)
	Family  policy.Family
	Comment string // what it is, in words
}

// FlowLog configures the kernel side of flow logs in a Linux dataplane: a
// log action (NFLOG group Group) on the allow rules of policies with
// policy.FlowLogAllow and on the default deny of dispatch groups whose
// policies have policy.FlowLogDeny, each carrying the deciding rule's
// flowlog ID, behind one rate limit per node (and address family) of Rate
// messages per second with Burst. Rate 0 disables flow logs: no log
// rules at all, whatever the policies ask.
type FlowLog struct {
	Group uint16
	Rate  int
	Burst int
}

// Enabled reports whether flow logs are programmed.
func (f FlowLog) Enabled() bool { return f.Rate > 0 }

// FlowLogCounter is implemented by dataplanes that program flow logs: the
// log messages the rate limit suppressed since the kernel objects counting
// them were created (they restart from 0 when the table is replaced).
type FlowLogCounter interface {
	FlowLogDropped(ctx context.Context) (uint64, error)
}
