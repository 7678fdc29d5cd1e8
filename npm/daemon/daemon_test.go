package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/explain"
	"github.com/open-acn/acn/npm/localsock"
	"github.com/open-acn/acn/npm/policy"
)

// recordingDataplane remembers every Apply and can be told to fail.
type recordingDataplane struct {
	mu        sync.Mutex
	applies   int
	failNext  int
	endpoints []map[string]policy.Endpoint // endpoint copies per successful Apply
	policies  []string                     // policy keys of the last successful Apply
	members   int                          // set members of the last successful Apply
	repairs   int
	cleanups  int
	// hold, when set, makes Apply wait for a value on it first (a slow
	// transaction, during which events queue up).
	hold chan struct{}
	held chan struct{} // the hold an Apply is waiting on
}

// holding reports whether an Apply is waiting on hold.
func (r *recordingDataplane) holding(hold chan struct{}) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held == hold
}

func (r *recordingDataplane) Apply(_ context.Context, st *policy.State, _ *policy.Changes) error {
	r.mu.Lock()
	hold := r.hold
	r.mu.Unlock()
	if hold != nil {
		r.mu.Lock()
		r.held = hold
		r.mu.Unlock()
		<-hold
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = nil
	r.applies++
	if r.failNext > 0 {
		r.failNext--
		return errors.New("injected: iptables-restore exited 1")
	}
	eps := map[string]policy.Endpoint{}
	for k, e := range st.Endpoints {
		eps[k] = *e
	}
	r.endpoints = append(r.endpoints, eps)
	r.policies = slices.Sorted(maps.Keys(st.Policies))
	r.members = 0
	for _, s := range st.Sets {
		r.members += len(s.Members)
	}
	return nil
}
func (r *recordingDataplane) Reconcile(context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.repairs
	r.repairs = 0
	return n, nil
}
func (r *recordingDataplane) Cleanup(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups++
	return nil
}
func (r *recordingDataplane) Objects(k string) []dataplane.Object {
	return []dataplane.Object{{Kind: "chain", Name: "NPM-TEST-" + strings.ReplaceAll(k, "/", "-"), Comment: "test chain"}}
}
func (r *recordingDataplane) RuleCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.endpoints) == 0 {
		return 0
	}
	return 100 + len(r.endpoints[len(r.endpoints)-1]) // a count the test can recognise
}
func (r *recordingDataplane) last() (map[string]policy.Endpoint, int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.endpoints) == 0 {
		return nil, r.applies, 0
	}
	return r.endpoints[len(r.endpoints)-1], r.applies, len(r.endpoints)
}

func testConfig() config.Config {
	c := config.Default()
	c.NodeName = "node-a"
	c.MetricsAddr = "127.0.0.1:0"
	c.BatchWindow = config.Duration(10 * time.Millisecond)
	c.ReconcileInterval = config.Duration(time.Hour)
	return c
}

func ns(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func pod(ns, name, node, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "i", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func denyAll(ns string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny-all"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
}

type harness struct {
	d      *Daemon
	dp     *recordingDataplane
	client kubernetes.Interface
	addr   string // network listener
	socket string // local socket
	local  *http.Client
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, client kubernetes.Interface, dp *recordingDataplane, previous ...dataplane.Dataplane) *harness {
	t.Helper()
	return startWith(t, testConfig(), client, dp, previous...)
}

func startWith(t *testing.T, cfg config.Config, client kubernetes.Interface, dp *recordingDataplane, previous ...dataplane.Dataplane) *harness {
	t.Helper()
	return startWithClock(t, cfg, client, dp, nil, previous...)
}

func startWithClock(t *testing.T, cfg config.Config, client kubernetes.Interface, dp *recordingDataplane, clk clock.Clock, previous ...dataplane.Dataplane) *harness {
	t.Helper()
	return startDataplane(t, cfg, client, dp, dp, clk, previous...)
}

// startDataplane runs the daemon over impl, a dataplane built around the
// recording one (dp).
func startDataplane(t *testing.T, cfg config.Config, client kubernetes.Interface, impl dataplane.Dataplane, dp *recordingDataplane, clk clock.Clock, previous ...dataplane.Dataplane) *harness {
	t.Helper()
	cfg.SocketPath = filepath.Join(t.TempDir(), "run", "npm.sock")
	d, err := New(Options{Config: cfg, Logger: zaptest.NewLogger(t), Client: client, Dataplane: impl, Previous: previous, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{d: d, dp: dp, client: client, socket: cfg.SocketPath, local: localsock.Client(cfg.SocketPath, 5*time.Second), cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- d.Run(ctx) }()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	if h.addr, err = d.Addr(actx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("daemon did not stop within 10s of cancel")
		}
	})
	return h
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return getWith(t, http.DefaultClient, url)
}

// getLocal fetches target from the daemon's local socket.
func (h *harness) getLocal(t *testing.T, target string) (int, string) {
	t.Helper()
	return getWith(t, h.local, localsock.URL(target))
}

func getWith(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFirstTransactionCarriesTheWholeSyncedState(t *testing.T) {
	client := fake.NewSimpleClientset(
		ns("prod", map[string]string{"team": "a"}),
		pod("prod", "web", "node-a", "10.0.0.5", map[string]string{"app": "web"}),
		pod("prod", "db", "node-b", "10.0.1.5", map[string]string{"app": "db"}),
		denyAll("prod"),
	)
	dp := &recordingDataplane{}
	h := start(t, client, dp)
	eventually(t, "ready", h.d.Ready)
	eps, applies, _ := dp.last()
	if applies != 1 {
		t.Fatalf("initial sync took %d transactions, want exactly 1", applies)
	}
	ep, ok := eps["prod/web"]
	if !ok || len(ep.Ingress) != 1 || ep.Ingress[0] != "prod/deny-all" {
		t.Fatalf("first transaction must isolate the local pod: %+v", eps)
	}
	if _, ok := eps["prod/db"]; ok {
		t.Fatal("a pod of another node must not be an endpoint here")
	}
	if code, _ := get(t, "http://"+h.addr+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d after the first sync", code)
	}
	if code, _ := get(t, "http://"+h.addr+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	_, metrics := get(t, "http://"+h.addr+"/metrics")
	for _, want := range []string{"npm_policies 1", "npm_pods 2", "npm_endpoints 1", "npm_ready 1", `npm_event_to_enforced_seconds_count{kind="pod"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestRulesGaugeReportsTheDataplane: npm_rules is what the dataplane says
// it programmed (here 100 + the endpoints of the last Apply).
func TestRulesGaugeReportsTheDataplane(t *testing.T) {
	client := fake.NewSimpleClientset(ns("prod", nil), pod("prod", "web", "node-a", "10.0.0.5", nil), denyAll("prod"))
	dp := &recordingDataplane{}
	h := start(t, client, dp)
	eventually(t, "ready", h.d.Ready)
	if _, metrics := get(t, "http://"+h.addr+"/metrics"); !strings.Contains(metrics, "\nnpm_rules 101\n") {
		t.Errorf("/metrics lacks npm_rules 101")
	}
	if _, err := client.CoreV1().Pods("prod").Create(context.Background(), pod("prod", "web2", "node-a", "10.0.0.6", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "npm_rules 102", func() bool {
		_, metrics := get(t, "http://"+h.addr+"/metrics")
		return strings.Contains(metrics, "\nnpm_rules 102\n")
	})
}

func TestBurstOfEventsIsCoalescedIntoFewTransactions(t *testing.T) {
	client := fake.NewSimpleClientset(ns("prod", nil), denyAll("prod"))
	dp := &recordingDataplane{}
	h := start(t, client, dp)
	eventually(t, "ready", h.d.Ready)
	_, before, _ := dp.last()
	ctx := context.Background()
	// The fake watcher panics past 100 undelivered events: stay below.
	const n = 90
	for i := 0; i < n; i++ {
		p := pod("prod", fmt.Sprintf("p%d", i), "node-a", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), map[string]string{"i": fmt.Sprint(i)})
		if _, err := client.CoreV1().Pods("prod").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "all pods enforced", func() bool { eps, _, _ := dp.last(); return len(eps) == n })
	_, after, _ := dp.last()
	if got := after - before; got > n/5 {
		t.Fatalf("%d pod events took %d transactions; want them coalesced (≤ %d)", n, got, n/5)
	}
	t.Logf("%d pod events -> %d transactions", n, after-before)
}

func TestFailedTransactionIsRetriedNotDropped(t *testing.T) {
	client := fake.NewSimpleClientset(ns("prod", nil), pod("prod", "web", "node-a", "10.0.0.5", nil))
	dp := &recordingDataplane{}
	h := start(t, client, dp)
	eventually(t, "ready", h.d.Ready)
	dp.mu.Lock()
	dp.failNext = 2
	dp.mu.Unlock()
	if _, err := client.NetworkingV1().NetworkPolicies("prod").Create(context.Background(), denyAll("prod"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policy enforced after retries", func() bool {
		eps, _, _ := dp.last()
		return len(eps["prod/web"].Ingress) == 1
	})
	_, metrics := get(t, "http://"+h.addr+"/metrics")
	if !strings.Contains(metrics, "npm_apply_failures_total 2") {
		t.Fatalf("want 2 counted failures in /metrics")
	}
	if st := h.d.Status(); st.LastError != "" || !st.Ready {
		t.Fatalf("status after recovery: %+v", st)
	}
	// The policy was translated in the batch that failed; the retry that
	// succeeded must report it enforced, not leave it pending forever.
	eventually(t, "policy reported enforced after the retry", func() bool {
		o := h.d.Object("policy/prod/deny-all")
		return o.Present && !o.Pending
	})
}

// readingDataplane is a recordingDataplane that reads the kernel back
// outside the daemon's lock (dataplane.KernelReader); gate, when set,
// holds ReadKernel until it receives, after it has said on started that
// the read-back began.
type readingDataplane struct {
	*recordingDataplane
	gate, started              chan struct{}
	reads, fromReading, locked atomic.Int32
}

func (r *readingDataplane) ReadKernel(context.Context) (dataplane.KernelReading, error) {
	if r.gate != nil {
		r.started <- struct{}{}
		<-r.gate
	}
	return r.reads.Add(1), nil
}

func (r *readingDataplane) ReconcileRead(ctx context.Context, _ dataplane.KernelReading) (int, error) {
	r.fromReading.Add(1)
	return r.recordingDataplane.Reconcile(ctx)
}

func (r *readingDataplane) Reconcile(ctx context.Context) (int, error) {
	r.locked.Add(1)
	return r.recordingDataplane.Reconcile(ctx)
}

// TestReconcileReadsTheKernelWithoutHoldingUpEvents: a dataplane that can
// read the kernel back on its own has it read outside the lock: an event
// is programmed while the read-back is still running, and then the (now
// stale) reading is not used — Reconcile reads again under the lock. With
// no transaction in between, the reading is used.
func TestReconcileReadsTheKernelWithoutHoldingUpEvents(t *testing.T) {
	client := fake.NewSimpleClientset(ns("prod", nil), denyAll("prod"))
	rec := &recordingDataplane{}
	dp := &readingDataplane{recordingDataplane: rec}
	h := startDataplane(t, testConfig(), client, dp, rec, nil)
	eventually(t, "ready", h.d.Ready)
	ctx := context.Background()
	if h.d.reconcileOnce(ctx); dp.fromReading.Load() != 1 || dp.locked.Load() != 0 {
		t.Fatalf("quiet node: %d reconciles from the reading, %d locked, want 1, 0", dp.fromReading.Load(), dp.locked.Load())
	}
	dp.gate, dp.started = make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() { h.d.reconcileOnce(ctx); close(done) }()
	<-dp.started // the event must come after the read-back began
	applies := func() int { _, n, _ := rec.last(); return n }
	before := applies()
	if _, err := client.CoreV1().Pods("prod").Create(ctx, pod("prod", "a", "node-a", "10.0.0.5", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an event programmed while the kernel is being read back", func() bool { return applies() == before+1 })
	dp.gate <- struct{}{}
	<-done
	if dp.fromReading.Load() != 1 || dp.locked.Load() != 1 {
		t.Fatalf("after a transaction during the read-back: %d reconciles from a reading, %d locked, want 1, 1 (the stale reading unused)", dp.fromReading.Load(), dp.locked.Load())
	}
}

func TestDriftRepairsAreCounted(t *testing.T) {
	dp := &recordingDataplane{}
	h := start(t, fake.NewSimpleClientset(), dp)
	eventually(t, "ready", h.d.Ready)
	dp.mu.Lock()
	dp.repairs = 3
	dp.mu.Unlock()
	if got := h.d.reconcileOnce(context.Background()); got != 3 {
		t.Fatalf("reconcile reported %d repairs, want 3", got)
	}
	_, metrics := get(t, "http://"+h.addr+"/metrics")
	if !strings.Contains(metrics, "npm_drift_repairs_total 3") {
		t.Fatal("drift repairs not counted in /metrics")
	}
}

func TestExplainNamesThePolicyAndKernelObjects(t *testing.T) {
	allowWeb := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "allow-frontend"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}},
			}},
		},
	}
	client := fake.NewSimpleClientset(ns("prod", nil),
		pod("prod", "web", "node-a", "10.0.0.5", map[string]string{"app": "web"}),
		pod("prod", "frontend", "node-b", "10.0.1.6", map[string]string{"app": "frontend"}),
		pod("prod", "other", "node-b", "10.0.1.7", map[string]string{"app": "other"}),
		allowWeb)
	h := start(t, client, &recordingDataplane{})
	eventually(t, "ready", h.d.Ready)
	cases := []struct {
		from, want string
	}{
		{"prod/frontend", "ALLOWED: 10.0.1.6 -> 10.0.0.5 80/TCP"},
		{"prod/other", "DENIED: 10.0.1.7 -> 10.0.0.5 80/TCP"},
	}
	for _, tc := range cases {
		req, err := explain.ParseRequest(tc.from, "prod/web", "80/tcp")
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := explain.Query(context.Background(), h.socket, req, &out); err != nil {
			t.Fatal(err)
		}
		text := out.String()
		for _, want := range []string{tc.want, "prod/allow-frontend", "NPM-TEST-prod-allow-frontend"} {
			if !strings.Contains(text, want) {
				t.Errorf("explain from %s lacks %q:\n%s", tc.from, want, text)
			}
		}
	}
	var out bytes.Buffer
	req, _ := explain.ParseRequest("prod/nope", "prod/web", "80")
	if err := explain.Query(context.Background(), h.socket, req, &out); err == nil || !strings.Contains(err.Error(), "prod/nope not found") {
		t.Fatalf("unknown pod must be a clear error, got %v", err)
	}
}

func TestOtherDataplaneIsCleanedOnlyAfterFirstSync(t *testing.T) {
	dp := &recordingDataplane{failNext: 1}
	old := &recordingDataplane{}
	h := start(t, fake.NewSimpleClientset(ns("prod", nil), denyAll("prod")), dp, old)
	eventually(t, "ready", h.d.Ready)
	old.mu.Lock()
	defer old.mu.Unlock()
	if old.cleanups != 1 {
		t.Fatalf("previous dataplane cleaned %d times, want once after the first successful sync", old.cleanups)
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.applies != 2 {
		t.Fatalf("want the failed first transaction retried (2 applies), got %d", dp.applies)
	}
}

func TestObjectStatusFollowsCreateAndDelete(t *testing.T) {
	client := fake.NewSimpleClientset(ns("prod", nil))
	h := start(t, client, &recordingDataplane{})
	eventually(t, "ready", h.d.Ready)
	const key = "policy/prod/deny-all"
	if h.d.Object(key).Present {
		t.Fatal("policy reported enforced before it exists")
	}
	ctx := context.Background()
	if _, err := client.NetworkingV1().NetworkPolicies("prod").Create(ctx, denyAll("prod"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policy enforced", func() bool { o := h.d.Object(key); return o.Present && !o.Pending })
	_, body := h.getLocal(t, "/status?object="+key)
	if !strings.Contains(body, `"present":true`) {
		t.Fatalf("/status?object= says %s", body)
	}
	if err := client.NetworkingV1().NetworkPolicies("prod").Delete(ctx, "deny-all", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policy gone", func() bool { o := h.d.Object(key); return !o.Present && !o.Pending })
}

// TestStatusSizesFollowTheCluster: /status "sizes" counts what the engine
// holds, and the counts come back down when the objects are deleted (the
// soak test relies on them to find leaks).
func TestStatusSizesFollowTheCluster(t *testing.T) {
	client := fake.NewSimpleClientset(ns("prod", nil), pod("prod", "web", "node-a", "10.0.0.5", nil), denyAll("prod"))
	h := start(t, client, &recordingDataplane{})
	eventually(t, "ready", h.d.Ready)
	var st Status
	_, body := h.getLocal(t, "/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Sizes["engine.pods"] != 1 || st.Sizes["engine.policies"] != 1 || st.Sizes["engine.state.endpoints"] != 1 {
		t.Fatalf("sizes with one pod and one policy: %v", st.Sizes)
	}
	ctx := context.Background()
	if err := client.CoreV1().Pods("prod").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.NetworkingV1().NetworkPolicies("prod").Delete(ctx, "deny-all", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "sizes back to zero", func() bool {
		sz := h.d.Status().Sizes
		return sz["engine.pods"] == 0 && sz["engine.policies"] == 0 && sz["engine.state.endpoints"] == 0 && sz["engine.selectors"] == 0
	})
}

// TestRemoteEventsOfUnusedSetsCostNoTransaction: the kernel holds only the
// policies that apply to the node's pods and their sets. Pods of another
// node joining a set that only a policy of other pods uses change nothing
// there: no transaction, yet they are reported enforced and explain knows
// them; a remote pod joining a set a local pod's policy uses is one
// transaction.
func TestRemoteEventsOfUnusedSetsCostNoTransaction(t *testing.T) {
	from := func(ns, name, target, peer string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": target}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": peer}}}}}}}}
	}
	client := fake.NewSimpleClientset(ns("prod", nil), ns("other", nil),
		pod("prod", "web", "node-a", "10.0.0.5", map[string]string{"app": "web"}),
		pod("other", "db", "node-b", "10.0.1.5", map[string]string{"app": "db"}),
		from("prod", "web-from-client", "web", "client"), from("other", "db-from-batch", "db", "batch"))
	dp := &recordingDataplane{}
	h := start(t, client, dp)
	eventually(t, "ready", h.d.Ready)
	dp.mu.Lock()
	applies, pols, members := dp.applies, dp.policies, dp.members
	dp.mu.Unlock()
	if !slices.Equal(pols, []string{"prod/web-from-client"}) || members != 0 {
		t.Fatalf("kernel holds policies %v with %d members, want only prod/web-from-client, empty", pols, members)
	}
	ctx := context.Background()
	createRemotePods(t, h, "remote pods reported enforced")
	dp.mu.Lock()
	got := dp.applies - applies
	dp.mu.Unlock()
	if got != 0 {
		t.Errorf("5 remote pods joining a set no local pod's policy uses took %d transactions, want 0", got)
	}
	// Batches without a transaction do not recount the sizes (O(cluster));
	// they follow within about a second.
	eventually(t, "sizes count the remote pods", func() bool { return h.d.Status().Sizes["engine.pods"] == 7 })
	code, body := h.getLocal(t, "/explain?from=other/batch0&to=other/db&port=80")
	if code != 200 || !strings.Contains(body, `"src":"10.0.1.10"`) {
		t.Errorf("explain must know the new remote pod: %d %s", code, body)
	}
	if _, err := client.CoreV1().Pods("prod").Create(ctx, pod("prod", "client", "node-b", "10.0.1.30", map[string]string{"app": "client"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the local policy's set gets the remote client", func() bool {
		dp.mu.Lock()
		defer dp.mu.Unlock()
		return dp.members == 1
	})
	dp.mu.Lock()
	got = dp.applies - applies
	dp.mu.Unlock()
	if got != 1 {
		t.Errorf("a remote pod joining a set a local pod's policy uses took %d transactions, want 1", got)
	}
}

// createRemotePods creates five pods of namespace "other" on another node
// (node-b) and waits, reporting what as the condition, until the daemon
// reports each of them enforced.
func createRemotePods(t *testing.T, h *harness, what string) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	for i := 0; i < 5; i++ {
		p := pod("other", fmt.Sprintf("batch%d", i), "node-b", fmt.Sprintf("10.0.1.%d", 10+i), map[string]string{"app": "batch"})
		if _, err := h.client.CoreV1().Pods("other").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, "pod/other/"+p.Name)
	}
	eventually(t, what, func() bool {
		for _, k := range keys {
			if o := h.d.Object(k); !o.Present || o.Pending {
				return false
			}
		}
		return true
	})
}
