//go:build linux

package network

import (
	"net"
	"strings"
	"testing"
)

func TestHostVethNameUsesFullIDAndInterface(t *testing.T) {
	id := strings.Repeat("ab", 32)
	sameStart := id[:60] + "ffff"
	names := map[string]bool{}
	for _, c := range []struct{ id, ifn string }{{id, "eth0"}, {id, "eth1"}, {sameStart, "eth0"}} {
		n := HostVethName(c.id, c.ifn)
		if len(n) > 15 || !strings.HasPrefix(n, HostVethPrefix) {
			t.Errorf("%q: not a valid host veth name", n)
		}
		names[n] = true
	}
	if len(names) != 3 {
		t.Errorf("IDs sharing 60 characters, or two interfaces, collide: %v", names)
	}
	if first, again := HostVethName(id, "eth0"), HostVethName(id, "eth0"); first != again {
		t.Error("not deterministic")
	}
}

func TestMACsAreLocalUnicastAndDistinct(t *testing.T) {
	h, p := MACs("c", "eth0")
	for _, m := range []net.HardwareAddr{h, p} {
		if m[0]&0x01 != 0 || m[0]&0x02 == 0 {
			t.Errorf("%s: want locally administered unicast", m)
		}
	}
	if h.String() == p.String() {
		t.Error("host and pod ends share a MAC")
	}
}

func TestAliasRoundTrip(t *testing.T) {
	ips, err := ParseCIDRs("10.240.1.7/16,fd00:240::1:7/64")
	if err != nil {
		t.Fatal(err)
	}
	o := Owner{ContainerID: strings.Repeat("f", 64), IfName: "eth0", Mode: ModeBridge, IPs: ips, Netns: "/var/run/netns/cni-1234"}
	a := o.Alias()
	if len(a) > 255 {
		t.Fatalf("alias too long: %d", len(a))
	}
	got, err := ParseAlias(a)
	if err != nil || got.ContainerID != o.ContainerID || got.IfName != "eth0" || got.Mode != ModeBridge || JoinCIDRs(got.IPs) != "10.240.1.7/16,fd00:240::1:7/64" || got.Netns != o.Netns {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// A namespace path that does not fit is dropped, the rest kept.
	o.Netns = "/" + strings.Repeat("x", 300)
	got, err = ParseAlias(o.Alias())
	if err != nil || got.Netns != "" || got.ContainerID != o.ContainerID {
		t.Fatalf("long netns: %+v %v", got, err)
	}
	if _, err := ParseAlias("someone else's alias"); err == nil {
		t.Error("foreign alias parsed")
	}
}
