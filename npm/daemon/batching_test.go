package daemon

import (
	"context"
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
		backlog    bool          // other keys were queued then
		took       time.Duration // transaction time
		wantDelay  time.Duration
		wantWindow time.Duration // after delay
	}
	tests := []struct {
		name  string
		max   time.Duration
		steps []step
	}{
		{"first event applies at once", 20 * ms, []step{{0, false, ms, 0, ms}}},
		{"events without a backlog apply at once, however close together", 20 * ms, []step{
			{0, false, ms, 0, ms}, {ms, false, ms, 0, ms}, {2 * ms, false, 0, 0, ms}, {2 * ms, false, 3 * ms, 0, ms},
		}},
		{"a backlog widens the window up to the maximum", 20 * ms, []step{
			{0, false, ms, 0, ms},
			{ms, true, 0, 2 * ms, 2 * ms},     // right after the end: wait out the doubled window
			{2 * ms, true, 0, 4 * ms, 4 * ms}, // taken at 3 ms (the previous wait)
			{7 * ms, true, 0, 8 * ms, 8 * ms},
			{15 * ms, true, 0, 16 * ms, 16 * ms},
			{31 * ms, true, 0, 20 * ms, 20 * ms}, // capped
			{time.Second, true, 0, 0, 20 * ms},   // the window passed long ago: at once
		}},
		{"the window shrinks back when the backlog is gone", 20 * ms, []step{
			{0, true, 0, 0, 2 * ms}, {0, true, 0, 4 * ms, 4 * ms}, {2 * ms, true, 0, 8 * ms, 8 * ms},
			{6 * ms, false, 0, 0, 4 * ms}, {6 * ms, false, 0, 0, 2 * ms}, {6 * ms, false, 0, 0, ms}, {6 * ms, false, 0, 0, ms},
		}},
		{"window 0 never waits", 0, []step{{0, true, 0, 0, 0}, {0, true, 0, 0, 0}, {0, false, 0, 0, 0}}},
		{"a maximum below the minimum step is the window", 500 * time.Microsecond, []step{
			{0, true, 0, 0, 500 * time.Microsecond}, {0, true, 0, 500 * time.Microsecond, 500 * time.Microsecond},
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
				got := b.delay(clock, s.backlog)
				if got != s.wantDelay || b.window != s.wantWindow {
					t.Fatalf("step %d (key at +%v, backlog %v): delay %v window %v, want delay %v window %v", i, clock.Sub(t0), s.backlog, got, b.window, s.wantDelay, s.wantWindow)
				}
				clock = clock.Add(got + s.took)
				b.done(clock)
			}
		})
	}
}

// TestSustainedLoadBoundsTransactions: keys every 100µs for a second
// (10,000 events), so there is always a backlog, yield about one
// transaction per maximum window.
func TestSustainedLoadBoundsTransactions(t *testing.T) {
	b := newBatching(20 * time.Millisecond)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := now.Add(time.Second)
	transactions := 0
	for now.Before(end) {
		now = now.Add(b.delay(now, true))
		transactions++
		now = now.Add(100 * time.Microsecond) // the transaction, during which the next keys arrive
		b.done(now)
	}
	if transactions > 60 {
		t.Fatalf("%d transactions in one second of back-to-back events, want about 1/20ms (≤ 60)", transactions)
	}
}

// TestWorkerAppliesAtOnceWithoutBacklogAndBatchesABacklog drives the real
// worker with a fake clock: events that find nothing else queued are
// programmed without the clock moving, even right after a transaction (a
// closed loop never waits); events that queued up behind a slow
// transaction wait for the window and share one transaction.
func TestWorkerAppliesAtOnceWithoutBacklogAndBatchesABacklog(t *testing.T) {
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
	ctx := context.Background()
	create := func(name, ip string) {
		t.Helper()
		if _, err := client.CoreV1().Pods("prod").Create(ctx, pod("prod", name, "node-a", ip, map[string]string{"app": name}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("a", "10.0.0.5")
	eventually(t, "an event programmed without the clock moving", func() bool { return applies() == 2 })
	// Same fake instant, right after that transaction: no backlog, no wait.
	create("b", "10.0.0.6")
	eventually(t, "the next event of a closed loop programmed at once", func() bool { return applies() == 3 })

	// A slow transaction: two events queue up behind it.
	hold := make(chan struct{})
	dp.mu.Lock()
	dp.hold = hold
	dp.mu.Unlock()
	create("c", "10.0.0.7")
	eventually(t, "the worker in the slow transaction", func() bool { return applies() == 3 && h.d.queue.Len() == 0 && dp.holding(hold) })
	create("d", "10.0.0.8")
	create("e", "10.0.0.9")
	eventually(t, "two events queued", func() bool { return h.d.queue.Len() == 2 })
	dp.mu.Lock()
	dp.hold = nil
	dp.mu.Unlock()
	hold <- struct{}{}
	eventually(t, "the worker waiting on the window with the backlog", clk.HasWaiters)
	time.Sleep(50 * time.Millisecond)
	if n := applies(); n != 4 {
		t.Fatalf("the backlog was programmed before the window passed (%d transactions, want 4)", n)
	}
	clk.Step(20 * time.Millisecond)
	eventually(t, "the backlog programmed in one transaction once the window passed", func() bool { return applies() == 5 })
	time.Sleep(50 * time.Millisecond)
	if n := applies(); n != 5 {
		t.Fatalf("%d transactions, want 5: the two queued events share one", n)
	}
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
	createRemotePods(t, h, "5 remote events enforced without the clock moving")
	if clk.HasWaiters() || applies() != 1 {
		t.Fatalf("remote-only events: worker waiting %v, %d transactions (want none waiting, 1: the initial sync)", clk.HasWaiters(), applies())
	}
	// Same fake instant: a remote client joins the local policy's set.
	if _, err := client.CoreV1().Pods("prod").Create(ctx, pod("prod", "client", "node-b", "10.0.1.30", map[string]string{"app": "client"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the kernel-changing event programmed at once (the window was not widened)", func() bool { return applies() == 2 })
}
