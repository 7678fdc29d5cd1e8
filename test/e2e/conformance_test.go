//go:build linux

package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

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
	rep, err := r.Run(ctx, dataplane)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed > 0 || rep.Passed != len(only) {
		t.Fatalf("%d passed, %d failed of %d: %v", rep.Passed, rep.Failed, len(only), rep.Failures)
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
