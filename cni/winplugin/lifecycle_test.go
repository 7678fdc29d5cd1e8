//go:build linux

package winplugin_test

import (
	"context"
	"net"
	"testing"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/hns"
)

func atLeast(v, min string) bool {
	order := map[string]int{}
	for i, s := range config.SpecVersions {
		order[s] = i
	}
	return order[v] >= order[min]
}

// Every spec version, through libcni with the shipped Windows conflist:
// ADD makes the network once and one endpoint per pod in the pod's
// namespace; a repeated ADD returns the same result and changes nothing;
// CHECK, STATUS, GC keep valid pods; DEL (twice, and of an unknown
// container) leaves nothing but the network.
func TestLifecycleEverySpecVersion(t *testing.T) {
	for _, v := range config.SpecVersions {
		t.Run(v, func(t *testing.T) {
			n := newNode(t, 10)
			l := n.conf(v, nil)
			a, b := n.newPod("a"), n.newPod("b")
			ra := n.mustAdd(l, a)
			rb := n.mustAdd(l, b)
			_, subnet, _ := net.ParseCIDR("10.240.0.0/16")
			for _, c := range []struct {
				p  *pod
				ip net.IP
			}{{a, ra.IPs[0].Address.IP}, {b, rb.IPs[0].Address.IP}} {
				if !subnet.Contains(c.ip) || c.ip.Equal(net.ParseIP("10.240.0.4")) {
					t.Fatalf("pod %s got %s, want a secondary address of 10.240.0.0/16", c.p.name, c.ip)
				}
			}
			if ra.IPs[0].Address.IP.Equal(rb.IPs[0].Address.IP) {
				t.Fatalf("both pods got %s", ra.IPs[0].Address.IP)
			}
			if gw := ra.IPs[0].Gateway.String(); gw != "10.240.0.1" {
				t.Fatalf("gateway %s, want 10.240.0.1", gw)
			}
			if ones, _ := ra.IPs[0].Address.Mask.Size(); ones != 16 {
				t.Fatalf("prefix /%d, want the subnet's /16 (L2Bridge)", ones)
			}
			if len(ra.Interfaces) != 1 || ra.Interfaces[0].Sandbox != a.ns || ra.Interfaces[0].Name != "eth0" {
				t.Fatalf("interfaces %+v, want eth0 in namespace %s", ra.Interfaces, a.ns)
			}
			f := n.fake()
			nws := f.Networks()
			if len(nws) != 1 || nws[0].Name != hns.NetworkName || nws[0].Type != hns.NetworkTypeL2Bridge {
				t.Fatalf("networks %+v, want one L2Bridge named %s", nws, hns.NetworkName)
			}
			epA, err := f.EndpointByName(hns.EndpointName(a.id, "eth0"))
			if err != nil {
				t.Fatal(err)
			}
			if epA.Namespace != a.ns || epA.IP != ra.IPs[0].Address.IP.String() || epA.NetworkID != nws[0].ID {
				t.Fatalf("endpoint %+v, want %s in namespace %s on %s", epA, ra.IPs[0].Address.IP, a.ns, nws[0].ID)
			}
			if got := f.NamespaceEndpoints(a.ns); len(got) != 1 || got[0] != epA.ID {
				t.Fatalf("namespace %s holds %v, want [%s]", a.ns, got, epA.ID)
			}

			again := n.mustAdd(l, a)
			if again.IPs[0].Address.String() != ra.IPs[0].Address.String() || again.Interfaces[0].Mac != ra.Interfaces[0].Mac {
				t.Fatalf("repeated ADD: %v, first ADD %v", again.IPs[0], ra.IPs[0])
			}
			if e, _ := n.fake().EndpointByName(epA.Name); e == nil || e.ID != epA.ID {
				t.Fatalf("repeated ADD recreated the endpoint")
			}

			ctx := context.Background()
			if atLeast(v, "0.4.0") {
				if err := n.cni.CheckNetworkList(ctx, l, a.rt()); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			if atLeast(v, "1.1.0") {
				if err := n.cni.GetStatusNetworkList(ctx, l); err != nil {
					t.Fatalf("STATUS: %v", err)
				}
				if err := n.gc(l, a); err != nil {
					t.Fatalf("GC: %v", err)
				}
				if _, err := n.fake().EndpointByName(hns.EndpointName(b.id, "eth0")); err == nil {
					t.Fatalf("GC kept b, which is not in the valid attachments")
				}
				if err := n.cni.CheckNetworkList(ctx, l, a.rt()); err != nil {
					t.Fatalf("CHECK after GC: %v", err)
				}
			}
			n.mustDel(l, a)
			n.mustDel(l, a)
			n.mustDel(l, b)
			n.mustDel(l, n.newPod("never-added"))
			n.assertEmpty("after DEL")
			if len(n.fake().Networks()) != 1 {
				t.Fatalf("the network must stay")
			}
		})
	}
}

// CHECK compares with HNS: each kind of drift is code 100.
func TestCheckSeesHNS(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(f *hns.Fake, ep *hns.Endpoint) error
	}{
		{"endpoint deleted", func(f *hns.Fake, ep *hns.Endpoint) error { return f.DeleteEndpoint(ep.ID) }},
		{"endpoint detached", func(f *hns.Fake, ep *hns.Endpoint) error { return f.DetachEndpoint(ep.Namespace, ep.ID) }},
		{"endpoint recreated without policies", func(f *hns.Fake, ep *hns.Endpoint) error {
			if err := f.DeleteEndpoint(ep.ID); err != nil {
				return err
			}
			e := *ep
			e.Policies = nil
			_, err := f.CreateEndpoint(&e)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t, 4)
			l := n.conf("1.1.0", nil)
			p := n.newPod("p")
			n.mustAdd(l, p)
			if err := n.cni.CheckNetworkList(context.Background(), l, p.rt()); err != nil {
				t.Fatalf("CHECK before: %v", err)
			}
			if err := n.ff.Update(func(f *hns.Fake) error {
				ep, err := f.EndpointByName(hns.EndpointName(p.id, "eth0"))
				if err != nil {
					return err
				}
				return c.tamper(f, ep)
			}); err != nil {
				t.Fatal(err)
			}
			err := n.cni.CheckNetworkList(context.Background(), l, p.rt())
			if cniCode(err) != 100 {
				t.Fatalf("CHECK after tampering: %v, want code 100", err)
			}
			n.mustDel(l, p)
			n.assertEmpty("after DEL")
		})
	}
}
