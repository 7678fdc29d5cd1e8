package flowlog

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/open-acn/acn/npm/policy"
)

func testState() *policy.State {
	st := policy.NewState()
	st.Policies["ns/web"] = &policy.Policy{Namespace: "ns", Name: "web", Ingress: true,
		IngressRules: []policy.Rule{{Comment: "from pods in ns ns with app=cli", Ports: []policy.Port{{Protocol: policy.TCP, Port: 80}}}}}
	st.Endpoints["ns/web-1"] = &policy.Endpoint{Namespace: "ns", Name: "web-1", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Ingress: []string{"ns/web"}}
	return st
}

// TestRecorderLines: an NFLOG message becomes one attributed JSON line;
// identical attempts within the window add no line until the window ends,
// then one line with their count; the verdict metric counts every attempt
// per policy; a message whose ID is not azure-npm's is ignored; the
// dropped counter adds a kernel counter that restarted from zero.
func TestRecorderLines(t *testing.T) {
	st := testState()
	idx := &Index{}
	idx.Update(st)
	var out bytes.Buffer
	reg := prometheus.NewRegistry()
	kernel := []uint64{5, 9, 2, 2}
	r, err := newRecorder(Options{Node: "n1", Out: &out, Dedup: time.Second, Index: idx, Registerer: reg,
		Pod: func(a netip.Addr) (string, bool) {
			return map[string]string{"10.0.0.2": "ns/web-1", "10.0.0.3": "ns/cli"}[a.String()], a.String() != "10.0.0.9"
		},
		Dropped: func(context.Context) (uint64, error) { v := kernel[0]; kernel = kernel[1:]; return v, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	allow := Packet{Time: t0, Prefix: RuleID("ns/web", policy.Ingress, 0), Src: netip.MustParseAddr("10.0.0.3"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 6, SrcPort: 40000, DstPort: 80}
	deny := allow
	deny.Prefix, deny.DstPort = DenyID(st.Groups(policy.Ingress)[0]), 81
	r.handle(allow)
	r.handle(deny)
	for i := 1; i <= 3; i++ {
		again := deny
		again.Time, again.SrcPort = t0.Add(time.Duration(i)*100*time.Millisecond), uint16(40000+i)
		r.handle(again)
	}
	r.handle(Packet{Time: t0, Prefix: "someone else's prefix", Src: allow.Src, Dst: allow.Dst})
	r.flush(t0.Add(500 * time.Millisecond)) // within the window: nothing
	r.flush(t0.Add(2 * time.Second))
	var recs []Record
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec Record
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		recs = append(recs, rec)
	}
	if len(recs) != 3 {
		t.Fatalf("want 3 lines (allow, deny, deny's repeats), got:\n%s", out.String())
	}
	a, d, rep := recs[0], recs[1], recs[2]
	if a.Verdict != "allow" || a.Direction != "ingress" || a.Policy != "ns/web" || a.Rule == nil || *a.Rule != 0 ||
		a.Description != "from pods in ns ns with app=cli on 80/TCP" || a.SrcPod != "ns/cli" || a.DstPod != "ns/web-1" ||
		a.Protocol != "TCP" || a.DstPort != 80 || a.Node != "n1" || a.Count != 1 || a.Namespace != "ns" {
		t.Errorf("allow line: %+v", a)
	}
	if d.Verdict != "deny" || d.Policy != "ns/web" || d.Rule != nil || d.Description != "no rule of ns/web allows it" || d.Count != 1 || d.Repeat {
		t.Errorf("deny line: %+v", d)
	}
	if !rep.Repeat || rep.Count != 3 || rep.ID != d.ID {
		t.Errorf("repeat line: %+v, want 3 repeats of %s", rep, d.ID)
	}
	if got := r.Dropped(); got != 5 {
		t.Errorf("dropped %d, want 5", got)
	}
	if got := r.Dropped(); got != 9 {
		t.Errorf("dropped %d, want 9", got)
	}
	if got := r.Dropped(); got != 11 { // the kernel's counter restarted: 9 + 2
		t.Errorf("dropped %d after a kernel reset, want 11", got)
	}
	if got := counterValue(t, reg, "npm_flow_verdicts_total", "deny"); got != 4 {
		t.Errorf("npm_flow_verdicts_total deny = %v, want 4", got)
	}
	if !strings.Contains(Format(d), "DENY  ingress ns/cli 10.0.0.3:40000 -> ns/web-1 10.0.0.2:81/TCP  ns/web default deny: no rule of ns/web allows it") {
		t.Errorf("Format: %q", Format(d))
	}
	if !strings.Contains(Format(rep), "(3 more such attempts)") {
		t.Errorf("Format of a repeat: %q", Format(rep))
	}

	// azure-npm flows: filters on verdict and namespace.
	path := filepath.Join(t.TempDir(), "flows.log")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    Filter
		want int
	}{{Filter{}, 3}, {Filter{Verdict: "deny"}, 2}, {Filter{Verdict: "allow"}, 1}, {Filter{Namespace: "ns"}, 3}, {Filter{Namespace: "other"}, 0}} {
		var b bytes.Buffer
		if err := Print(context.Background(), path, c.f, false, &b); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(b.String(), "\n"); n != c.want {
			t.Errorf("filter %+v: %d lines, want %d:\n%s", c.f, n, c.want, b.String())
		}
	}
}

// counterValue is the value of the series of a counter whose verdict
// label is verdict.
func counterValue(t *testing.T, reg *prometheus.Registry, name, verdict string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "verdict" && l.GetValue() == verdict {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
