package flowlog

import (
	"testing"

	"github.com/open-acn/acn/npm/policy"
)

func TestParseAnnotation(t *testing.T) {
	for _, c := range []struct {
		in   string
		want policy.FlowLog
		err  bool
	}{
		{"deny", policy.FlowLogDeny, false},
		{"allow", policy.FlowLogAllow, false},
		{"allow,deny", policy.FlowLogAll, false},
		{" Deny , allow ", policy.FlowLogAll, false},
		{"all", policy.FlowLogAll, false},
		{"none", policy.FlowLogNone, false},
		{"", 0, true},
		{"none,deny", 0, true},
		{"drop", 0, true},
		{"deny;allow", 0, true},
	} {
		got, err := ParseAnnotation(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseAnnotation(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.err)
		}
	}
	def := policy.FlowLogDeny
	if m, err := Mode(nil, def); m != def || err != nil {
		t.Errorf("no annotation: %v %v", m, err)
	}
	if m, err := Mode(map[string]string{Annotation: "bogus"}, def); m != def || err == nil {
		t.Errorf("malformed annotation: %v %v, want the default and an error", m, err)
	}
	for _, s := range []string{"none", "deny", "all"} {
		m, err := ParseDefault(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseDefault(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseDefault("allow"); err == nil {
		t.Error("ParseDefault(allow): want an error")
	}
}

func TestIDRoundTrip(t *testing.T) {
	g := &policy.Group{ID: policy.Hash(policy.GroupKey(policy.Egress, []string{"ns/a"}), 12), Direction: policy.Egress}
	for _, s := range []string{RuleID("ns/a", policy.Ingress, 3), RuleID("ns/b", policy.Egress, 0), DenyID(g),
		ID{Allow: true, Kind: KindAdmin, Hash: "abc", Rule: 7}.String()} {
		id, err := ParseID(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if id.String() != s {
			t.Errorf("round trip %q -> %q", s, id.String())
		}
		if len(s) > 27 {
			t.Errorf("%q: %d bytes, more than the 27 documented", s, len(s))
		}
	}
	if id, _ := ParseID(RuleID("ns/a", policy.Ingress, 3)); !id.Allow || id.Direction != policy.Ingress || id.Rule != 3 || id.Kind != KindRule {
		t.Errorf("parsed %+v", id)
	}
	for _, bad := range []string{"", "acn:", "acn:xin:h:1", "acn:aqn:h:1", "acn:ain:h", "acn:dig:h:1", "acn:ain:h:-1", "acn:aiz:h:1", "other:ain:h:1"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q): want an error", bad)
		}
	}
}

func TestIndexResolves(t *testing.T) {
	st := policy.NewState()
	st.Policies["ns/a"] = &policy.Policy{Namespace: "ns", Name: "a", Ingress: true,
		IngressRules: []policy.Rule{{Comment: "from pods in ns ns", Ports: []policy.Port{{Protocol: policy.TCP, Port: 80}}}}}
	st.Endpoints["ns/p"] = &policy.Endpoint{Namespace: "ns", Name: "p", Ingress: []string{"ns/a"}}
	var x Index
	x.Update(st)
	a, ok := x.Resolve(RuleID("ns/a", policy.Ingress, 0))
	if !ok || a.Policy != "ns/a" || a.Rule != 0 || a.Description != "from pods in ns ns on 80/TCP" || a.Namespace != "ns" {
		t.Errorf("allow rule: %+v %v", a, ok)
	}
	g := st.Groups(policy.Ingress)[0]
	a, ok = x.Resolve(DenyID(g))
	if !ok || a.Policy != "ns/a" || a.Rule != -1 || a.Description != "no rule of ns/a allows it" {
		t.Errorf("default deny: %+v %v", a, ok)
	}
	// The previous state still resolves (a message in flight), two back not.
	x.Update(policy.NewState())
	if _, ok := x.Resolve(DenyID(g)); !ok {
		t.Error("previous state's group not resolved")
	}
	x.Update(policy.NewState())
	if _, ok := x.Resolve(DenyID(g)); ok {
		t.Error("a group two states back still resolves")
	}
}
