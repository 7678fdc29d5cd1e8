//go:build linux

package plugin_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/internal/netnstest"
)

// TestParallelAdds300 starts 300 dual-stack ADDs at once on one node, as
// a node filling up with pods after a restart does, then 300 DELs. Every
// ADD must succeed (no lock timeout, no "try again"), every pod must get
// its own address of each family, and after the DELs nothing may remain.
func TestParallelAdds300(t *testing.T) {
	pods := 300
	if v, err := strconv.Atoi(os.Getenv("ACN_TEST_PARALLEL_PODS")); err == nil && v > 0 {
		pods = v // for experiments; the test as committed runs 300
	}
	n := newNode(t, pods+20)
	if keep := os.Getenv("ACN_TEST_KEEP_LOG"); keep != "" {
		t.Cleanup(func() {
			data, _ := os.ReadFile(filepath.Join(n.dir, "azure-vnet.log"))
			_ = os.WriteFile(keep, data, 0o644)
		})
	}
	mode := "transparent" // more kernel work per pod (host route, neighbour) than bridge
	if m := os.Getenv("ACN_TEST_PARALLEL_MODE"); m != "" {
		mode = m
	}
	fams := []string{"IPv4", "IPv6"}
	if f := os.Getenv("ACN_TEST_PARALLEL_FAMILIES"); f != "" {
		fams = strings.Split(f, ",") // e.g. IPv4 alone
	}
	l := n.list("1.1.0", withFamilies(n.netConf(mode, nil), fams))
	if mode == "transparent" {
		n.routePodsV6ViaNode()
	}

	// Pod namespaces are made up front (8 at a time), outside the measurement.
	ps := make([]*pod, pods)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var mu sync.Mutex
	var mkErr error
	for i := range ps {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ns, err := netnstest.Create("p")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				mkErr = err
				return
			}
			ps[i] = &pod{id: containerID(fmt.Sprintf("parallel-%03d", i)), ns: ns}
		}(i)
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, p := range ps {
			if p != nil {
				_ = p.ns.Delete()
			}
		}
	})
	if mkErr != nil {
		t.Fatal(mkErr)
	}

	run := func(op string, f func(p *pod) (string, error)) []string {
		start := time.Now()
		out := make([]string, pods)
		errs := make([]error, pods)
		var wg sync.WaitGroup
		for i, p := range ps {
			wg.Add(1)
			go func(i int, p *pod) {
				defer wg.Done()
				out[i], errs[i] = f(p)
			}(i, p)
		}
		wg.Wait()
		failed := 0
		for i, err := range errs {
			if err != nil {
				failed++
				if failed <= 5 {
					t.Errorf("%s %d: %v", op, i, err)
				}
			}
		}
		t.Logf("%d parallel %s: %d failed, %s", pods, op, failed, time.Since(start).Round(time.Millisecond))
		if failed > 0 {
			t.FailNow()
		}
		return out
	}

	ips := run("ADD", func(p *pod) (string, error) {
		r, err := n.add(l, p)
		if err != nil {
			return "", err
		}
		if len(r.IPs) != len(fams) {
			return "", fmt.Errorf("%d addresses, want %d", len(r.IPs), len(fams))
		}
		return network.JoinCIDRs(ipNets(r)), nil
	})
	seen := map[string]int{}
	for i, list := range ips {
		for _, ip := range strings.Split(list, ",") {
			if j, dup := seen[ip]; dup {
				t.Errorf("pods %d and %d both got %s", j, i, ip)
			}
			seen[ip] = i
		}
	}
	if got := len(n.ownedVeths()); got != pods {
		t.Errorf("%d veths in the node, want %d", got, pods)
	}
	_, is := n.state()
	if len(is.Allocations) != pods*len(fams) {
		t.Errorf("%d allocations in the state, want %d", len(is.Allocations), pods*len(fams))
	}
	// A sample of pods is really connected, over each family.
	for _, i := range []int{0, pods / 2, pods - 1} {
		for _, fam := range fams {
			gw := gatewayIP
			if fam == "IPv6" {
				gw = gatewayIP6
			}
			if err := ping(ps[i].ns, gw); err != nil {
				t.Error(err)
			}
		}
	}

	run("DEL", func(p *pod) (string, error) { return "", n.del(l, p) })
	if o := n.ownedVeths(); len(o) != 0 {
		t.Errorf("%d veths left after DEL", len(o))
	}
	vs, is := n.state()
	if len(vs.Endpoints) != 0 || len(is.Allocations) != 0 {
		t.Errorf("state not empty after DEL: %d endpoints, %d allocations", len(vs.Endpoints), len(is.Allocations))
	}
	n.assertNoPodRoutes()
}
