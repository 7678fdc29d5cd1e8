//go:build linux

package realcluster

import (
	"strings"
	"testing"
)

func TestParseGoTest(t *testing.T) {
	out := `=== RUN   TestConformance
    --- PASS: TestConformance/CNPAdminTierIngressTCP (12.01s)
        --- PASS: TestConformance/CNPAdminTierIngressTCP/Should_support (3.00s)
    --- FAIL: TestConformance/CNPBaselineTierEgressUDP (30.00s)
    --- SKIP: TestConformance/CNPAdminTierEgressNodePeers (0.00s)
    --- PASS: TestConformance/CNPAdminTierPriorityField (8.00s)
--- FAIL: TestConformance (50.01s)
`
	if got := ParseGoTest(strings.NewReader(out)); got.Passed != 2 || got.Failed != 1 {
		t.Fatalf("got %+v, want 2 passed, 1 failed", got)
	}
}
