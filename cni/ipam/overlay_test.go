//go:build linux

package ipam

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/config"
)

func TestParsePodCIDRFile(t *testing.T) {
	for in, want := range map[string]string{
		"10.244.3.0/24\n":                                        "10.244.3.0/24",
		"# node block\n\n  10.244.4.0/24  \n":                    "10.244.4.0/24",
		"fd00::/64, 10.244.5.0/24":                               "fd00::/64,10.244.5.0/24",
		`{"podCIDRs":["fd00:1::/64","10.244.6.0/24"]}`:           "fd00:1::/64,10.244.6.0/24",
		`{"podCIDR":"10.244.7.0/25"}`:                            "10.244.7.0/25",
		`{"podCIDRs":["10.244.8.0/24"],"podCIDR":"10.9.0.0/24"}`: "10.244.8.0/24",
		"fd00::/120": "fd00::/120",
	} {
		got, err := ParsePodCIDRFile([]byte(in))
		var s []string
		for _, b := range got {
			s = append(s, b.String())
		}
		if err != nil || strings.Join(s, ",") != want {
			t.Errorf("%q: got %v, %v; want %s", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                    "no pod CIDR",
		"10.244.3.1/24":       "host bits",
		"ten.two/24":          "not a CIDR",
		`{"podCIDRs":[]}`:     "no pod CIDR",
		`{"podCIDRs":"oops"}`: "pod CIDR JSON",
	} {
		if _, err := ParsePodCIDRFile([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want an error with %q, got %v", in, want, err)
		}
	}
}

func TestOverlayPoolSkipsNetworkAndBroadcast(t *testing.T) {
	for _, c := range []struct {
		block       string
		reserve     bool
		n           uint64
		first, last string
	}{
		{"10.244.3.0/24", false, 254, "10.244.3.1", "10.244.3.254"},
		{"10.244.3.0/24", true, 253, "10.244.3.2", "10.244.3.254"},
		{"10.244.7.8/29", false, 6, "10.244.7.9", "10.244.7.14"},
		{"10.244.7.4/30", false, 2, "10.244.7.5", "10.244.7.6"},
		{"10.244.0.0/16", false, 65534, "10.244.0.1", "10.244.255.254"},
		// IPv6: no broadcast; the subnet-router anycast address is kept out.
		{"fd00:10:244:3::/120", false, 255, "fd00:10:244:3::1", "fd00:10:244:3::ff"},
		{"fd00:10:244:3::/120", true, 254, "fd00:10:244:3::2", "fd00:10:244:3::ff"},
		{"fd00:10:244:3::/64", false, 1<<64 - 1, "fd00:10:244:3::1", "fd00:10:244:3:ffff:ffff:ffff:ffff"},
	} {
		_, b, _ := net.ParseCIDR(c.block)
		p := OverlayPool(b, c.reserve)
		at := p.addressAt()
		if p.Size() != c.n || at(0).String() != c.first || at(p.Size()-1).String() != c.last || !p.Overlay {
			t.Errorf("%s reserve=%v: %d addresses %s..%s, want %d %s..%s", c.block, c.reserve, p.Size(),
				at(0), at(p.Size()-1), c.n, c.first, c.last)
		}
		if p.Contains(AddOffset(b, 0)) || !p.Contains(net.ParseIP(c.last)) {
			t.Errorf("%s: Contains wrong at the edges", c.block)
		}
	}
	for _, block := range []string{"10.244.7.8/29", "fd00:10:244:7::/125"} {
		_, b, _ := net.ParseCIDR(block)
		pool, s := OverlayPool(b, false), NewState()
		n := int(pool.Size())
		seen := map[string]bool{}
		for i := 0; i < n; i++ {
			a, err := s.Allocate(pool, fmt.Sprintf("c%d", i), "eth0", "t", nil, t0, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if seen[a.IP] || !pool.Contains(net.ParseIP(a.IP)) {
				t.Fatalf("%s: address %s twice or outside the pool", block, a.IP)
			}
			seen[a.IP] = true
		}
		if s.Free(pool) != 0 {
			t.Errorf("%s: free %d after %d allocations", block, s.Free(pool), n)
		}
		_, err := s.Allocate(pool, "cx", "eth0", "t", nil, t0, time.Minute)
		var ex *ExhaustedError
		if !errors.As(err, &ex) || !strings.Contains(err.Error(), fmt.Sprintf("overlay pod block %s exhausted: all %d addresses", block, n)) {
			t.Fatalf("want exhaustion naming the block, got %v", err)
		}
	}
	// A /64 allocates without walking it: 1000 distinct addresses.
	_, b, _ := net.ParseCIDR("fd00:10:244:9::/64")
	pool, s := OverlayPool(b, false), NewState()
	for i := 0; i < 1000; i++ {
		if _, err := s.Allocate(pool, fmt.Sprintf("c%d", i), "eth0", "t", nil, t0, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.Allocations) != 1000 {
		t.Errorf("%d distinct allocations, want 1000", len(s.Allocations))
	}
}

// kubeAPI serves one Node; hits counts the GETs.
func kubeAPI(t *testing.T, node, body string, hits *int32) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt32(hits, 1)
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/api/v1/nodes/"+node {
			http.Error(w, `{"kind":"Status","reason":"NotFound"}`, http.StatusNotFound)
			return
		}
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeKubeconfig(t *testing.T, dir, server, user string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: c
clusters:
- name: k
  cluster:
    server: %s
contexts:
- name: c
  context: {cluster: k, user: u}
users:
- name: u
  user:
%s
`, server, user)
	p := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func overlayCfg(t *testing.T, kubeconfig, node string) *config.NetConf {
	t.Helper()
	return overlayCfgWith(t, kubeconfig, node, `"clusterCIDR":"10.244.0.0/16"`)
}

func overlayCfgWith(t *testing.T, kubeconfig, node, ipamFields string) *config.NetConf {
	t.Helper()
	in := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"azure","type":"azure-vnet","stateDir":%q,
		"ipam":{"type":"azure-vnet-ipam","environment":"overlay",%s,"kubeconfig":%q,"nodeName":%q}}`,
		t.TempDir(), ipamFields, kubeconfig, node)
	cfg, err := config.Parse([]byte(in), config.VnetPlugin)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestOverlayBlockFromNode: the block comes from the Node's
// spec.podCIDRs (tokenFile credentials), is cached on disk for
// queryInterval (one GET for many ADDs), and every failure has its kind.
func TestOverlayBlockFromNode(t *testing.T) {
	ctx := context.Background()
	var hits int32
	srv := kubeAPI(t, "node-a", `{"kind":"Node","spec":{"podCIDR":"10.244.3.0/24","podCIDRs":["10.244.3.0/24","fd00:3::/64"]}}`, &hits)
	dir := t.TempDir()
	cfg := overlayCfg(t, writeKubeconfig(t, dir, srv.URL, "    tokenFile: token"), "node-a")
	for i := 0; i < 3; i++ {
		b, err := OverlayBlocks(ctx, cfg, -1, nil)
		if err != nil || len(b) != 1 || b[0].String() != "10.244.3.0/24" {
			t.Fatalf("block %v, %v", b, err)
		}
	}
	if hits != 1 {
		t.Fatalf("%d GETs for 3 reads within queryInterval, want 1", hits)
	}
	// Dual-stack, IPv6 primary: both blocks in ipFamilies order (from the
	// cache); IPv6 only from an IPv4 cluster CIDR is a configuration error.
	dual := overlayCfgWith(t, cfg.IPAM.Kubeconfig, "node-a", `"ipFamilies":["IPv6","IPv4"],"clusterCIDR":"10.244.0.0/16,fd00::/16"`)
	dual.StateDir = cfg.StateDir
	if b, err := OverlayBlocks(ctx, dual, -1, nil); err != nil || len(b) != 2 || b[0].String() != "fd00:3::/64" || b[1].String() != "10.244.3.0/24" || hits != 1 {
		t.Fatalf("dual-stack blocks %v, %v (%d GETs)", b, err, hits)
	}
	narrow := overlayCfgWith(t, cfg.IPAM.Kubeconfig, "node-a", `"ipFamilies":["IPv6"],"clusterCIDR":"fd00:0:0:1::/64"`)
	narrow.StateDir = cfg.StateDir
	var te0 *types.Error
	if _, err := OverlayBlocks(ctx, narrow, -1, nil); !errors.As(err, &te0) || te0.Code != types.ErrInvalidNetworkConfig || !strings.Contains(te0.Msg, "not inside") {
		t.Fatalf("IPv6 block outside the cluster CIDR: %v", err)
	}
	if _, err := OverlayBlocks(ctx, cfg, 0, nil); err != nil || hits != 2 {
		t.Fatalf("forced refresh: %v, %d GETs", err, hits)
	}

	// Another node name does not use the cache; it does not exist.
	other := overlayCfg(t, cfg.IPAM.Kubeconfig, "node-b")
	var se *SourceError
	if _, err := OverlayBlocks(ctx, other, -1, nil); !errors.As(err, &se) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown node: want a source error with 404, got %v", err)
	}

	// A Node without a block yet: a source error (code 11 in the plugin).
	srv2 := kubeAPI(t, "node-a", `{"kind":"Node","spec":{}}`, &hits)
	cfg2 := overlayCfg(t, writeKubeconfig(t, t.TempDir(), srv2.URL, "    token: s3cret"), "node-a")
	if _, err := OverlayBlocks(ctx, cfg2, -1, nil); !errors.As(err, &se) || !strings.Contains(err.Error(), "no spec.podCIDRs yet") {
		t.Fatalf("node without podCIDRs: %v", err)
	}

	// A block outside the cluster CIDR is a configuration error.
	srv3 := kubeAPI(t, "node-a", `{"spec":{"podCIDRs":["10.99.0.0/24"]}}`, &hits)
	cfg3 := overlayCfg(t, writeKubeconfig(t, t.TempDir(), srv3.URL, "    token: s3cret"), "node-a")
	var te *types.Error
	if _, err := OverlayBlocks(ctx, cfg3, -1, nil); !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig || !strings.Contains(te.Msg, "10.99.0.0/24 is not inside ipam.clusterCIDR 10.244.0.0/16") {
		t.Fatalf("block outside the cluster CIDR: %v", err)
	}

	// Unsupported credentials and missing files are configuration errors.
	cfg4 := overlayCfg(t, writeKubeconfig(t, t.TempDir(), srv.URL, "    exec: {command: az}"), "node-a")
	if _, err := OverlayBlocks(ctx, cfg4, -1, nil); !errors.As(err, &te) || !strings.Contains(te.Msg, "exec and auth-provider credentials are not supported") {
		t.Fatalf("exec credentials: %v", err)
	}
	cfg5 := overlayCfg(t, filepath.Join(dir, "missing"), "node-a")
	if _, err := OverlayBlocks(ctx, cfg5, -1, nil); !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig {
		t.Fatalf("missing kubeconfig: %v", err)
	}
}

func TestNodeNameFallsBackToEnvironmentAndHostname(t *testing.T) {
	cfg := &config.NetConf{}
	t.Setenv(config.EnvNodeName, "from-env")
	if n, _ := NodeName(cfg); n != "from-env" {
		t.Errorf("env: %q", n)
	}
	t.Setenv(config.EnvNodeName, "")
	h, _ := os.Hostname()
	if n, _ := NodeName(cfg); n != strings.ToLower(h) {
		t.Errorf("hostname: %q, want %q", n, strings.ToLower(h))
	}
	cfg.IPAM.NodeName = "explicit"
	if n, _ := NodeName(cfg); n != "explicit" {
		t.Errorf("config: %q", n)
	}
}
