package benchfmt

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPercentileNearestRank(t *testing.T) {
	samples := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	cases := []struct {
		p    float64
		want float64
	}{{0, 1}, {10, 1}, {50, 5}, {90, 9}, {99, 10}, {100, 10}}
	for _, tc := range cases {
		if got := Percentile(samples, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty samples must give 0")
	}
	if samples[0] != 5 {
		t.Error("Percentile must not sort the caller's slice")
	}
}

func TestJSONRoundTripAndTable(t *testing.T) {
	rs := []Result{
		{Name: "cni_add_latency_p50", Value: 12.5, Unit: "ms", Params: map[string]string{"mode": "bridge", "parallel": "16"}},
		{Name: "npm_rules_per_policy", Value: 4, Unit: "rules"},
	}
	path := filepath.Join(t.TempDir(), "out", "r.json")
	if err := WriteJSON(path, rs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rs) {
		t.Fatalf("round trip: got %+v want %+v", got, rs)
	}
	var buf bytes.Buffer
	PrintTable(&buf, rs)
	out := buf.String()
	for _, want := range []string{"cni_add_latency_p50", "12.500", "mode=bridge parallel=16", "npm_rules_per_policy", " 4 "} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
