//go:build linux

package dptest

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/open-acn/acn/npm/dataplane"
)

// RunClusterPolicyLogs programs the first ClusterNetworkPolicy case, then
// changes the Admin Deny policy's priority and action: every rule line
// logged ("... rule added/removed") for it names the ClusterNetworkPolicy
// and its tier, and both the addition and the removal are logged.
// newDP builds a dataplane over a fake kernel logging to log.
func RunClusterPolicyLogs(t *testing.T, newDP func(t testing.TB, log *zap.Logger) dataplane.Dataplane) {
	core, logs := observer.New(zap.InfoLevel)
	d := newDP(t, zap.New(core))
	tp := Addresses(Pods)
	c := ClusterCases()[0]
	e := tp.EngineFor(c)
	ctx := context.Background()
	if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	guard := c.ClusterPolicies[0].DeepCopy()
	guard.Spec.Priority = 3
	guard.Spec.Ingress[0].Action = pass
	e.UpsertClusterPolicy(guard)
	logs.TakeAll()
	// Two batches: the iptables dataplane keeps a group's old chain one
	// batch longer (a pod moving between groups is never dispatched to
	// nothing), so its rules are removed in the second.
	for i := 0; i < 2; i++ {
		if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
	}
	added, removed := 0, 0
	for _, l := range logs.All() {
		if !strings.Contains(l.Message, "rule added") && !strings.Contains(l.Message, "rule removed") {
			continue
		}
		text := ""
		for _, f := range l.Context {
			text += " " + f.String
		}
		// A rule of the policy carries the comment "<key> <tier> <action> <rule>";
		// group rules only list the policies of the group.
		if strings.Contains(text, "ClusterNetworkPolicy/guard ingress") {
			t.Errorf("%s without the tier: %s", l.Message, text)
		}
		if strings.Contains(l.Message, "added") && strings.Contains(text, "ClusterNetworkPolicy/guard Admin Pass") {
			added++
		}
		if strings.Contains(l.Message, "removed") && strings.Contains(text, "ClusterNetworkPolicy/guard Admin Deny") {
			removed++
		}
	}
	if added == 0 || removed == 0 {
		t.Fatalf("changing the action of ClusterNetworkPolicy/guard logged %d rule additions and %d removals naming it:\n%v", added, removed, logs.All())
	}
}
