package hns

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestEndpointName(t *testing.T) {
	for _, c := range []struct{ cid, ifName string }{{"abc", "eth0"}, {"a_b_c", "eth1"}, {"0123456789abcdef", "net1"}} {
		cid, ifName, ok := ParseEndpointName(EndpointName(c.cid, c.ifName))
		if !ok || cid != c.cid || ifName != c.ifName {
			t.Errorf("%+v -> %q %q %v", c, cid, ifName, ok)
		}
	}
	for _, n := range []string{"kube-proxy", "acn_", "acn_eth0_", "acn__x"} {
		if _, _, ok := ParseEndpointName(n); ok {
			t.Errorf("%q parsed as ours", n)
		}
	}
}

// The HNS rules the fake enforces, each refused as HNS would.
func TestFakeRules(t *testing.T) {
	const ns1, ns2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	setup := func(t *testing.T) (*Fake, *Network, *Endpoint) {
		f := NewFake()
		nw, err := f.CreateNetwork(&Network{Name: NetworkName, Type: NetworkTypeL2Bridge, Subnets: []Subnet{{Prefix: "10.240.0.0/16", Gateway: "10.240.0.1"}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, ns := range []string{ns1, ns2} {
			if err := f.CreateNamespace(ns); err != nil {
				t.Fatal(err)
			}
		}
		ep, err := f.CreateEndpoint(&Endpoint{Name: "a", NetworkID: nw.ID, IP: "10.240.1.1", PrefixLength: 16,
			Policies: []Policy{NewPolicy(PolicyPortMapping, PortMappingSettings{Protocol: 6, InternalPort: 80, ExternalPort: 8080})}})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.AttachEndpoint(ns1, ep.ID); err != nil {
			t.Fatal(err)
		}
		return f, nw, ep
	}
	raw := func(typ, settings string) Policy { return Policy{Type: typ, Settings: []byte(settings)} }
	cases := []struct {
		name     string
		do       func(f *Fake, nw *Network, ep *Endpoint) error
		notFound bool
	}{
		{"attach to a second namespace", func(f *Fake, _ *Network, ep *Endpoint) error { return f.AttachEndpoint(ns2, ep.ID) }, false},
		{"attach twice", func(f *Fake, _ *Network, ep *Endpoint) error { return f.AttachEndpoint(ns1, ep.ID) }, false},
		{"attach to a missing namespace", func(f *Fake, _ *Network, ep *Endpoint) error {
			return f.AttachEndpoint("33333333-3333-3333-3333-333333333333", ep.ID)
		}, true},
		{"detach from the wrong namespace", func(f *Fake, _ *Network, ep *Endpoint) error { return f.DetachEndpoint(ns2, ep.ID) }, false},
		{"same IP on the network", func(f *Fake, nw *Network, _ *Endpoint) error {
			_, err := f.CreateEndpoint(&Endpoint{Name: "b", NetworkID: nw.ID, IP: "10.240.1.1", PrefixLength: 16})
			return err
		}, false},
		{"same name", func(f *Fake, nw *Network, _ *Endpoint) error {
			_, err := f.CreateEndpoint(&Endpoint{Name: "a", NetworkID: nw.ID, IP: "10.240.1.2", PrefixLength: 16})
			return err
		}, false},
		{"IP outside the subnets", func(f *Fake, nw *Network, _ *Endpoint) error {
			_, err := f.CreateEndpoint(&Endpoint{Name: "b", NetworkID: nw.ID, IP: "10.241.0.5", PrefixLength: 16})
			return err
		}, false},
		{"missing network", func(f *Fake, _ *Network, _ *Endpoint) error {
			_, err := f.CreateEndpoint(&Endpoint{Name: "b", NetworkID: "nope", IP: "10.240.1.2"})
			return err
		}, true},
		{"host port in use", func(f *Fake, nw *Network, _ *Endpoint) error {
			_, err := f.CreateEndpoint(&Endpoint{Name: "b", NetworkID: nw.ID, IP: "10.240.1.2", PrefixLength: 16,
				Policies: []Policy{NewPolicy(PolicyPortMapping, PortMappingSettings{Protocol: 6, InternalPort: 81, ExternalPort: 8080, VIP: "10.240.0.4"})}})
			return err
		}, false},
	}
	for _, bad := range []struct {
		name string
		p    []Policy
	}{
		{"unknown policy type", []Policy{raw("L4Proxy", `{}`)}},
		{"settings that do not decode", []Policy{raw(PolicyOutBoundNAT, `{"Exceptions":"10.0.0.0/8"}`)}},
		{"two OutBoundNAT", []Policy{raw(PolicyOutBoundNAT, `{}`), raw(PolicyOutBoundNAT, `{}`)}},
		{"OutBoundNAT bad exception", []Policy{raw(PolicyOutBoundNAT, `{"Exceptions":["10.0.0.0/40"]}`)}},
		{"SDNRoute without prefix", []Policy{raw(PolicySDNRoute, `{"NeedEncap":true}`)}},
		{"ACL without action", []Policy{raw(PolicyACL, `{"Direction":"In"}`)}},
		{"ACL protocol name", []Policy{raw(PolicyACL, `{"Action":"Allow","Direction":"In","Protocols":"TCP"}`)}},
		{"port mapping without ports", []Policy{raw(PolicyPortMapping, `{"Protocol":6}`)}},
	} {
		bad := bad
		cases = append(cases, struct {
			name     string
			do       func(f *Fake, nw *Network, ep *Endpoint) error
			notFound bool
		}{bad.name, func(f *Fake, nw *Network, _ *Endpoint) error {
			_, err := f.CreateEndpoint(&Endpoint{Name: "b", NetworkID: nw.ID, IP: "10.240.1.2", PrefixLength: 16, Policies: bad.p})
			return err
		}, false})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, nw, ep := setup(t)
			before := f.Snapshot()
			err := c.do(f, nw, ep)
			var rj *RejectedError
			if c.notFound && !errors.Is(err, ErrNotFound) || !c.notFound && !errors.As(err, &rj) {
				t.Fatalf("got %v, want %s", err, map[bool]string{true: "ErrNotFound", false: "a RejectedError"}[c.notFound])
			}
			if after := f.Snapshot(); len(after.Endpoints) != len(before.Endpoints) || after.Endpoints[ep.ID].Namespace != ns1 {
				t.Fatalf("the refused call changed the fake")
			}
		})
	}
}

// FileFake keeps one fake across instances (processes).
func TestFileFakeShares(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hns.json")
	a, b := FileFake{Path: path}, FileFake{Path: path}
	nw, err := a.CreateNetwork(&Network{Name: NetworkName, Type: NetworkTypeL2Bridge, Subnets: []Subnet{{Prefix: "10.240.0.0/16", Gateway: "10.240.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.NetworkByName(NetworkName)
	if err != nil || got.ID != nw.ID {
		t.Fatalf("second instance: %+v %v", got, err)
	}
	if _, err := b.CreateEndpoint(&Endpoint{Name: "x", NetworkID: nw.ID, IP: "10.240.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateEndpoint(&Endpoint{Name: "y", NetworkID: nw.ID, IP: "10.240.0.1"}); err == nil {
		t.Fatalf("the duplicate IP was not seen across instances")
	}
}
