//go:build linux

package dptest

import (
	"bytes"
	"context"
	"flag"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// The suite without a kernel: a dataplane whose kernel is a recording fake
// (its Runner or netlink connection), a tracer that runs packets through
// what the dataplane sent, and golden files of the rendered rules.

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// Golden compares got with the file testdata/<name>; -update rewrites it.
func Golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(want, []byte(got)) {
		t.Errorf("%s differs from the golden file (-update rewrites it):\n%s", path, lineDiff(string(want), got))
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want " + wl + "\n  got  " + gl + "\n")
		}
	}
	return b.String()
}

// Traced is a dataplane over a fake kernel, with the tracer of that kernel.
type Traced struct {
	Dataplane dataplane.Dataplane
	// Allowed decides a new connection from what the fake kernel holds.
	Allowed func(policy.Packet) bool
	// Dump prints what the fake kernel holds (for golden files).
	Dump func() string
}

// NewTraced builds a fresh dataplane over a fresh fake kernel.
type NewTraced func(t testing.TB) Traced

// RunGolden programs every case of Cases (a fresh fake kernel each) and
// compares the fake kernel's content with testdata/golden/<case>.txt; the
// tracer must make every decision of the case table and agree with
// policy.State.Evaluate on every probe between the pods and off-cluster.
func RunGolden(t *testing.T, newT NewTraced) {
	tp := Addresses(Pods)
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			tr := newT(t)
			e := tp.EngineFor(c)
			if err := tr.Dataplane.Apply(context.Background(), e.State(), nil); err != nil {
				t.Fatal(err)
			}
			Golden(t, filepath.Join("golden", c.Name+".txt"), tr.Dump())
			for src := -1; src < Pods; src++ {
				for dst := -1; dst < Pods; dst++ {
					for fam := 0; fam < 2 && src != dst; fam++ {
						for _, pp := range translatetest.ProbePorts {
							p := policy.Packet{Src: netip.MustParseAddr(tp.Addr(src, fam)), Dst: netip.MustParseAddr(tp.Addr(dst, fam)), Protocol: policy.Protocol(pp.Proto), Port: uint16(pp.Port)}
							if got, want := tr.Allowed(p), e.State().Evaluate(p).Allowed; got != want {
								t.Errorf("%s -> %s %s/%d: traced %v, Evaluate %v", p.Src, p.Dst, p.Protocol, p.Port, got, want)
							}
						}
					}
				}
			}
			for _, x := range c.Expect {
				for fam := 0; fam < 2; fam++ {
					p := policy.Packet{Src: netip.MustParseAddr(tp.Addr(x.Src, fam)), Dst: netip.MustParseAddr(tp.Addr(x.Dst, fam)), Protocol: x.Proto, Port: uint16(x.Port)}
					if got := tr.Allowed(p); got != x.Allow {
						t.Errorf("pod%d -> pod%d %s/%d IPv%d: traced %v, want %v", x.Src, x.Dst, x.Proto, x.Port, 4+2*fam, got, x.Allow)
					}
				}
			}
		})
	}
}

// RunTracedProperty programs random worlds (translatetest) one after the
// other into one dataplane, alternately as a full state and as the
// incremental engine's changes, and checks that the tracer agrees with
// policy.State.Evaluate on every probe of every world. It returns the
// number of decisions checked.
func RunTracedProperty(t *testing.T, newT NewTraced, worlds int, seed int64) int {
	const pods = 5
	tr := newT(t)
	ctx := context.Background()
	r := rand.New(rand.NewSource(seed))
	rc := rand.New(rand.NewSource(seed + 1))
	checked := 0
	eng := translate.NewEngine(translate.Options{NodeName: NodeName})
	for c := 0; c < worlds; c++ {
		w := translatetest.Random(r, translatetest.PropertyConfig(pods))
		full := c%2 == 0
		// ClusterNetworkPolicies from a generator of their own, so the
		// NetworkPolicy worlds of a seed stay what they were.
		w.ClusterPolicies = translatetest.RandomCluster(rc, translatetest.ClusterConfig{Policies: 4, Networks: translatetest.PropertyConfig(pods).CIDRs})
		LoadWorld(eng, w)
		ch := eng.TakeChanges()
		if full {
			ch = nil
		}
		if err := tr.Dataplane.Apply(ctx, eng.State(), ch); err != nil {
			t.Fatal(err)
		}
		for _, p := range w.Probes() {
			pk := p.Packet()
			want := eng.State().Evaluate(pk).Allowed
			if got := tr.Allowed(pk); got != want {
				t.Fatalf("world %d: %s -> %s %s/%d: traced %v, Evaluate %v\n%s\nkernel:\n%s", c, p.Src, p.Dst, p.Proto, p.Port, got, want, w, tr.Dump())
			}
			checked++
		}
	}
	return checked
}

// RunReconcileFromReading: someone else rewrites the kernel (second, a
// dataplane over the same fake kernel, programs another state); a reading
// of the kernel taken afterwards (dataplane.KernelReader, outside any
// lock in the daemon) makes first's ReconcileRead put back exactly what
// first programmed, and a fresh reading then finds nothing to repair.
func RunReconcileFromReading(t *testing.T, first, second Traced) {
	ctx := context.Background()
	kr, ok := first.Dataplane.(dataplane.KernelReader)
	if !ok {
		t.Fatalf("%T does not read the kernel back on its own", first.Dataplane)
	}
	tp := Addresses(Pods)
	e := tp.Engine(BasicPolicies()...)
	if err := first.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
		t.Fatal(err)
	}
	want := first.Dump()
	other := tp.Engine(BasicPolicies()[:1]...)
	if err := second.Dataplane.Apply(ctx, other.State(), nil); err != nil {
		t.Fatal(err)
	}
	if first.Dump() == want {
		t.Fatal("the second dataplane changed nothing: no drift to repair")
	}
	r, err := kr.ReadKernel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := kr.ReconcileRead(ctx, r); err != nil || n == 0 {
		t.Fatalf("reconcile from the reading: %d repairs, %v; want some", n, err)
	}
	if got := first.Dump(); got != want {
		t.Errorf("after the repair the kernel differs from what was programmed:\n%s", lineDiff(want, got))
	}
	if r, err = kr.ReadKernel(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := kr.ReconcileRead(ctx, r); err != nil || n != 0 {
		t.Fatalf("second reconcile from a reading: %d repairs, %v; want none", n, err)
	}
}
