//go:build linux

package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/test/cluster"
)

// readFlows returns the node's flow-log lines.
func readFlows(t *testing.T, path string) []flowlog.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []flowlog.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r flowlog.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("flow log line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestFlowLogsThroughTheAgent: the azure-npm binary on a node of the
// simulated cluster, a namespace annotated to log denies: a denied attempt
// is one line on the destination's node naming both pods, the policy and
// its default deny; an allowed one is not logged; after the agent is
// killed and restarted, an attempt made once it is ready is logged too.
func TestFlowLogsThroughTheAgent(t *testing.T) {
	c := newCluster(t)
	must := mustFor(t)
	ctx := context.Background()
	must(c.CreateNamespace(ctx, "x", nil))
	must(c.AnnotateNamespace(ctx, "x", flowlog.Annotation, "deny"))
	a, wa, err := c.CreatePod(ctx, c.Nodes[0], "x", "a", map[string]string{"app": "a"}, cluster.DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	b, wb, err := c.CreatePod(ctx, c.Nodes[1], "x", "b", map[string]string{"app": "b"}, cluster.DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	wait(t, c, wa, wb, must(c.CreatePolicy(ctx, denyIngress("x", "deny-b", map[string]string{"app": "b"}))))
	if !c.Probe(b, a.IP, 80, probe.TCP, time.Second) {
		t.Fatal("b -> a must be allowed (a is not isolated)")
	}
	denied := func(port int) []flowlog.Record {
		if c.Probe(a, b.IP, port, probe.TCP, probeTimeout) {
			t.Fatal("a -> b got through deny-b")
		}
		var got []flowlog.Record
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			got = nil
			for _, r := range readFlows(t, c.Nodes[1].NPMFlowLog()) {
				if r.DstPort == uint16(port) {
					got = append(got, r)
				}
			}
			if len(got) > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return got
	}
	check := func(when string, got []flowlog.Record, port int) {
		t.Helper()
		if len(got) != 1 {
			t.Fatalf("%s: %d lines for a -> b:%d, want 1: %+v", when, len(got), port, got)
		}
		r := got[0]
		want := fmt.Sprintf("deny ingress x/deny-b x/a x/b %s %s", a.IP, b.IP)
		if s := strings.Join([]string{r.Verdict, r.Direction, r.Policy, r.SrcPod, r.DstPod, r.Src, r.Dst}, " "); s != want || r.Rule != nil || r.Node != c.Nodes[1].Name || r.Description != "no rule of x/deny-b allows it" {
			t.Errorf("%s: line %+v, want %q on %s", when, r, want, c.Nodes[1].Name)
		}
	}
	check("first attempt", denied(80), 80)
	for _, r := range readFlows(t, c.Nodes[0].NPMFlowLog()) {
		t.Errorf("node %s logged %+v: nothing is isolated there", c.Nodes[0].Name, r)
	}
	c.Nodes[1].StopNPM(true)
	if err := c.Nodes[1].StartNPM(ctx); err != nil {
		t.Fatal(err)
	}
	check("after kill -9 and restart", denied(81), 81)
}
