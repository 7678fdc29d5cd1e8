//go:build linux

package flowlog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/dataplane/dptest"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/iptables"
	"github.com/open-acn/acn/npm/nftables"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// lines collects the recorder's output.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(b []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.Write(b) }

func (l *lines) records(t testing.TB) []flowlog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []flowlog.Record
	for _, s := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if s == "" {
			continue
		}
		var r flowlog.Record
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		out = append(out, r)
	}
	return out
}

type kernelDP struct {
	name string
	make func(t testing.TB, node *netnstest.NS, fl dataplane.FlowLog) dataplane.Dataplane
}

func dataplanes() []kernelDP {
	ipt := func(m iptables.Mode) func(testing.TB, *netnstest.NS, dataplane.FlowLog) dataplane.Dataplane {
		return func(t testing.TB, node *netnstest.NS, fl dataplane.FlowLog) dataplane.Dataplane {
			d, err := iptables.New(context.Background(), iptables.Options{Runner: dataplane.Exec{Netns: node.Path}, Mode: m, FlowLog: fl})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	return []kernelDP{
		{"iptables-nft", ipt(iptables.ModeNFT)},
		{"iptables-legacy", ipt(iptables.ModeLegacy)},
		{"nftables", func(t testing.TB, node *netnstest.NS, fl dataplane.FlowLog) dataplane.Dataplane {
			d, err := nftables.New(nftables.Options{NetNSPath: node.Path, FlowLog: fl})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}},
	}
}

// TestKernelFlowLogs, on every Linux dataplane in a throw-away node
// namespace: every TCP probe between the pods (both families) of the
// basic policies yields exactly the lines State.Evaluate's explanation
// predicts — verdict, direction, policy and rule — and none for a
// namespace that opted out; a reconcile finds no drift with the log rules
// in place; a flood over a low rate limit logs at most burst + rate × time
// lines and the rest are counted as dropped; a recorder restarted (the
// daemon's restart) logs every connection attempted after it is bound.
func TestKernelFlowLogs(t *testing.T) {
	for _, kd := range dataplanes() {
		t.Run(kd.name, func(t *testing.T) {
			tp := dptest.NewTopo(t, dptest.Pods)
			fl := dataplane.FlowLog{Group: 77, Rate: 10000, Burst: 10000}
			dp := kd.make(t, tp.Node, fl)
			eng := translate.NewEngine(translate.Options{NodeName: dptest.NodeName, FlowLog: policy.FlowLogAll})
			nss, pods := tp.Cluster()
			for _, n := range nss {
				if n.Name == "b" {
					n = n.DeepCopy()
					n.Annotations = map[string]string{flowlog.Annotation: "none"} // opted out
				}
				eng.UpsertNamespace(n)
			}
			for _, p := range pods {
				eng.UpsertPod(p)
			}
			for _, p := range dptest.BasicPolicies() {
				eng.UpsertPolicy(p)
			}
			ctx := context.Background()
			if err := dp.Apply(ctx, eng.State(), nil); err != nil {
				t.Fatal(err)
			}
			if n, err := dp.Reconcile(ctx); err != nil || n != 0 {
				t.Fatalf("reconcile right after apply: %d repairs, %v", n, err)
			}
			idx := &flowlog.Index{}
			idx.Update(eng.State().Clone())
			out := &lines{}
			start := func() *flowlog.Recorder {
				r, err := flowlog.Start(flowlog.Options{Node: "node", Group: fl.Group, NetNSPath: tp.Node.Path, Out: out, Dedup: time.Minute, Index: idx})
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			rec := start()
			// A second reader of the same group is refused, naming the key.
			if _, err := flowlog.Start(flowlog.Options{Group: fl.Group, NetNSPath: tp.Node.Path, Out: out}); err == nil || !strings.Contains(err.Error(), "flowLog.nflogGroup 77") {
				t.Errorf("second bind of the group: %v, want an error naming flowLog.nflogGroup", err)
			}
			want := map[string]int{}
			probes := 0
			probe := func(src, dst, port, fam int) {
				s, d := tp.Addr(src, fam), tp.Addr(dst, fam)
				pk := policy.Packet{Src: netip.MustParseAddr(s), Dst: netip.MustParseAddr(d), Protocol: policy.TCP, Port: uint16(port)}
				ok := eng.State().Evaluate(pk).Allowed
				if got := tp.Probe(src, d, policy.TCP, port); got != ok && !(ok && tp.ProbeWant(src, d, policy.TCP, port, true)) {
					t.Errorf("%s -> %s:%d allowed=%v, want %v", s, d, port, got, ok)
				}
				for _, id := range dptest.ExpectedLogs(eng.State(), pk) {
					want[fmt.Sprintf("%s %s->%s %s/%d", id, pk.Src, pk.Dst, pk.Protocol, port)]++
				}
				probes++
			}
			for src := -1; src < dptest.Pods; src++ {
				for dst := 0; dst < dptest.Pods; dst++ {
					for fam := 0; fam < 2 && src != dst; fam++ {
						for _, port := range []int{80, 81} {
							probe(src, dst, port, fam)
						}
					}
				}
			}
			tp.FlushConntrack(t)
			got := waitLines(t, out, len(want))
			if !maps(got, want) {
				t.Errorf("logged lines differ from Evaluate's explanation:\n got  %v\n want %v", keys(got), keys(want))
			}
			checkAttribution(t, out.records(t), eng.State())
			if len(want) == 0 {
				t.Fatal("no probe expected a line: the test checks nothing")
			}
			t.Logf("%d probes, %d lines as Evaluate explains", probes, len(want))

			// Restart: a new reader after the old one closed logs every
			// attempt made after it is bound.
			rec.Close()
			out.mu.Lock()
			out.buf.Reset()
			out.mu.Unlock()
			rec = start()
			deny := 0
			for i := 0; i < 10; i++ {
				if !tp.Probe(-1, tp.Addr(0, 0), policy.TCP, 80) { // denied by a/web, logged
					deny++
				}
			}
			if lines := waitLines(t, out, 1); len(lines) != 1 {
				t.Errorf("after restart: %v, want one line (10 attempts deduplicated)", lines)
			}
			rec.Close() // writes the repeat count
			rs := out.records(t)
			total := 0
			for _, r := range rs {
				total += r.Count
			}
			if total != deny {
				t.Errorf("after restart: the lines count %d attempts, %d were made", total, deny)
			}
		})
	}
}

// TestKernelFlowLogRateLimit: a flood of denied attempts over a low
// limit logs at most burst + rate × elapsed lines; the dataplane counts
// the rest as dropped.
func TestKernelFlowLogRateLimit(t *testing.T) {
	for _, kd := range dataplanes() {
		t.Run(kd.name, func(t *testing.T) {
			tp := dptest.NewTopo(t, dptest.Pods)
			fl := dataplane.FlowLog{Group: 78, Rate: 2, Burst: 5}
			dp := kd.make(t, tp.Node, fl)
			eng := translate.NewEngine(translate.Options{NodeName: dptest.NodeName, FlowLog: policy.FlowLogDeny})
			nss, pods := tp.Cluster()
			for _, n := range nss {
				eng.UpsertNamespace(n)
			}
			for _, p := range pods {
				eng.UpsertPod(p)
			}
			for _, p := range dptest.BasicPolicies() {
				eng.UpsertPolicy(p)
			}
			if err := dp.Apply(context.Background(), eng.State(), nil); err != nil {
				t.Fatal(err)
			}
			out := &lines{}
			idx := &flowlog.Index{}
			idx.Update(eng.State())
			rec, err := flowlog.Start(flowlog.Options{Group: fl.Group, NetNSPath: tp.Node.Path, Out: out, Index: idx})
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Close()
			const attempts = 60
			began := time.Now()
			for i := 0; i < attempts; i++ {
				if tp.ProbeTimeout(2, tp.Addr(0, 0), policy.TCP, 80, 20*time.Millisecond) {
					t.Fatal("a denied probe got through")
				}
			}
			elapsed := time.Since(began).Seconds()
			time.Sleep(300 * time.Millisecond)
			logged := len(out.records(t))
			limit := fl.Burst + int(float64(fl.Rate)*elapsed) + 1
			dropped, err := dp.(dataplane.FlowLogCounter).FlowLogDropped(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d attempts in %.1fs: %d logged (limit %d), %d counted as dropped", attempts, elapsed, logged, limit, dropped)
			if logged > limit || logged < fl.Burst {
				t.Errorf("%d lines logged, want between %d and %d", logged, fl.Burst, limit)
			}
			if int(dropped)+logged != attempts {
				t.Errorf("logged %d + dropped %d != %d attempts", logged, dropped, attempts)
			}
		})
	}
}

// TestKernelFlowLogProperty: random worlds (translatetest) in which each
// namespace gets a random annotation (none, deny, allow, both, malformed,
// or the default all), programmed one after the other: every TCP, UDP
// and SCTP probe between the pods and the off-cluster peer, in both
// families, gives exactly the lines dptest.ExpectedLogs derives from
// State.Evaluate's explanation (verdict, direction, policy, rule), and the
// verdicts equal Evaluate's. The reader is restarted for every world.
func TestKernelFlowLogProperty(t *testing.T) {
	worlds := 4
	if testing.Short() {
		worlds = 2
	}
	modes := []string{"", "none", "deny", "allow", "allow,deny", "bogus"}
	for _, kd := range dataplanes() {
		t.Run(kd.name, func(t *testing.T) {
			tp := dptest.NewTopo(t, dptest.Pods)
			fl := dataplane.FlowLog{Group: 79, Rate: 10000, Burst: 10000}
			dp := kd.make(t, tp.Node, fl)
			ctx := context.Background()
			r := rand.New(rand.NewSource(int64(len(kd.name))))
			eng := translate.NewEngine(translate.Options{NodeName: dptest.NodeName, FlowLog: policy.FlowLogAll})
			lineCount := 0
			// Warm up neighbour discovery (IPv6 especially) before any
			// policy, so a loaded machine does not fail the first world's
			// allowed probes on address resolution.
			for src := -1; src < dptest.Pods; src++ {
				for dst := -1; dst < dptest.Pods; dst++ {
					for fam := 0; fam < 2 && src != dst; fam++ {
						tp.Probe(src, tp.Addr(dst, fam), policy.TCP, 80)
					}
				}
			}
			for c := 0; c < worlds; c++ {
				w := translatetest.Random(r, translatetest.PropertyConfig(dptest.Pods))
				for _, n := range w.Namespaces {
					n = n.DeepCopy()
					if m := modes[r.Intn(len(modes))]; m != "" {
						n.Annotations = map[string]string{flowlog.Annotation: m}
					}
					eng.UpsertNamespace(n)
				}
				for _, p := range w.Pods {
					eng.UpsertPod(p)
				}
				keep := map[string]bool{}
				for _, p := range w.Policies {
					eng.UpsertPolicy(p)
					keep[p.Namespace+"/"+p.Name] = true
				}
				for k := range eng.State().Policies {
					if !keep[k] {
						ns, name, _ := strings.Cut(k, "/")
						eng.DeletePolicy(ns, name)
					}
				}
				ch := eng.TakeChanges()
				if c%2 == 0 {
					ch = nil
				}
				if err := dp.Apply(ctx, eng.State(), ch); err != nil {
					t.Fatal(err)
				}
				st := eng.State().Clone()
				tp.FlushConntrack(t)
				idx := &flowlog.Index{}
				idx.Update(st)
				out := &lines{}
				rec, err := flowlog.Start(flowlog.Options{Group: fl.Group, NetNSPath: tp.Node.Path, Out: out, Dedup: time.Hour, Index: idx})
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]int{}
				var mu sync.Mutex
				var wg sync.WaitGroup
				sem := make(chan struct{}, 16)
				for src := -1; src < dptest.Pods; src++ {
					for dst := -1; dst < dptest.Pods; dst++ {
						for fam := 0; fam < 2 && src != dst; fam++ {
							for _, pp := range translatetest.ProbePorts {
								pk := policy.Packet{Src: netip.MustParseAddr(tp.Addr(src, fam)), Dst: netip.MustParseAddr(tp.Addr(dst, fam)), Protocol: policy.Protocol(pp.Proto), Port: uint16(pp.Port)}
								ok := st.Evaluate(pk).Allowed
								for _, id := range dptest.ExpectedLogs(st, pk) {
									want[fmt.Sprintf("%s %s->%s %s/%d", id, pk.Src, pk.Dst, pk.Protocol, pk.Port)]++
								}
								wg.Add(1)
								sem <- struct{}{}
								go func(src int, pk policy.Packet, ok bool) {
									defer wg.Done()
									if got := tp.ProbeWant(src, pk.Dst.String(), pk.Protocol, int(pk.Port), ok); got != ok {
										mu.Lock()
										t.Errorf("world %d: %s -> %s %s/%d allowed=%v, Evaluate %v", c, pk.Src, pk.Dst, pk.Protocol, pk.Port, got, ok)
										mu.Unlock()
									}
									<-sem
								}(src, pk, ok)
							}
						}
					}
				}
				wg.Wait()
				got := waitLines(t, out, len(want))
				for k := range got {
					got[k] = 1 // the first line of a probe; retries of an allowed one are repeats
				}
				if !maps(got, want) {
					t.Fatalf("world %d: logged lines differ from Evaluate's explanation:\n got  %v\n want %v\n%s", c, keys(got), keys(want), w)
				}
				checkAttribution(t, out.records(t), st)
				lineCount += len(want)
				rec.Close()
			}
			if lineCount == 0 {
				t.Fatal("no line expected in any world: the test checks nothing")
			}
			t.Logf("%d worlds, %d lines as Evaluate explains", worlds, lineCount)
		})
	}
}

// waitLines waits until n lines arrived (or 3 s) and returns them keyed
// "id src->dst PROTO/port".
func waitLines(t testing.TB, out *lines, n int) map[string]int {
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := map[string]int{}
		total := 0
		for _, r := range out.records(t) {
			got[fmt.Sprintf("%s %s->%s %s/%d", r.ID, r.Src, r.Dst, r.Protocol, r.DstPort)] += r.Count
			total++
		}
		if total >= n || time.Now().After(deadline) {
			time.Sleep(100 * time.Millisecond) // and nothing more arrives
			if total2 := len(out.records(t)); total2 == total {
				return got
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkAttribution: each line's verdict, direction, policy and rule are
// the ones its ID names in the state.
func checkAttribution(t testing.TB, rs []flowlog.Record, st *policy.State) {
	for _, r := range rs {
		id, err := flowlog.ParseID(r.ID)
		if err != nil {
			t.Errorf("line with bad id: %+v", r)
			continue
		}
		if (r.Verdict == "allow") != id.Allow || r.Direction != id.Direction.String() || r.Policy == "" || r.Description == "" {
			t.Errorf("line %+v does not match its id", r)
		}
		if id.Allow {
			p := st.Policies[r.Policy]
			if p == nil || r.Rule == nil || *r.Rule != id.Rule || p.Rules(id.Direction)[*r.Rule].Describe() != r.Description {
				t.Errorf("allow line %+v: policy/rule not the state's", r)
			}
		}
	}
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func keys(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s x%d", k, v))
	}
	sort.Strings(out)
	return slices.Clip(out)
}
