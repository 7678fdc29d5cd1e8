//go:build linux

package cluster

import (
	"context"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/internal/probe"
)

func TestTwoNodeClusterEnforcesDenyAll(t *testing.T) {
	Require(t)
	for _, mode := range []string{"transparent", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			c, err := New(ctx, Config{CNIMode: mode, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.CreateNamespace(ctx, "x", map[string]string{"ns": "x"}); err != nil {
				t.Fatal(err)
			}
			var pods []*Pod
			var writes []Write
			for i, n := range []int{0, 0, 1} {
				p, w, err := c.CreatePod(ctx, c.Nodes[n], "x", string(rune('a'+i)), map[string]string{"pod": string(rune('a' + i))}, DefaultPorts())
				if err != nil {
					t.Fatal(err)
				}
				pods = append(pods, p)
				writes = append(writes, w)
			}
			if _, err := c.WaitEnforced(ctx, writes, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			matrix := func() map[[2]int]bool { return c.Matrix(pods, 80, probe.TCP, 500*time.Millisecond) }
			for k, ok := range matrix() {
				if !ok {
					t.Errorf("before any policy %v must connect", k)
				}
			}
			w, err := c.CreatePolicy(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny-b"},
				Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}})
			if err != nil {
				t.Fatal(err)
			}
			took, err := c.WaitEnforced(ctx, []Write{w}, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("deny-b enforced on every node in %s", took)
			for k, ok := range matrix() {
				want := k[1] != 1
				if ok != want {
					t.Errorf("with deny-b, %v connected=%v want %v", k, ok, want)
				}
			}
			if !c.Probe(pods[2], pods[0].IP, 80, probe.UDP, 500*time.Millisecond) || !c.Probe(pods[2], pods[0].IP, 81, probe.SCTP, 500*time.Millisecond) {
				t.Error("UDP and SCTP to an unselected pod across nodes must pass")
			}
			if c.Probe(pods[2], pods[1].IP, 81, probe.SCTP, 500*time.Millisecond) {
				t.Error("SCTP to the denied pod across nodes must be dropped")
			}
		})
	}
}
