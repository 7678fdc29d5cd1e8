//go:build linux

package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mattfenwick/cyclonus/pkg/generator"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/open-acn/acn/test/cluster"
)

// TestConformanceSubset runs every 10th generated case (23 of 230, every
// tag group represented) on a two-node cluster in `make test`, once per
// dataplane; `make e2e` runs all 230.
func TestConformanceSubset(t *testing.T) {
	for _, dp := range []string{"iptables", "nftables"} {
		t.Run(dp, func(t *testing.T) { conformanceSubset(t, dp) })
	}
}

func conformanceSubset(t *testing.T, dataplane string) {
	cluster.Require(t)
	ctx := context.Background()
	c, err := cluster.New(ctx, cluster.Config{Dataplane: dataplane, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out bytes.Buffer
	r, err := NewRunner(ctx, c, Options{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	cases := r.GeneratedCases()
	if len(cases) != 230 {
		t.Errorf("cyclonus v0.5.6 generates 230 cases, got %d", len(cases))
	}
	var only []int
	for i := 0; i < len(cases); i += 10 {
		only = append(only, i)
	}
	r.opts.Only = only
	checkRun(t, r, &out, len(only), 1)
}

// checkRun runs r and fails unless every case passed over each of
// families families.
func checkRun(t *testing.T, r *Runner, out *bytes.Buffer, cases, families int) {
	t.Helper()
	reps, err := r.Run(context.Background())
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != families {
		t.Fatalf("%d reports, want one per family (%d)", len(reps), families)
	}
	for _, rep := range reps {
		if rep.Failed > 0 || rep.Passed != cases {
			t.Errorf("%s: %d passed, %d failed of %d: %v", rep.Family, rep.Passed, rep.Failed, cases, rep.Failures)
		}
	}
}

func TestLoadCasesFromFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "cases.yaml")
	if err := os.WriteFile(good, []byte(`cases:
- Description: deny all ingress to x/a
  Steps:
  - Probe: {AllAvailable: true, Mode: pod-ip}
    Actions:
    - CreatePolicy:
        Policy:
          metadata: {name: deny, namespace: x}
          spec:
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases, err := LoadCases(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 1 || cases[0].Steps[0].Actions[0].CreatePolicy.Policy.Name != "deny" || !cases[0].Steps[0].Probe.AllAvailable {
		t.Fatalf("parsed %+v", cases[0])
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("cases:\n- Description: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCases(bad); err == nil {
		t.Fatal("a case without steps must be rejected")
	}
}

// TestConformanceDualStackSmoke runs a few generated cases (ipBlocks
// with except, the literal 0.0.0.0/0 and 0.0.0.0/31, a named port) on a dual-stack two-node cluster, each
// probed over IPv4 and over IPv6, on both dataplanes. The full suite:
// go run ./test/e2e/cmd/e2e --ip-family dual.
func TestConformanceDualStackSmoke(t *testing.T) {
	for _, dp := range []string{"iptables", "nftables"} {
		t.Run(dp, func(t *testing.T) {
			cluster.Require(t)
			ctx := context.Background()
			c, err := cluster.New(ctx, cluster.Config{Dataplane: dp, IPFamily: "dual", Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var out bytes.Buffer
			r, err := NewRunner(ctx, c, Options{Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range c.Pods() {
				if !p.IPFor(cluster.IPv4).IsValid() || !p.IPFor(cluster.IPv6).IsValid() {
					t.Fatalf("pod %s: %v, want an IPv4 and an IPv6 address", p.Key(), p.IPs)
				}
			}
			// 0-based: a namespace target, ingress and egress ipBlocks
			// with except, a named port, allow all by 0.0.0.0/0, deny
			// all by 0.0.0.0/31.
			r.opts.Only = []int{0, 21, 100, 149, 204, 211}
			checkRun(t, r, &out, len(r.opts.Only), 2)
		})
	}
}

// TestIPv6Cases: the IPv6 variant of a generated case derives its
// ipBlocks from the IPv6 address (/120 except /124) and turns the literal
// 0.0.0.0/n blocks into ::/n+96 (::/0 for /0), without touching the
// policies of the IPv4 cases (the generator shares some blocks).
func TestIPv6Cases(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0.0.0.0/0", "::/0"}, {"0.0.0.0/31", "::/127"}, {"10.0.0.0/8", "10.0.0.0/8"}, {"fd00::/120", "fd00::/120"},
	} {
		np := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: tc.in, Except: []string{tc.in}}}}}},
			Egress:  []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: tc.in}}}}},
		}}
		got := ipv6Blocks(np)
		if b := got.Spec.Ingress[0].From[0].IPBlock; b.CIDR != tc.want || b.Except[0] != tc.want || got.Spec.Egress[0].To[0].IPBlock.CIDR != tc.want {
			t.Errorf("%s: got %+v / %+v, want %s", tc.in, b, got.Spec.Egress[0].To[0].IPBlock, tc.want)
		}
		if np.Spec.Ingress[0].From[0].IPBlock.CIDR != tc.in {
			t.Errorf("%s: the original policy was changed", tc.in)
		}
	}
	gen := func(ip string) []*generator.TestCase {
		return generator.NewTestCaseGenerator(false, ip, BaseNamespaces, nil, nil).GenerateTestCases()
	}
	v4 := gen("10.224.1.12")
	v6 := gen("fd00:224::1:c")
	if len(v4) != len(v6) {
		t.Fatalf("%d IPv4 cases, %d IPv6 ones", len(v4), len(v6))
	}
	blocks := func(cases []*generator.TestCase, conv bool) map[string]bool {
		seen := map[string]bool{}
		for _, c := range cases {
			for _, st := range c.Steps {
				for _, a := range st.Actions {
					if a.CreatePolicy == nil {
						continue
					}
					np := a.CreatePolicy.Policy
					if conv {
						np = ipv6Blocks(np)
					}
					for _, r := range np.Spec.Ingress {
						for _, p := range r.From {
							if p.IPBlock != nil {
								seen[p.IPBlock.CIDR] = true
								for _, e := range p.IPBlock.Except {
									seen["except "+e] = true
								}
							}
						}
					}
				}
			}
		}
		return seen
	}
	got6 := blocks(v6, true)
	for _, want := range []string{"fd00:224::1:0/120", "except fd00:224::1:0/124", "::/0", "::/127"} {
		if !got6[want] {
			t.Errorf("IPv6 cases lack ipBlock %s: %v", want, got6)
		}
	}
	got4 := blocks(gen("10.224.1.12"), false)
	for _, want := range []string{"10.224.1.0/24", "except 10.224.1.0/28", "0.0.0.0/0", "0.0.0.0/31"} {
		if !got4[want] {
			t.Errorf("IPv4 cases (generated after the IPv6 ones) lack ipBlock %s: %v", want, got4)
		}
	}
}
