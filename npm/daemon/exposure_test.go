package daemon

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
)

// secretWorld names every object "secret-…", so a leak of any name into
// a network answer is a substring search.
func secretWorld() *fake.Clientset {
	allow := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "secret-ns", Name: "secret-policy"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}},
			}},
		},
	}
	return fake.NewSimpleClientset(ns("secret-ns", nil),
		pod("secret-ns", "secret-web", "node-a", "10.0.0.5", map[string]string{"app": "web"}),
		pod("secret-ns", "secret-frontend", "node-b", "10.0.1.6", map[string]string{"app": "frontend"}),
		allow)
}

func TestNetworkListenerServesOnlyHealthAndMetrics(t *testing.T) {
	cfg := testConfig()
	cfg.EnablePprof = true
	h := startWith(t, cfg, secretWorld(), &recordingDataplane{})
	eventually(t, "ready", h.d.Ready)
	eventually(t, "policy enforced", func() bool { return h.d.Object("policy/secret-ns/secret-policy").Present })

	explainQuery := "/explain?from=secret-ns/secret-frontend&to=secret-ns/secret-web&port=80"
	for _, path := range []string{"/status", "/status?object=policy/secret-ns/secret-policy", explainQuery,
		"/debug/pprof/", "/debug/pprof/goroutine?debug=2", "/debug/pprof/cmdline", "/"} {
		code, body := get(t, "http://"+h.addr+path)
		if code != http.StatusNotFound || strings.Contains(body, "secret") {
			t.Errorf("network GET %s = %d %q, want 404 without content", path, code, body)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := get(t, "http://"+h.addr+path); code != http.StatusOK {
			t.Errorf("network GET %s = %d, want 200 (kubelet probes)", path, code)
		}
	}

	// /metrics: no object name anywhere, and every label value of the
	// daemon's own series is one of a fixed, small set.
	code, body := get(t, "http://"+h.addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	if strings.Contains(body, "secret") {
		t.Fatalf("/metrics names an object:\n%s", body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]map[string]bool{
		"kind":  {kindPod: true, kindNamespace: true, kindPolicy: true},
		"op":    {"add": true, "update": true, "delete": true},
		"phase": {"wait": true, "translate": true, "apply": true, "publish": true},
		"le":    nil, // histogram buckets: numbers
	}
	labelled := 0
	for name, mf := range families {
		if !strings.HasPrefix(name, "npm_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				values, known := allowed[l.GetName()]
				if !known || values != nil && !values[l.GetValue()] {
					t.Errorf("%s has label %s=%q: network metrics may only carry %v", name, l.GetName(), l.GetValue(), allowed)
				}
				labelled++
			}
		}
	}
	if labelled == 0 {
		t.Fatal("no labelled npm_ series found: the check checked nothing")
	}

	// Everything is on the local socket instead.
	for _, path := range []string{"/status", "/status?object=policy/secret-ns/secret-policy", explainQuery, "/debug/pprof/"} {
		if code, body := h.getLocal(t, path); code != http.StatusOK || body == "" {
			t.Errorf("socket GET %s = %d %q, want 200 with content", path, code, body)
		}
	}
	if _, body := h.getLocal(t, "/status?object=policy/secret-ns/secret-policy"); !strings.Contains(body, `"present":true`) {
		t.Errorf("socket /status?object= = %s", body)
	}
	for target, want := range map[string]string{
		"/status?object=policy/secret-ns":                "want pod/NAMESPACE/NAME",
		"/status?object=deployment/a/b":                  `kind "deployment"`,
		"/status?object=namespace/x/y":                   "a namespace has no namespace",
		"/explain?from=a/b&to=c/d&port=0":                `port "0"`,
		"/explain?from=a/b&to=c/d&port=80&protocol=icmp": `protocol "icmp"`,
	} {
		if code, body := h.getLocal(t, target); code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("socket GET %s = %d %q, want 400 saying %q", target, code, body, want)
		}
	}

	fi, err := os.Stat(h.socket)
	if err != nil {
		t.Fatal(err)
	}
	di, err := os.Stat(filepath.Dir(h.socket))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("socket %v (want socket 0600) in directory %v (want 0700)", fi.Mode(), di.Mode())
	}
}

// TestQueriesDoNotWaitForTheMainLock holds the lock every batch takes and
// asks every query: each must answer from the published view.
func TestQueriesDoNotWaitForTheMainLock(t *testing.T) {
	h := start(t, secretWorld(), &recordingDataplane{})
	eventually(t, "ready", h.d.Ready)
	eventually(t, "policy enforced", func() bool { return h.d.Object("policy/secret-ns/secret-policy").Present })
	explainQuery := "/explain?from=secret-ns/secret-frontend&to=secret-ns/secret-web&port=80"
	// The first explain of a generation names the kernel objects (under
	// the lock, once); later ones are served from the view.
	if code, _ := h.getLocal(t, explainQuery); code != http.StatusOK {
		t.Fatalf("explain = %d", code)
	}
	h.d.mu.Lock()
	done := make(chan string, 1)
	go func() {
		var failed []string
		for _, target := range []string{"/status", "/status?object=pod/secret-ns/secret-web", explainQuery} {
			if code, body := h.getLocal(t, target); code != http.StatusOK {
				failed = append(failed, fmt.Sprintf("%s = %d %s", target, code, body))
			}
		}
		done <- strings.Join(failed, "; ")
	}()
	select {
	case failed := <-done:
		h.d.mu.Unlock()
		if failed != "" {
			t.Fatal(failed)
		}
	case <-time.After(5 * time.Second):
		h.d.mu.Unlock()
		t.Fatal("a query waited for the lock the worker takes for every batch")
	}
}

// TestViewIsTheProgrammedStateAndImmutable: after each batch the published
// state equals what the kernel was given (the engine's state narrowed to
// the node's endpoints), and a view once published never changes.
func TestViewIsTheProgrammedStateAndImmutable(t *testing.T) {
	client := secretWorld()
	h := start(t, client, &recordingDataplane{})
	eventually(t, "ready", h.d.Ready)
	ctx := context.Background()
	var held []*view
	var copies []*policy.State
	for i := 0; i < 12; i++ {
		v := h.d.view.Load()
		held = append(held, v)
		copies = append(copies, v.state.Clone())
		var err error
		switch i % 3 {
		case 0:
			_, err = client.CoreV1().Pods("secret-ns").Create(ctx, pod("secret-ns", fmt.Sprintf("p%d", i), "node-a", fmt.Sprintf("10.0.2.%d", i+1), map[string]string{"app": "web"}), metav1.CreateOptions{})
		case 1:
			np := denyAll("secret-ns")
			np.Name = fmt.Sprintf("deny-%d", i)
			_, err = client.NetworkingV1().NetworkPolicies("secret-ns").Create(ctx, np, metav1.CreateOptions{})
		case 2:
			err = client.CoreV1().Pods("secret-ns").Delete(ctx, fmt.Sprintf("p%d", i-2), metav1.DeleteOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "a new generation", func() bool { return h.d.view.Load().status.Generation > v.status.Generation })
		eventually(t, "queue drained", func() bool { return h.d.queue.Len() == 0 })
		// Compared as readers see them (a published set may be an
		// overlay of an earlier copy: policy.Set.Has, Len, All).
		h.d.mu.Lock()
		got, want := h.d.view.Load().state, dataplane.Narrow(h.d.engine.State())
		diff := policy.Diff(got, want)
		h.d.mu.Unlock()
		if !diff.Empty() {
			t.Fatalf("step %d: published state differs from the programmed one: %+v", i, diff)
		}
	}
	for i, v := range held {
		if d := policy.Diff(v.state, copies[i]); !d.Empty() || !reflect.DeepEqual(v.state.Policies, copies[i].Policies) || !reflect.DeepEqual(v.state.Endpoints, copies[i].Endpoints) {
			t.Fatalf("view %d changed after it was published: %+v", i, d)
		}
	}
}

// TestEnforcementRecordCost measures the per-object record behind
// /status?object= at 150,000 pods: the bound is what deploy/npm/README.md
// and the daemon's comment state.
func TestEnforcementRecordCost(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: allocates 150,000 records")
	}
	d, err := New(Options{Config: testConfig(), Logger: zap.NewNop(), Client: fake.NewSimpleClientset(), Dataplane: &recordingDataplane{}})
	if err != nil {
		t.Fatal(err)
	}
	const pods = 150000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < pods; i++ {
		// Names as long as a Deployment's pods in a long namespace.
		key := fmt.Sprintf("pod/namespace-%04d/deployment-%05d-7d9f8c6b5-x%04d", i%1000, i, i%9999)
		d.unapplied[key] = translated{rv: uint64(1000000 + i), present: true}
	}
	d.markApplied(time.Now())
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(d.appliedObj) != pods {
		t.Fatalf("record holds %d objects, want %d", len(d.appliedObj), pods)
	}
	perObject := float64(after.HeapAlloc-before.HeapAlloc) / pods
	t.Logf("enforcement record: %.0f bytes per object, %.1f MiB at %d pods", perObject, perObject*pods/(1<<20), pods)
	if perObject > 160 {
		t.Fatalf("enforcement record costs %.0f bytes per object, documented as ~110", perObject)
	}
}

// FuzzLocalSocketRequest feeds raw HTTP requests to the local socket's
// handler: it never panics and never answers 500; a refused request says
// why.
func FuzzLocalSocketRequest(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzLocalSocketRequest.
	d, err := New(Options{Config: testConfig(), Logger: zap.NewNop(), Client: secretWorld(), Dataplane: &recordingDataplane{}})
	if err != nil {
		f.Fatal(err)
	}
	d.processBatch(context.Background(), []string{initialSyncKey})
	mux := d.localMux()
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(raw))))
		if err != nil {
			return // the HTTP server answers 400 before any handler runs
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		case http.StatusBadRequest:
			// net/http's mux refuses "*" (OPTIONS * HTTP/1.1) itself, bare.
			if req.RequestURI != "*" && strings.TrimSpace(rec.Body.String()) == "" {
				t.Fatalf("400 without a reason for %q", raw)
			}
		default:
			t.Fatalf("%d for %q: %s", rec.Code, raw, rec.Body.String())
		}
	})
}

// TestUnusableSocketIsAStartupError: the daemon does not run without its
// local socket, and says why.
func TestUnusableSocketIsAStartupError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "other.pid"), []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.SocketPath = filepath.Join(dir, "npm.sock")
	d, err := New(Options{Config: cfg, Logger: zap.NewNop(), Client: fake.NewSimpleClientset(), Dataplane: &recordingDataplane{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Run(ctx); err == nil || !strings.Contains(err.Error(), "holds other.pid: give the socket a directory of its own") {
		t.Fatalf("Run with a shared socket directory: %v", err)
	}
}
