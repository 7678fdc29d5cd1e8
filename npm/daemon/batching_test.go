package daemon

import (
	"context"
	"fmt"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/open-acn/acn/npm/config"
)

func TestBatchingPolicy(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		arrive     time.Duration // first key of the batch taken, after t0
		took       time.Duration // transaction time
		wantDelay  time.Duration
		wantWindow time.Duration // after delay
	}
	tests := []struct {
		name  string
		max   time.Duration
		steps []step
	}{
		{"first event applies at once", 20 * ms, []step{{0, ms, 0, ms}}},
		{"idle events apply at once and keep the window small", 20 * ms, []step{
			{0, ms, 0, ms}, {10 * ms, ms, 0, ms}, {20 * ms, ms, 0, ms}, {100 * ms, 3 * ms, 0, ms},
		}},
		{"events queueing up widen the window up to the maximum", 20 * ms, []step{
			{0, ms, 0, ms},
			{ms, 0, ms, 2 * ms},         // 1 ms after the end: wait out 1 ms, window 2
			{2 * ms, 0, 2 * ms, 4 * ms}, // waited to 2 ms, ended at 2 ms: next key at once
			{4 * ms, 0, 4 * ms, 8 * ms},
			{8 * ms, 0, 8 * ms, 16 * ms},
			{16 * ms, 0, 16 * ms, 20 * ms},
			{32 * ms, 0, 20 * ms, 20 * ms}, // capped
		}},
		{"the window shrinks back when events stop queueing", 20 * ms, []step{
			{0, 0, 0, ms}, {0, 0, ms, 2 * ms}, {ms, 0, 2 * ms, 4 * ms}, {3 * ms, 0, 4 * ms, 8 * ms},
			{time.Second, 0, 0, 4 * ms}, {2 * time.Second, 0, 0, 2 * ms}, {3 * time.Second, 0, 0, ms}, {4 * time.Second, 0, 0, ms},
		}},
		{"window 0 never waits", 0, []step{{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}},
		{"a maximum below the minimum step is the window", 500 * time.Microsecond, []step{
			{0, 0, 0, 500 * time.Microsecond}, {0, 0, 500 * time.Microsecond, 500 * time.Microsecond},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatching(tt.max)
			clock := t0
			for i, s := range tt.steps {
				if at := t0.Add(s.arrive); at.After(clock) {
					clock = at
				}
				got := b.delay(clock)
				if got != s.wantDelay || b.window != s.wantWindow {
					t.Fatalf("step %d (key at +%v): delay %v window %v, want delay %v window %v", i, clock.Sub(t0), got, b.window, s.wantDelay, s.wantWindow)
				}
				clock = clock.Add(got + s.took)
				b.done(clock)
			}
		})
	}
}

// TestSustainedLoadBoundsTransactions: a key every 100µs for a second
// (10,000 events) yields about one transaction per maximum window.
func TestSustainedLoadBoundsTransactions(t *testing.T) {
	b := newBatching(20 * time.Millisecond)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := now.Add(time.Second)
	transactions := 0
	for now.Before(end) {
		now = now.Add(b.delay(now))
		transactions++
		now = now.Add(100 * time.Microsecond) // the transaction, during which the next key arrives
		b.done(now)
	}
	if transactions > 60 {
		t.Fatalf("%d transactions in one second of back-to-back events, want about 1/20ms (≤ 60)", transactions)
	}
}

// TestWorkerAppliesAtOnceWhenIdleAndBatchesWhenBusy drives the real worker
// with a fake clock: an event on an idle node is programmed without the
// clock moving; one that follows a transaction inside the window waits for it.
func TestWorkerAppliesAtOnceWhenIdleAndBatchesWhenBusy(t *testing.T) {
	client := fake.NewSimpleClientset(ns("prod", nil), denyAll("prod"))
	dp := &recordingDataplane{}
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg := testConfig()
	cfg.BatchWindow = config.Duration(20 * time.Millisecond)
	h := startWithClock(t, cfg, client, dp, clk)
	eventually(t, "ready", h.d.Ready)
	applies := func() int { _, n, _ := dp.last(); return n }
	if n := applies(); n != 1 {
		t.Fatalf("initial sync: %d transactions, want 1 (at once, no wait)", n)
	}

	clk.Step(time.Second) // idle
	if _, err := client.CoreV1().Pods("prod").Create(context.Background(), pod("prod", "a", "node-a", "10.0.0.5", map[string]string{"app": "a"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the idle event programmed without the clock moving", func() bool { return applies() == 2 })

	// Same fake instant: inside the window of the transaction just made.
	if _, err := client.CoreV1().Pods("prod").Create(context.Background(), pod("prod", "b", "node-a", "10.0.0.6", map[string]string{"app": "b"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the worker waiting on the window", clk.HasWaiters)
	time.Sleep(50 * time.Millisecond)
	if n := applies(); n != 2 {
		t.Fatalf("the event inside the window was programmed before the window passed (%d transactions)", n)
	}
	clk.Step(20 * time.Millisecond)
	eventually(t, "the batched event programmed once the window passed", func() bool { return applies() == 3 })
}

// TestEventsThatChangeNoKernelObjectNeitherWaitNorWidenTheWindow: events of
// other nodes' pods that change only sets no local pod's policy uses are
// enforced at once, however close together, and do not make the next
// kernel-changing event wait: the window paces transactions only.
func TestEventsThatChangeNoKernelObjectNeitherWaitNorWidenTheWindow(t *testing.T) {
	sel := func(ns, name, target, peer string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": target}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": peer}}}}}}}}
	}
	client := fake.NewSimpleClientset(ns("prod", nil), ns("other", nil),
		pod("prod", "web", "node-a", "10.0.0.5", map[string]string{"app": "web"}),
		sel("prod", "web-from-client", "web", "client"), sel("other", "db-from-batch", "db", "batch"))
	dp := &recordingDataplane{}
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg := testConfig()
	cfg.BatchWindow = config.Duration(20 * time.Millisecond)
	h := startWithClock(t, cfg, client, dp, clk)
	eventually(t, "ready", h.d.Ready)
	applies := func() int { _, n, _ := dp.last(); return n }
	clk.Step(time.Second)
	ctx := context.Background()
	var keys []string
	for i := 0; i < 5; i++ {
		p := pod("other", fmt.Sprintf("batch%d", i), "node-b", fmt.Sprintf("10.0.1.%d", 10+i), map[string]string{"app": "batch"})
		if _, err := client.CoreV1().Pods("other").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, "pod/other/"+p.Name)
	}
	eventually(t, "5 remote events enforced without the clock moving", func() bool {
		for _, k := range keys {
			if o := h.d.Object(k); !o.Present || o.Pending {
				return false
			}
		}
		return true
	})
	if clk.HasWaiters() || applies() != 1 {
		t.Fatalf("remote-only events: worker waiting %v, %d transactions (want none waiting, 1: the initial sync)", clk.HasWaiters(), applies())
	}
	// Same fake instant: a remote client joins the local policy's set.
	if _, err := client.CoreV1().Pods("prod").Create(ctx, pod("prod", "client", "node-b", "10.0.1.30", map[string]string{"app": "client"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the kernel-changing event programmed at once (the window was not widened)", func() bool { return applies() == 2 })
}
