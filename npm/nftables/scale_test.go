//go:build linux

package nftables

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/translate"
)

// BenchmarkKernelLabelChange is the transaction of a local pod's label
// change in the reference world (scaleworld.Default: 10,000 pods, 1,000
// policies, 250 local pods): the pod moves between dispatch groups.
func BenchmarkKernelLabelChange(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.New(b, "nftscale")
	d, err := New(Options{NetNSPath: ns.Path, Logger: zaptest.NewLogger(b, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		b.Fatal(err)
	}
	cfg := scaleworld.Default("bench-node")
	w := scaleworld.Build(cfg)
	e := translate.NewEngine(translate.Options{NodeName: cfg.Node})
	for _, n := range w.Namespaces {
		e.UpsertNamespace(n)
	}
	var local []int
	for i, p := range w.Pods {
		e.UpsertPod(p)
		if p.Spec.NodeName == cfg.Node {
			local = append(local, i)
		}
	}
	for _, p := range w.Policies {
		e.UpsertPolicy(p)
	}
	var enf dataplane.Enforced
	ctx := context.Background()
	apply := func() {
		st, ch := enf.Project(e.State(), e.TakeChanges())
		if err := d.Apply(ctx, st, ch); err != nil {
			b.Fatal(err)
		}
		enf.Commit()
	}
	apply()
	if len(local) != cfg.Local || d.RuleCount() == 0 {
		b.Fatalf("%d local pods, %d rules", len(local), d.RuleCount())
	}
	// as test/bench/daemon: new local pods in ns1, then each one's labels
	// change once
	const n = 200
	var pods []*corev1.Pod
	for i := 0; i < n; i++ {
		p := scaleworld.Pod("ns1", fmt.Sprintf("new-%d", i), fmt.Sprintf("10.250.%d.%d", i/200, i%200+2), map[string]string{"app": "app-3", "tier": "api"})
		p.Spec.NodeName = cfg.Node
		e.UpsertPod(p)
		apply()
		pods = append(pods, p)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := pods[i%n].DeepCopy()
		p.Labels = map[string]string{"app": "app-4", "tier": "db"}
		if i/n%2 == 1 {
			p.Labels = map[string]string{"app": "app-3", "tier": "api"}
		}
		e.UpsertPod(p)
		apply()
	}
	b.StopTimer()
	// the change reached the kernel: the pod's dispatch element follows
	// its labels
	ip := netip.MustParseAddr(pods[0].Status.PodIP)
	el, ok := d.have.sets[MapIngress4].elems[elemID(addrKey(ip), false)]
	if !ok {
		b.Fatalf("%s is not in %s", ip, MapIngress4)
	}
	b.Logf("%s goes to %s", ip, el.chain)
}
