package dataplane

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/open-acn/acn/npm/policy"
)

// enforcedWorld: policy ns/local selects the local pod and references sets
// a (peers) and n (named port); ns/remote selects no local pod and
// references sets a and b.
func enforcedWorld() *policy.State {
	st := policy.NewState()
	for _, id := range []string{"a", "b", "n"} {
		st.Sets[id] = &policy.Set{ID: id, Kind: policy.SetIP, Members: map[policy.Member]struct{}{}}
	}
	st.Policies["ns/local"] = &policy.Policy{Namespace: "ns", Name: "local", Ingress: true,
		IngressRules: []policy.Rule{{Peers: []policy.Peer{{SetID: "a"}}, Ports: []policy.Port{{Protocol: policy.TCP, Name: "http", SetID: "n"}}}}}
	st.Policies["ns/remote"] = &policy.Policy{Namespace: "ns", Name: "remote", Egress: true,
		EgressRules: []policy.Rule{{Peers: []policy.Peer{{SetID: "a"}, {SetID: "b"}}}}}
	st.Endpoints["ns/pod"] = &policy.Endpoint{Namespace: "ns", Name: "pod", Ingress: []string{"ns/local"}}
	return st
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func TestEnforcedKeepsWhatLocalPodsUse(t *testing.T) {
	var e Enforced
	st := enforcedWorld()
	out, ch := e.Project(st, nil)
	if ch != nil {
		t.Errorf("a full projection must stay full, got %+v", ch)
	}
	if got := keys(out.Policies); !slices.Equal(got, []string{"ns/local"}) {
		t.Errorf("policies %v, want only the one selecting a local pod", got)
	}
	if got := keys(out.Sets); !slices.Equal(got, []string{"a", "n"}) {
		t.Errorf("sets %v, want those of ns/local (a shared with ns/remote, its named port set n)", got)
	}
	if len(st.Policies) != 2 || len(st.Sets) != 3 || len(out.Endpoints) != 1 {
		t.Errorf("the input state was changed or endpoints dropped: %d policies, %d sets, %d endpoints", len(st.Policies), len(st.Sets), len(out.Endpoints))
	}
	e.Commit()

	member := policy.AddrMember(netip.MustParseAddr("10.0.0.9"))
	hint := func(ids ...string) *policy.Changes {
		c := policy.NewChanges()
		for _, id := range ids {
			c.Sets[id] = struct{}{}
			c.Members[id] = map[policy.Member]struct{}{member: {}}
		}
		return c
	}
	// A remote pod joins set b only: nothing for the kernel.
	st.Sets["b"].Members[member] = struct{}{}
	if _, ch := e.Project(st, hint("b")); !ch.Empty() {
		t.Errorf("a change of a set only a remote policy uses must project to nothing, got %+v", ch)
	}
	// Set a (used locally): kept, with its member hints.
	st.Sets["a"].Members[member] = struct{}{}
	_, ch = e.Project(st, hint("a", "b"))
	if got := keys(ch.Sets); !slices.Equal(got, []string{"a"}) || len(ch.Members["a"]) != 1 {
		t.Errorf("changes %v members %v, want set a with its hint", got, ch.Members)
	}
	// A policy change of ns/remote alone: nothing.
	remote := policy.NewChanges()
	remote.Policies["ns/remote"] = struct{}{}
	if _, ch := e.Project(st, remote); !ch.Empty() {
		t.Errorf("a change of a policy selecting no local pod must project to nothing, got %+v", ch)
	}

	// The local pod becomes selected by ns/remote too: the policy and its
	// set b enter, b without hints (the dataplane renders it whole).
	st.Endpoints["ns/pod"].Egress = []string{"ns/remote"}
	enter := hint("b")
	enter.Endpoints["ns/pod"] = struct{}{}
	out, ch = e.Project(st, enter)
	if got := keys(ch.Policies); !slices.Equal(got, []string{"ns/remote"}) {
		t.Errorf("changed policies %v, want ns/remote entering", got)
	}
	if got := keys(ch.Sets); !slices.Equal(got, []string{"b"}) {
		t.Errorf("changed sets %v, want b entering", got)
	}
	if _, ok := ch.Members["b"]; ok {
		t.Error("a set entering the projection must carry no member hints")
	}
	if _, ok := ch.Endpoints["ns/pod"]; !ok || out.Sets["b"] == nil {
		t.Errorf("endpoint change lost or set b missing: %+v", ch)
	}
	// Not committed (the transaction failed): the next projection still
	// reports the entry.
	_, ch = e.Project(st, policy.NewChanges())
	if got := keys(ch.Sets); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after a failed transaction, changed sets %v, want b again", got)
	}
	e.Commit()
	if _, ch := e.Project(st, policy.NewChanges()); !ch.Empty() {
		t.Errorf("committed: nothing left to change, got %+v", ch)
	}

	// The endpoint goes away: both policies and every set leave.
	delete(st.Endpoints, "ns/pod")
	gone := policy.NewChanges()
	gone.Endpoints["ns/pod"] = struct{}{}
	out, ch = e.Project(st, gone)
	if len(out.Policies) != 0 || len(out.Sets) != 0 {
		t.Errorf("no endpoint: projected %v %v, want nothing", keys(out.Policies), keys(out.Sets))
	}
	if got := keys(ch.Policies); !slices.Equal(got, []string{"ns/local", "ns/remote"}) {
		t.Errorf("leaving policies %v", got)
	}
	if got := keys(ch.Sets); !slices.Equal(got, []string{"a", "b", "n"}) {
		t.Errorf("leaving sets %v", got)
	}
}

// TestEnforcedUnchangedAgreesWithProject: Unchanged is a shortcut of
// Project, never saying "nothing" where Project would name something.
func TestEnforcedUnchangedAgreesWithProject(t *testing.T) {
	var e Enforced
	st := enforcedWorld()
	if e.Unchanged(policy.NewChanges()) {
		t.Error("before the first Commit nothing is known to be programmed")
	}
	e.Project(st, nil)
	e.Commit()
	ch := func(sets, policies, endpoints []string) *policy.Changes {
		c := policy.NewChanges()
		for _, id := range sets {
			c.Sets[id] = struct{}{}
		}
		for _, k := range policies {
			c.Policies[k] = struct{}{}
		}
		for _, k := range endpoints {
			c.Endpoints[k] = struct{}{}
		}
		return c
	}
	for _, tc := range []struct {
		name      string
		ch        *policy.Changes
		unchanged bool
	}{
		{"a set only a remote policy uses", ch([]string{"b"}, nil, nil), true},
		{"a set the kernel holds", ch([]string{"b", "a"}, nil, nil), false},
		{"a policy", ch(nil, []string{"ns/remote"}, nil), false},
		{"an endpoint", ch(nil, nil, []string{"ns/pod"}), false},
		{"nothing", policy.NewChanges(), true},
	} {
		got := e.Unchanged(tc.ch)
		if got != tc.unchanged {
			t.Errorf("%s: Unchanged %v, want %v", tc.name, got, tc.unchanged)
		}
		if _, p := e.Project(st, tc.ch); got && !p.Empty() {
			t.Errorf("%s: Unchanged, but Project names %+v", tc.name, p)
		}
		e.Commit() // the transaction succeeded
	}
	// A projection that named changes and was not committed: not unchanged.
	st.Endpoints["ns/pod"].Egress = []string{"ns/remote"}
	e.Project(st, ch(nil, nil, []string{"ns/pod"}))
	if e.Unchanged(ch([]string{"b"}, nil, nil)) {
		t.Error("set b entered the projection (not committed yet): a change of b is not nothing")
	}
}
