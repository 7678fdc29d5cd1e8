//go:build linux

package nftables

import (
	gnft "github.com/google/nftables"
	"net/netip"
	"strings"
	"testing"

	"github.com/open-acn/acn/npm/policy"
)

// TestIntervalElems: prefixes become nft's interval encoding (start
// elements, end elements at the next address unless the prefix reaches the
// top, a leading end at zero unless the first prefix starts there).
func TestIntervalElems(t *testing.T) {
	for _, c := range []struct {
		prefixes []string
		want     string
	}{
		{[]string{"10.0.0.0/24", "10.0.1.0/24"}, "end 0.0.0.0, 10.0.0.0, end 10.0.1.0, 10.0.1.0, end 10.0.2.0"},
		{[]string{"0.0.0.0/1", "128.0.0.0/1"}, "0.0.0.0, end 128.0.0.0, 128.0.0.0"},
		{[]string{"10.1.2.3/32"}, "end 0.0.0.0, 10.1.2.3, end 10.1.2.4"},
		{[]string{"255.255.255.255/32"}, "end 0.0.0.0, 255.255.255.255"},
		{[]string{"::/1", "8000::/1"}, ":: , end 8000::, 8000::"},
		{[]string{"fd09:0:1::/48"}, "end ::, fd09:0:1::, end fd09:0:2::"},
	} {
		var ms []policy.Member
		for _, p := range c.prefixes {
			ms = append(ms, policy.Member{Prefix: netip.MustParsePrefix(p)})
		}
		var got []string
		for _, e := range intervalElems(ms) {
			a, _ := netip.AddrFromSlice(e.key)
			s := a.String()
			if e.end {
				s = "end " + s
			}
			got = append(got, s)
		}
		want := strings.ReplaceAll(c.want, ":: ,", "::,")
		if g := strings.Join(got, ", "); g != want {
			t.Errorf("%v: got %s, want %s", c.prefixes, g, want)
		}
	}
}

// TestRenderRuleFamilies: a rule is one kernel rule per (peer, port) of
// compatible families (checked on the expressions, decompiled); rules without address matches carry no family
// check; a rule whose peers have no set matches nothing.
func TestRenderRuleFamilies(t *testing.T) {
	sets := map[string]*policy.Set{
		"iA": ipSet("iA", "pods", "10.0.0.1"),
		"n4": netSet("n4", "v4 block", "10.1.0.0/16"),
		"pP": portSet("pP", "named"),
	}
	p := &policy.Policy{Namespace: "a", Name: "p", Ingress: true}
	texts := func(r policy.Rule) []string {
		var out []string
		for _, kr := range renderRule(p, policy.Ingress, 0, r, sets) {
			// the expressions sent to the kernel, decompiled (fake_test.go)
			out = append(out, ruleText(&gnft.Rule{Exprs: kr.exprs}))
		}
		return out
	}
	for _, c := range []struct {
		rule policy.Rule
		want []string
	}{
		{policy.Rule{}, []string{"accept"}},
		{policy.Rule{Ports: []policy.Port{{Protocol: policy.UDP, Port: 53}}}, []string{"udp dport 53 accept"}},
		{policy.Rule{Peers: []policy.Peer{{SetID: "iA"}, {SetID: "n4"}}}, []string{
			"meta nfproto ipv4 ip saddr @s4-iA accept", "meta nfproto ipv6 ip6 saddr @s6-iA accept", "meta nfproto ipv4 ip saddr @s4-n4 accept"}},
		{policy.Rule{Peers: []policy.Peer{{SetID: "n4"}}, Ports: []policy.Port{{Protocol: policy.TCP, Name: "http", SetID: "pP"}, {Protocol: policy.SCTP, Port: 80, EndPort: 90}}}, []string{
			"meta nfproto ipv4 ip saddr @s4-n4 ip daddr . meta l4proto . th dport @s4-pP accept", "meta nfproto ipv4 ip saddr @s4-n4 sctp dport 80-90 accept"}},
		{policy.Rule{Peers: []policy.Peer{{SetID: "missing"}}}, nil},
	} {
		if got := texts(c.rule); strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%+v:\n got %q\nwant %q", c.rule, got, c.want)
		}
	}
}
