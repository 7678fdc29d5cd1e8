//go:build linux

package realcluster

import (
	"strings"
	"testing"
)

func TestParseGoTest(t *testing.T) {
	out := `=== RUN   TestConformance
=== RUN   TestConformance/CNPAdminTierIngressTCP
=== RUN   TestConformance/CNPAdminTierGress
=== RUN   TestConformance/CNPAdminTierGress/Should_support
    helper.go:71: FAILED Command was [/agnhost connect --timeout=3s --protocol=sctp 10.224.2.15:9003]
=== RUN   TestConformance/CNPBaselineTierEgressUDP
    helper.go:71: FAILED Command was [/agnhost connect --timeout=3s --protocol=sctp 10.224.2.15:9003]
    helper.go:71: FAILED Command was [/agnhost connect --timeout=3s --protocol=udp 10.224.2.15:53]
=== RUN   TestConformance/CNPAdminTierPriorityField
--- FAIL: TestConformance (50.01s)
    --- PASS: TestConformance/CNPAdminTierIngressTCP (12.01s)
        --- PASS: TestConformance/CNPAdminTierIngressTCP/Should_support (3.00s)
    --- FAIL: TestConformance/CNPAdminTierGress (9.00s)
        --- FAIL: TestConformance/CNPAdminTierGress/Should_support (9.00s)
    --- FAIL: TestConformance/CNPBaselineTierEgressUDP (30.00s)
    --- SKIP: TestConformance/CNPAdminTierEgressNodePeers (0.00s)
    --- PASS: TestConformance/CNPAdminTierPriorityField (8.00s)
`
	got := ParseGoTest(strings.NewReader(out))
	if got.Passed != 2 || got.Failed != 1 || got.SCTPOnly != 1 || len(got.FailedTests) != 1 || got.FailedTests[0] != "CNPBaselineTierEgressUDP" {
		t.Fatalf("got %+v, want 2 passed, 1 failed (CNPBaselineTierEgressUDP), 1 failed only on SCTP", got)
	}
}
