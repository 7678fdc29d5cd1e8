// Package translate turns Kubernetes Pods, Namespaces and NetworkPolicies
// into the platform-neutral desired state of one node (npm/policy).
//
// It is pure: no kernel, no exec, no informers. Two entry points share one
// implementation:
//
//   - Translate(snapshot, opts) computes the whole state from scratch.
//   - Engine is incremental: Upsert/Delete of a pod, namespace or policy
//     updates the state in place and records what changed (TakeChanges), at
//     a cost proportional to the number of selectors, not of pods × policies.
//
// Semantics (networking.k8s.io/v1): selectors are evaluated in Go into
// exact pod-IP sets (so NotIn/DoesNotExist never match off-cluster
// addresses); ipBlock except is subtracted in Go; named ports are resolved
// per pod; host-network pods and pods without IP are never selected and
// never peers; a policy that cannot be translated fails closed for the pods
// it selects (all pods of its namespace when even its selector is invalid).
package translate

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/policy"
)

// Options configure a translation.
type Options struct {
	// NodeName: pods with spec.nodeName equal to it are local (become
	// Endpoints). Ignored when IsLocal is set.
	NodeName string
	// IsLocal overrides the locality test (tests use it to make every pod
	// local).
	IsLocal func(*corev1.Pod) bool
	// Logger receives one error line per policy that fails closed, and
	// debug lines for engine events. nil means zap.NewNop().
	Logger *zap.Logger
	// FlowLog is the flow-log mode of a namespace without the
	// flowlog.Annotation (flowLog.default); every policy carries its
	// namespace's mode (policy.Policy.FlowLog).
	FlowLog policy.FlowLog
	// AllSets computes the members of every set of the cluster's policies.
	// Without it the engine computes only the sets of the policies that
	// apply to at least one Endpoint of this node (the only ones a
	// dataplane programs and State.Evaluate reads: dataplane.Narrow); the
	// others are in State.Sets with no members. A node of a big cluster
	// would otherwise keep a member per selected pod of every policy of
	// the cluster.
	AllSets bool
}

// Snapshot is the full set of objects the translation depends on.
type Snapshot struct {
	Pods       []*corev1.Pod
	Namespaces []*corev1.Namespace
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies are ClusterNetworkPolicies (policy.networking.k8s.io/v1beta1).
	ClusterPolicies []*cnpv1.ClusterNetworkPolicy
	// Nodes supply the addresses of ClusterNetworkPolicy nodes peers.
	Nodes []*corev1.Node
}

// Translate computes the desired state of the node from a snapshot. It is
// equivalent to feeding every object to a new Engine.
func Translate(s Snapshot, opts Options) *policy.State {
	e := NewEngine(opts)
	for _, ns := range s.Namespaces {
		e.UpsertNamespace(ns)
	}
	for _, p := range s.Pods {
		e.UpsertPod(p)
	}
	for _, n := range s.Nodes {
		e.UpsertNode(n)
	}
	for _, np := range s.Policies {
		e.UpsertPolicy(np)
	}
	for _, cnp := range s.ClusterPolicies {
		e.UpsertClusterPolicy(cnp)
	}
	return e.State().Clone()
}
