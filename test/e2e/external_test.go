//go:build linux

package e2e

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestExpectExternal(t *testing.T) {
	local, cl := corev1.ServiceExternalTrafficPolicyLocal, corev1.ServiceExternalTrafficPolicyCluster
	for _, tc := range []struct {
		policy, client string
		etp            corev1.ServiceExternalTrafficPolicy
		where          string
		want, fc       bool
	}{
		{PolicyClientOnly, "allowed", local, "receiving node", true, false},
		{PolicyClientOnly, "denied", local, "receiving node", false, false},
		{PolicyClientOnly, "allowed", local, "other node", false, false},
		{PolicyClientNodes, "allowed", local, "other node", false, false},
		{PolicyClientOnly, "allowed", cl, "receiving node", true, false},
		{PolicyClientOnly, "denied", cl, "receiving node", false, false},
		{PolicyClientOnly, "allowed", cl, "other node", true, true},
		{PolicyClientOnly, "denied", cl, "other node", false, false},
		{PolicyClientNodes, "allowed", cl, "other node", true, false},
		{PolicyClientNodes, "denied", cl, "other node", false, false},
	} {
		got, _, fc := expectExternal(tc.policy, tc.client, tc.etp, tc.where)
		if got != tc.want || fc != tc.fc {
			t.Errorf("%+v: expected %v fail-closed %v, want %v %v", tc, got, fc, tc.want, tc.fc)
		}
	}
}

// TestRenderExternalCounts: a denied client through is always a mismatch;
// the allowed client blocked counts as fail closed only in the documented
// combination.
func TestRenderExternalCounts(t *testing.T) {
	rows := []ExternalRow{
		{Client: "allowed", Expected: true, Observed: true},
		{Client: "allowed", Expected: true, Observed: false, FailClosed: true},
		{Client: "allowed", Expected: true, Observed: false},
		{Client: "denied", Expected: false, Observed: true},
	}
	var out bytes.Buffer
	bad, fc := RenderExternal(rows, "x", &out)
	if bad != 2 || fc != 1 {
		t.Fatalf("bad %d fail-closed %d, want 2 1:\n%s", bad, fc, out.String())
	}
	if strings.Count(out.String(), "MISMATCH") != 2 || !strings.Contains(out.String(), "fail closed") {
		t.Fatalf("table:\n%s", out.String())
	}
}
