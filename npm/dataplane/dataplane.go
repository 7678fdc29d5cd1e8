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

// KernelReader is implemented by dataplanes whose Reconcile can read the
// kernel back without holding up Apply. A read-back of iptables-save and
// ipset save (or of a whole nftables table) takes tens of milliseconds on
// a loaded node; an event arriving meanwhile would wait for it.
//
// ReadKernel touches no state of the dataplane and may run concurrently
// with Apply. ReconcileRead repairs drift like Reconcile, from that
// reading; it is serialised with Apply like every other call, and the
// caller must give it only a reading that began after the dataplane's
// last Apply, Reconcile or Cleanup returned and before any other began
// (otherwise it calls Reconcile, which reads the kernel itself).
// ReconcileRead may still read again itself when its own repairs make the
// reading stale.
type KernelReader interface {
	ReadKernel(ctx context.Context) (KernelReading, error)
	ReconcileRead(ctx context.Context, r KernelReading) (repairs int, err error)
}

// KernelReading is a dataplane's read-back of the kernel (opaque).
type KernelReading any
