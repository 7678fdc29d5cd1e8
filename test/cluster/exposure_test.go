//go:build linux

package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/internal/netnstest"
)

// TestPodsLearnNothingFromTheAgent: from inside a pod, every node's
// azure-npm port answers only health and metrics; /status, /explain and
// pprof (enabled in the harness) are 404 there. The kubelet's probes of
// the node address pass, and the subcommands reach the agent through its
// local socket from inside the node.
func TestPodsLearnNothingFromTheAgent(t *testing.T) {
	Require(t)
	ctx := context.Background()
	c, err := New(ctx, Config{Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateNamespace(ctx, "x", nil); err != nil {
		t.Fatal(err)
	}
	a, wa, err := c.CreatePod(ctx, c.Nodes[0], "x", "a", map[string]string{"app": "a"}, DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	_, wb, err := c.CreatePod(ctx, c.Nodes[1], "x", "b", map[string]string{"app": "b"}, DefaultPorts())
	if err != nil {
		t.Fatal(err)
	}
	wp, err := c.CreatePolicy(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny-b"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "b"}}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitEnforced(ctx, []Write{wa, wb, wp}, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	fromPod := httpFrom(a.NS)
	for _, n := range c.Nodes {
		base := fmt.Sprintf("http://%s:%d", n.IP, NPMPort)
		for _, path := range []string{"/status", "/status?object=policy/x/deny-b", "/explain?from=x/a&to=x/b&port=80",
			"/debug/pprof/", "/debug/pprof/goroutine?debug=2"} {
			code, body, err := fetch(fromPod, base+path)
			if err == nil && (code != http.StatusNotFound || strings.Contains(body, "deny-b") || strings.Contains(body, "goroutine")) {
				t.Errorf("pod x/a: GET %s%s = %d %q; want 404 (or refused) without content", base, path, code, body)
			}
			if err != nil && !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("pod x/a: GET %s%s: %v; want 404 or connection refused", base, path, err)
			}
		}
		// What the pod may see: health and metrics, without object names.
		code, body, err := fetch(fromPod, base+"/metrics")
		if err != nil || code != http.StatusOK || strings.Contains(body, "deny-b") || strings.Contains(body, `"x/`) {
			t.Errorf("pod x/a: GET %s/metrics = %d, %v (or it names an object)", base, code, err)
		}
		// The kubelet probes the node address (the pod is hostNetwork).
		kubelet := httpFrom(n.NS)
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, _, err := fetch(kubelet, base+path); err != nil || code != http.StatusOK {
				t.Errorf("%s: kubelet-style GET %s%s = %d, %v; want 200", n.Name, base, path, code, err)
			}
		}
	}

	// The subcommands inside the node, through the node's socket.
	n := c.Nodes[1]
	bin := filepath.Join(c.cfg.BinDir, "azure-npm")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", n.NS.Name, bin}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("azure-npm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("status", "--socket", n.NPMSocket(), "--object", "policy/x/deny-b"); !strings.Contains(out, `"present":true`) {
		t.Errorf("azure-npm status --object policy/x/deny-b: %s", out)
	}
	if out := run("status", "--socket", n.NPMSocket()); !strings.Contains(out, `"ready":true`) {
		t.Errorf("azure-npm status: %s", out)
	}
	if out := run("explain", "--socket", n.NPMSocket(), "--from", "x/a", "--to", "x/b", "--port", "80/tcp"); !strings.Contains(out, "DENIED") || !strings.Contains(out, "x/deny-b") {
		t.Errorf("azure-npm explain x/a -> x/b: %s", out)
	}
	if out, err := exec.Command(bin, "status", "--socket", filepath.Join(t.TempDir(), "none.sock")).CombinedOutput(); err == nil || !strings.Contains(string(out), "no agent socket at") {
		t.Errorf("status without an agent: %v %s; want a clear error", err, out)
	}
}

// httpFrom is an HTTP client whose connections start inside ns.
func httpFrom(ns *netnstest.NS) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) { return ns.Dial(network, addr) }}}
}

func fetch(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
