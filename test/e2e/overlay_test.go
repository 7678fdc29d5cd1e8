//go:build linux

package e2e

import (
	"bytes"
	"context"
	"testing"

	"github.com/open-acn/acn/test/cluster"
)

// TestConformanceOverlaySmoke runs 5 of the 230 generated cases (every
// 46th) on a two-node cluster in overlay CNI mode (pods on 10.244.i.0/24
// from the Node objects, real pod IPs across nodes), iptables dataplane.
// The full suite: go run ./test/e2e/cmd/e2e --cni overlay.
func TestConformanceOverlaySmoke(t *testing.T) {
	cluster.Require(t)
	ctx := context.Background()
	c, err := cluster.New(ctx, cluster.Config{CNIMode: "overlay", Dataplane: "iptables", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range c.Nodes {
		if n.PodPrefix.String() != "10.244."+string(rune('0'+n.Index))+".0/24" {
			t.Fatalf("%s block %s", n.Name, n.PodPrefix)
		}
	}
	var out bytes.Buffer
	r, err := NewRunner(ctx, c, Options{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Pods() {
		if !c.Nodes[p.Node.Index].PodPrefix.Contains(p.IP) {
			t.Fatalf("pod %s has %s, not from its node's block %s", p.Key(), p.IP, c.Nodes[p.Node.Index].PodPrefix)
		}
	}
	var only []int
	for i := 0; i < len(r.GeneratedCases()); i += 46 {
		only = append(only, i)
	}
	r.opts.Only = only
	checkRun(t, r, &out, len(only), 1)
}
