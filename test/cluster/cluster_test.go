//go:build linux

package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/internal/probe"
)

func TestTwoNodeClusterEnforcesDenyAll(t *testing.T) {
	Require(t)
	for _, tc := range []struct{ mode, family string }{{"transparent", "ipv4"}, {"bridge", "ipv4"}, {"transparent", "dual"}, {"overlay", "ipv6"}} {
		t.Run(tc.mode+"-"+tc.family, func(t *testing.T) {
			ctx := context.Background()
			c, err := New(ctx, Config{CNIMode: tc.mode, IPFamily: tc.family, Logf: t.Logf})
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
			for _, p := range pods {
				if len(p.IPs) != len(c.Families()) {
					t.Fatalf("pod %s has %v, want one address per family %v", p.Key(), p.IPs, c.Families())
				}
			}
			// Every ordered pair over each family, keyed "family [src dst]".
			matrix := func() map[string]bool {
				m := map[string]bool{}
				for _, f := range c.Families() {
					for i, s := range pods {
						for j, d := range pods {
							if i != j {
								m[fmt.Sprintf("%s %v", f, [2]int{i, j})] = c.Probe(s, d.IPFor(f), 80, probe.TCP, 500*time.Millisecond)
							}
						}
					}
				}
				return m
			}
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
				want := !strings.HasSuffix(k, " 1]")
				if ok != want {
					t.Errorf("with deny-b, %v connected=%v want %v", k, ok, want)
				}
			}
			for _, f := range c.Families() {
				if !c.Probe(pods[2], pods[0].IPFor(f), 80, probe.UDP, 500*time.Millisecond) || !c.Probe(pods[2], pods[0].IPFor(f), 81, probe.SCTP, 500*time.Millisecond) {
					t.Errorf("%s: UDP and SCTP to an unselected pod across nodes must pass", f)
				}
				if c.Probe(pods[2], pods[1].IPFor(f), 81, probe.SCTP, 500*time.Millisecond) {
					t.Errorf("%s: SCTP to the denied pod across nodes must be dropped", f)
				}
				if c.Probe(pods[0], pods[1].IPFor(f), 80, probe.TCP, 500*time.Millisecond) {
					t.Errorf("%s: TCP to the denied pod on the same node must be dropped", f)
				}
			}
		})
	}
}
