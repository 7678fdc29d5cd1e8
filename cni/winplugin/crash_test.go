//go:build linux

package winplugin_test

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/open-acn/acn/cni/failpoint"
	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/cni/winplugin"
)

// Killed (SIGKILL, as a node crash or OOM kill) at each step of ADD:
// what is left is repaired by GC, by DEL, or by the retried ADD, and
// nothing leaks (endpoint, namespace attachment, address, state).
func TestKilledAtEachAddStep(t *testing.T) {
	for _, step := range winplugin.AddSteps {
		for _, repair := range []string{"gc", "del", "retry"} {
			t.Run(step+"/"+repair, func(t *testing.T) {
				n := newNode(t, 4)
				l := n.conf("1.1.0", nil)
				keep, p := n.newPod("keep"), n.newPod("p")
				n.mustAdd(l, keep)
				n.setEnv(failpoint.EnvCrashAt + "=" + step)
				if _, err := n.add(l, p); err == nil {
					t.Fatalf("ADD killed at %s succeeded", step)
				}
				n.setEnv()
				switch repair {
				case "gc":
					if err := n.gc(l, keep); err != nil {
						t.Fatalf("GC: %v", err)
					}
				case "del":
					n.mustDel(l, p)
				case "retry":
					r := n.mustAdd(l, p)
					e, err := n.fake().EndpointByName(hns.EndpointName(p.id, "eth0"))
					if err != nil || e.Namespace != p.ns || e.IP != r.IPs[0].Address.IP.String() {
						t.Fatalf("retried ADD: endpoint %+v (%v), result %v", e, err, r.IPs[0])
					}
					if err := n.cni.CheckNetworkList(context.Background(), l, p.rt()); err != nil {
						t.Fatalf("CHECK after the retried ADD: %v", err)
					}
					n.mustDel(l, p)
				}
				if err := n.cni.CheckNetworkList(context.Background(), l, keep.rt()); err != nil {
					t.Fatalf("the other pod after repair: %v", err)
				}
				n.mustDel(l, keep)
				n.assertEmpty("after repair")
			})
		}
	}
}

// Killed at each step of DEL and GC: DEL again or GC finishes the job.
func TestKilledAtEachDelAndGCStep(t *testing.T) {
	for _, step := range append(append([]string{}, winplugin.DelSteps...), winplugin.GCSteps...) {
		t.Run(step, func(t *testing.T) {
			n := newNode(t, 4)
			l := n.conf("1.1.0", nil)
			p := n.newPod("p")
			n.mustAdd(l, p)
			n.setEnv(failpoint.EnvCrashAt + "=" + step)
			var err error
			if step == "gc:hns" {
				err = n.gc(l)
			} else {
				err = n.del(l, p)
			}
			if err == nil {
				t.Fatalf("killed at %s but succeeded", step)
			}
			n.setEnv()
			if err := n.gc(l); err != nil {
				t.Fatalf("GC: %v", err)
			}
			n.assertEmpty("after GC")
			n.mustDel(l, p)
		})
	}
}

// GC removes stale endpoints: those of containers not in the valid list
// (also ones the state lost) and their addresses; valid pods and
// endpoints of other components on the network stay.
func TestGCRemovesStaleEndpoints(t *testing.T) {
	n := newNode(t, 8)
	l := n.conf("1.1.0", nil)
	a, b, c := n.newPod("a"), n.newPod("b"), n.newPod("c")
	for _, p := range []*pod{a, b, c} {
		n.mustAdd(l, p)
	}
	// An endpoint the plugin's state never knew (state lost), and one of
	// another component (not our name).
	orphan := n.newPod("orphan")
	if err := n.ff.Update(func(f *hns.Fake) error {
		nw, err := f.NetworkByName(hns.NetworkName)
		if err != nil {
			return err
		}
		if _, err := f.CreateEndpoint(&hns.Endpoint{Name: hns.EndpointName(orphan.id, "eth0"), NetworkID: nw.ID, IP: "10.240.1.200", PrefixLength: 16}); err != nil {
			return err
		}
		_, err = f.CreateEndpoint(&hns.Endpoint{Name: "kube-proxy-source-vip", NetworkID: nw.ID, IP: "10.240.1.201", PrefixLength: 16})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := n.gc(l, a); err != nil {
		t.Fatalf("GC: %v", err)
	}
	var names []string
	for _, e := range n.fake().AllEndpoints() {
		names = append(names, e.Name)
	}
	want := []string{hns.EndpointName(a.id, "eth0"), "kube-proxy-source-vip"}
	if len(names) != 2 || names[0] != want[0] || names[1] != want[1] {
		t.Fatalf("after GC HNS has %v, want %v", names, want)
	}
	vs, is := n.state()
	if len(vs.Endpoints) != 1 || len(is.Allocations) != 1 {
		t.Fatalf("after GC the state has %d endpoints and %d allocations, want 1 and 1", len(vs.Endpoints), len(is.Allocations))
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, a.rt()); err != nil {
		t.Fatalf("CHECK of the valid pod: %v", err)
	}
}

// 300 ADDs started at once: all succeed with distinct addresses, one
// network, one endpoint each in its own namespace; then 300 DELs.
func TestParallelAdds(t *testing.T) {
	const pods = 300
	n := newNode(t, pods+10)
	l := n.conf("1.1.0", nil)
	ps := make([]*pod, pods)
	for i := range ps {
		ps[i] = n.newPod("par-" + string(rune('a'+i%26)) + "-" + itoa(i))
	}
	run := func(f func(p *pod) error) []error {
		errs := make([]error, pods)
		var wg sync.WaitGroup
		for i, p := range ps {
			wg.Add(1)
			go func(i int, p *pod) {
				defer wg.Done()
				errs[i] = f(p)
			}(i, p)
		}
		wg.Wait()
		return errs
	}
	ips := make([]net.IP, pods)
	errs := run(func(p *pod) error {
		r, err := n.add(l, p)
		if err == nil {
			for i := range ps {
				if ps[i] == p {
					ips[i] = r.IPs[0].Address.IP
				}
			}
		}
		return err
	})
	seen := map[string]string{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ADD %s: %v", ps[i].name, err)
		}
		if o, dup := seen[ips[i].String()]; dup {
			t.Fatalf("%s and %s both got %s", o, ps[i].name, ips[i])
		}
		seen[ips[i].String()] = ps[i].name
	}
	f := n.fake()
	if nws := f.Networks(); len(nws) != 1 {
		t.Fatalf("%d HNS networks after parallel first ADDs, want 1", len(nws))
	}
	if eps := f.AllEndpoints(); len(eps) != pods {
		t.Fatalf("%d endpoints, want %d", len(eps), pods)
	}
	for _, p := range ps {
		if got := f.NamespaceEndpoints(p.ns); len(got) != 1 {
			t.Fatalf("namespace of %s holds %v", p.name, got)
		}
	}
	for i, err := range run(func(p *pod) error { return n.del(l, p) }) {
		if err != nil {
			t.Fatalf("DEL %s: %v", ps[i].name, err)
		}
	}
	n.assertEmpty("after 300 DELs")
}

func itoa(i int) string { return net.IPv4(0, 0, byte(i>>8), byte(i)).String() }
