package policy

import (
	"net/netip"
	"testing"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestChangesMerge(t *testing.T) {
	m1, m2 := AddrMember(addr("10.0.0.1")), AddrMember(addr("10.0.0.2"))
	a := NewChanges()
	a.Sets["x"], a.Members["x"] = struct{}{}, map[Member]struct{}{m1: {}}
	a.Sets["y"] = struct{}{} // arbitrary change
	b := NewChanges()
	b.Sets["x"], b.Members["x"] = struct{}{}, map[Member]struct{}{m2: {}}
	b.Sets["y"], b.Members["y"] = struct{}{}, map[Member]struct{}{m2: {}}
	b.Sets["z"], b.Members["z"] = struct{}{}, map[Member]struct{}{m1: {}}
	a.Merge(b)
	if len(a.Members["x"]) != 2 {
		t.Errorf("hints of x not united: %v", a.Members["x"])
	}
	if _, ok := a.Members["y"]; ok {
		t.Errorf("y changed arbitrarily first: must stay without hints")
	}
	if len(a.Members["z"]) != 1 {
		t.Errorf("z hints lost")
	}
	c := NewChanges()
	c.Sets["x"] = struct{}{}
	a.Merge(c)
	if _, ok := a.Members["x"]; ok {
		t.Errorf("an arbitrary change of x must drop its hints")
	}
}

func TestEvaluateAndGroups(t *testing.T) {
	s := NewState()
	s.Sets["i1"] = &Set{ID: "i1", Kind: SetIP, Members: map[Member]struct{}{AddrMember(addr("10.0.0.2")): {}}}
	s.Sets["n1"] = &Set{ID: "n1", Kind: SetNet, Members: map[Member]struct{}{{Prefix: netip.MustParsePrefix("192.168.0.0/16")}: {}}}
	s.Sets["p1"] = &Set{ID: "p1", Kind: SetIPPort, Members: map[Member]struct{}{{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Protocol: TCP, Port: 8080}: {}}}
	s.Policies["a/p"] = &Policy{Namespace: "a", Name: "p", Ingress: true, IngressRules: []Rule{
		{Peers: []Peer{{SetID: "i1"}}, Ports: []Port{{Protocol: TCP, Name: "http", SetID: "p1"}}},
		{Peers: []Peer{{SetID: "n1"}}, Ports: []Port{{Protocol: UDP, Port: 50, EndPort: 60}}},
	}}
	s.Policies["a/q"] = &Policy{Namespace: "a", Name: "q", Egress: true}
	s.Endpoints["a/web"] = &Endpoint{Namespace: "a", Name: "web", IPs: []netip.Addr{addr("10.0.0.1")}, Ingress: []string{"a/p"}}
	s.Endpoints["a/db"] = &Endpoint{Namespace: "a", Name: "db", IPs: []netip.Addr{addr("10.0.0.3")}, Ingress: []string{"a/p"}, Egress: []string{"a/q"}}
	for _, c := range []struct {
		p    Packet
		want bool
	}{
		{Packet{Src: addr("10.0.0.2"), Dst: addr("10.0.0.1"), Protocol: TCP, Port: 8080}, true},
		{Packet{Src: addr("10.0.0.2"), Dst: addr("10.0.0.1"), Protocol: TCP, Port: 80}, false},
		{Packet{Src: addr("10.0.0.9"), Dst: addr("10.0.0.1"), Protocol: TCP, Port: 8080}, false},
		{Packet{Src: addr("192.168.3.3"), Dst: addr("10.0.0.1"), Protocol: UDP, Port: 55}, true},
		{Packet{Src: addr("192.168.3.3"), Dst: addr("10.0.0.1"), Protocol: UDP, Port: 61}, false},
		{Packet{Src: addr("10.0.0.3"), Dst: addr("10.0.0.9"), Protocol: TCP, Port: 1}, false}, // db egress isolated, no rules
		{Packet{Src: addr("10.0.0.9"), Dst: addr("10.0.0.8"), Protocol: TCP, Port: 1}, true},  // no endpoint involved
	} {
		if got := s.Evaluate(c.p); got.Allowed != c.want {
			t.Errorf("%+v: allowed %v, want %v (%+v)", c.p, got.Allowed, c.want, got)
		}
	}
	if v := s.Evaluate(Packet{Src: addr("10.0.0.2"), Dst: addr("10.0.0.1"), Protocol: TCP, Port: 8080}); v.Ingress.Policy != "a/p" || v.Ingress.Rule != 0 {
		t.Errorf("deciding rule not named: %+v", v.Ingress)
	}
	gi := s.Groups(Ingress)
	if len(gi) != 1 || len(gi[0].Endpoints) != 2 {
		t.Errorf("ingress groups: %+v", gi)
	}
	if ge := s.Groups(Egress); len(ge) != 1 || ge[0].Endpoints[0] != "a/db" {
		t.Errorf("egress groups: %+v", ge)
	}
	if d := Diff(s, s.Clone()); !d.Empty() {
		t.Errorf("clone differs: %+v", d)
	}
	// A Remote endpoint (a pod of another node backing a NodePort): its
	// ingress is decided here only for packets this node DNATed.
	s.Endpoints["a/far"] = &Endpoint{Namespace: "a", Name: "far", IPs: []netip.Addr{addr("10.0.9.1"), addr("fd00::91")}, Ingress: []string{"a/p"}, Remote: true}
	for _, c := range []struct {
		p    Packet
		want bool
	}{
		{Packet{Src: addr("203.0.113.9"), Dst: addr("10.0.9.1"), Protocol: UDP, Port: 55}, true},              // not DNATed here: its node decides
		{Packet{Src: addr("203.0.113.9"), Dst: addr("10.0.9.1"), Protocol: UDP, Port: 55, DNAT: true}, false}, // the client is not in 192.168/16
		{Packet{Src: addr("192.168.1.1"), Dst: addr("10.0.9.1"), Protocol: UDP, Port: 55, DNAT: true}, true},
	} {
		if got := s.Evaluate(c.p); got.Allowed != c.want {
			t.Errorf("remote endpoint: %+v: allowed %v, want %v (%+v)", c.p, got.Allowed, c.want, got)
		}
	}
	if r := s.RemoteIPs(IPv4); len(r) != 1 || r[0] != addr("10.0.9.1") {
		t.Errorf("RemoteIPs(IPv4) = %v", r)
	}
	if r := s.RemoteIPs(IPv6); len(r) != 1 || r[0] != addr("fd00::91") {
		t.Errorf("RemoteIPs(IPv6) = %v", r)
	}
	c := s.Clone()
	c.Endpoints["a/far"].Remote = false
	if EqualEndpoint(s.Endpoints["a/far"], c.Endpoints["a/far"]) {
		t.Errorf("EqualEndpoint ignores Remote")
	}
}
